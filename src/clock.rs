//! The application's clock. Everything that decides by time (job due times and leases,
//! schedules, stale-device rules, alert timestamps) reads `state.clock.now()`, so tests move
//! time forward instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Duration, Utc};

/// Wall-clock time plus an offset that only tests change.
#[derive(Debug, Default)]
pub struct Clock {
    offset_micros: AtomicI64,
}

impl Clock {
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + Duration::microseconds(self.offset_micros.load(Ordering::Relaxed))
    }

    /// Moves this clock forward (tests).
    pub fn advance(&self, by: Duration) {
        self.offset_micros.fetch_add(by.num_microseconds().unwrap_or(i64::MAX / 2), Ordering::Relaxed);
    }
}
