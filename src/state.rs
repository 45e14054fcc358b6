//! Shared application state, cloned cheaply into every handler.

use std::{ops::Deref, sync::Arc, time::Duration};

use sea_orm::DatabaseConnection;

use crate::db::Db;
use tokio::sync::OnceCell;

use crate::{
    alerts::AlertsState, auth::AuthState, clock::Clock, config::Config, greenhouse::GreenhouseState, jobs::JobsState,
    mail, metrics::Metrics, shop::ShopState, telemetry::TelemetryState,
};

/// Everything handlers share. An `Arc` inside, so cloning is a reference count.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    /// The pool, and SQLite's write gate.
    pub db: Db,
    pub redis: Option<Redis>,
    pub metrics: Arc<Metrics>,
    pub auth: AuthState,
    /// Where `send_email` jobs deliver.
    pub mailer: mail::Transport,
    /// Time, as everything that decides by time reads it (tests move it).
    pub clock: Clock,
    pub jobs: JobsState,
    pub alerts: AlertsState,
    /// Realtime: publishing, subscriptions, presence.
    pub realtime: crate::realtime::Realtime,
    pub greenhouse: GreenhouseState,
    pub telemetry: TelemetryState,
    pub shop: ShopState,
    /// Users as the API shows them, read in batches (`GET /users/me`).
    pub user_views: crate::users::Views,
    /// `/openapi.json` as served: built and serialized at its first request, then kept.
    pub openapi_json: OnceCell<axum::body::Bytes>,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(config: Config, db: DatabaseConnection) -> anyhow::Result<Self> {
        // Every outbound TLS client of the process (SMTP, FCM, OIDC, webhooks, Stripe, MQTT)
        // uses the one provider rustls is built with here; installed before any is made.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let db = Db::new(db);
        let redis = match &config.redis_url {
            Some(url) => Some(Redis::new(url.expose())?),
            None => None,
        };
        let auth = AuthState::new(&config)?;
        let greenhouse = GreenhouseState::new(config.telemetry.offline_after);
        let shop = ShopState::new(&config)?;
        let metrics = Metrics::new();
        let realtime = crate::realtime::Realtime::new(&config, metrics.clone());
        let user_views = crate::users::views(&db, config.database.max_connections, &metrics);
        Ok(Self(Arc::new(Inner {
            user_views,
            openapi_json: OnceCell::new(),
            realtime,
            mailer: mail::Transport::from_config(&config)?,
            clock: Clock::default(),
            jobs: JobsState::default(),
            alerts: AlertsState::new(&config)?,
            config,
            db,
            redis,
            metrics,
            auth,
            greenhouse,
            telemetry: TelemetryState::default(),
            shop,
        })))
    }
}

/// A Redis connection made on first use and then kept (and re-established) by the
/// connection manager, so a Redis that is down at start makes us *not ready*, not dead.
pub struct Redis {
    client: redis::Client,
    conn: OnceCell<redis::aio::ConnectionManager>,
}

impl Redis {
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url).map_err(|e| anyhow::anyhow!("REDIS_URL: {e}"))?;
        Ok(Self { client, conn: OnceCell::new() })
    }

    /// The shared connection, connecting on first use.
    pub async fn conn(&self) -> redis::RedisResult<redis::aio::ConnectionManager> {
        self.conn
            .get_or_try_init(|| {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(Duration::from_secs(2)))
                    .set_number_of_retries(1);
                redis::aio::ConnectionManager::new_with_config(self.client.clone(), config)
            })
            .await
            .cloned()
    }

    /// `PING`, for readiness.
    pub async fn ping(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await.map(|_| ())
    }
}
