//! Brute-force protection for the sign-in routes:
//! - account lockout: `LOGIN_LOCKOUT_THRESHOLD` failed password logins for one account within
//!   `LOGIN_LOCKOUT_WINDOW_SECS` lock its password login for `LOGIN_LOCKOUT_SECS` (429 with
//!   `Retry-After`); other accounts are unaffected;
//! - per-IP limits: `AUTH_RATE_LIMIT_PER_MINUTE` requests per client IP.
//!
//! In process these use bounded TTL caches and `governor` (GCRA); with Redis they use Redis
//! counters with expiry, so limits hold across instances. Both count failures the same way: the
//! count expires `LOGIN_LOCKOUT_WINDOW_SECS` after the last failure and a successful login
//! clears it.

use std::{
    net::IpAddr,
    num::NonZeroU32,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::AuthError;
use crate::{config::AuthConfig, state::Redis};

pub struct Abuse {
    /// Failed logins per account (bounded: attackers choose the keys).
    failures: moka::sync::Cache<String, Arc<AtomicU32>>,
    locked: moka::sync::Cache<String, std::time::Instant>,
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    cfg: AuthConfig,
}

impl Abuse {
    pub fn new(cfg: &AuthConfig) -> Self {
        let ip_rate = NonZeroU32::new(cfg.ip_rate_per_minute).unwrap_or(NonZeroU32::MIN);
        Self {
            // Like the Redis key's PEXPIRE on every failure: the count lives `window` after the last one.
            failures: moka::sync::Cache::builder().max_capacity(1_000_000).time_to_idle(cfg.lockout_window).build(),
            locked: moka::sync::Cache::builder().max_capacity(1_000_000).time_to_live(cfg.lockout_duration).build(),
            per_ip: RateLimiter::keyed(Quota::per_minute(ip_rate)),
            cfg: cfg.clone(),
        }
    }

    fn locked_error(retry_after: Duration) -> AuthError {
        AuthError::AccountLocked { retry_after_secs: retry_after.as_secs().max(1) }
    }

    fn ip_error(retry_after: Duration) -> AuthError {
        AuthError::RateLimited { retry_after_secs: retry_after.as_secs().max(1) }
    }

    /// 429 when the account's password login is locked.
    pub async fn check_account(&self, redis: Option<&Redis>, email: &str) -> Result<(), AuthError> {
        if let Some(redis) = redis {
            let ttl: i64 = redis_query(redis, redis::cmd("PTTL").arg(lock_key(email))).await.unwrap_or(-2);
            return if ttl > 0 { Err(Self::locked_error(Duration::from_millis(ttl as u64))) } else { Ok(()) };
        }
        match self.locked.get(email) {
            Some(until) => {
                let left = until.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() { Ok(()) } else { Err(Self::locked_error(left)) }
            }
            None => Ok(()),
        }
    }

    /// Records a failed password login; returns the lockout error when this one locks the account.
    pub async fn record_failure(&self, redis: Option<&Redis>, email: &str) -> Option<AuthError> {
        let lock_for = self.cfg.lockout_duration;
        if let Some(redis) = redis {
            let key = fail_key(email);
            let count: i64 = redis_query(
                redis,
                redis::pipe().atomic().incr(&key, 1).pexpire(&key, self.cfg.lockout_window.as_millis() as i64).ignore(),
            )
            .await
            .map(|(n,): (i64,)| n)
            .unwrap_or(0);
            if count >= i64::from(self.cfg.lockout_threshold) {
                let _: Result<(), _> = redis_query(
                    redis,
                    redis::pipe()
                        .set(lock_key(email), 1)
                        .pexpire(lock_key(email), lock_for.as_millis() as i64)
                        .ignore()
                        .del(&key)
                        .ignore(),
                )
                .await;
                return Some(Self::locked_error(lock_for));
            }
            return None;
        }
        let counter = self.failures.get_with_by_ref(email, || Arc::new(AtomicU32::new(0)));
        // The one that reaches the threshold locks.
        if counter.fetch_add(1, Ordering::SeqCst) + 1 >= self.cfg.lockout_threshold {
            self.locked.insert(email.to_string(), std::time::Instant::now() + lock_for);
            self.failures.invalidate(email);
            return Some(Self::locked_error(lock_for));
        }
        None
    }

    /// A successful login clears the failure count.
    pub async fn record_success(&self, redis: Option<&Redis>, email: &str) {
        if let Some(redis) = redis {
            let _: Result<i64, _> = redis_query(redis, redis::cmd("DEL").arg(fail_key(email))).await;
            return;
        }
        self.failures.invalidate(email);
    }

    /// The per-IP check of a sign-in route, for a client whose address is known.
    pub async fn check_client(&self, redis: Option<&Redis>, client: &super::ClientMeta) -> Result<(), AuthError> {
        match client.ip {
            Some(ip) => self.check_ip(redis, ip).await,
            None => Ok(()),
        }
    }

    /// 429 when this client IP went over the per-minute budget of the sign-in routes.
    pub async fn check_ip(&self, redis: Option<&Redis>, ip: IpAddr) -> Result<(), AuthError> {
        if let Some(redis) = redis {
            let now = chrono::Utc::now().timestamp();
            let window = now / 60;
            let key = format!("mash:auth:ip:{ip}:{window}");
            let count: i64 = redis_query(redis, redis::pipe().atomic().incr(&key, 1).expire(&key, 61).ignore())
                .await
                .map(|(n,): (i64,)| n)
                .unwrap_or(0);
            if count > i64::from(self.cfg.ip_rate_per_minute) {
                return Err(Self::ip_error(Duration::from_secs((60 - now % 60) as u64)));
            }
            return Ok(());
        }
        self.per_ip.check_key(&ip).map_err(|not_until| {
            Self::ip_error(
                not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default())),
            )
        })
    }
}

impl Abuse {
    /// Forgets per-IP state that no longer limits anyone (call periodically; the keys are
    /// client addresses, so without this the map would grow with every address ever seen).
    pub fn prune(&self) {
        self.per_ip.retain_recent();
        self.per_ip.shrink_to_fit();
    }
}

fn fail_key(email: &str) -> String {
    format!("mash:auth:fail:{email}")
}

fn lock_key(email: &str) -> String {
    format!("mash:auth:lock:{email}")
}

/// Runs a Redis command or pipeline. Errors are logged and the caller treats them as "no
/// information", so an unreachable Redis degrades protection instead of blocking every login.
async fn redis_query<T: redis::FromRedisValue>(redis: &Redis, q: impl Into<Query>) -> redis::RedisResult<T> {
    let result = async {
        let mut conn = redis.conn().await?;
        match q.into() {
            Query::Cmd(c) => c.query_async(&mut conn).await,
            Query::Pipe(p) => p.query_async(&mut conn).await,
        }
    }
    .await;
    if let Err(e) = &result {
        tracing::warn!(error = %e, "rate-limit store (Redis) unavailable");
    }
    result
}

enum Query {
    Cmd(redis::Cmd),
    Pipe(redis::Pipeline),
}

impl From<&mut redis::Cmd> for Query {
    fn from(c: &mut redis::Cmd) -> Self {
        Query::Cmd(c.clone())
    }
}

impl From<&mut redis::Pipeline> for Query {
    fn from(p: &mut redis::Pipeline) -> Self {
        Query::Pipe(p.clone())
    }
}
