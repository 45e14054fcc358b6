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
    /// Now, to the microsecond: both databases keep microseconds, so a time held in memory
    /// equals the one read back.
    pub fn now(&self) -> DateTime<Utc> {
        let t = Utc::now() + Duration::microseconds(self.offset_micros.load(Ordering::Relaxed));
        DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
    }

    /// Moves this clock forward (tests).
    pub fn advance(&self, by: Duration) {
        self.offset_micros.fetch_add(by.num_microseconds().unwrap_or(i64::MAX / 2), Ordering::Relaxed);
    }
}
