//! Building and running the application: connect, migrate, bind, serve, shut down cleanly.

use std::{future::Future, net::SocketAddr};

use axum::Router;
use sea_orm_migration::MigratorTrait;
use tokio::net::TcpListener;

use crate::{config::Config, migration::Migrator, state::AppState};

/// A bound, ready-to-serve application. `build` binds the listener (port 0 works), so the
/// caller knows the address before serving starts.
pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
}

impl Application {
    /// Connects to the database (waiting for it), applies migrations unless disabled, and binds.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with(config, Router::new()).await
    }

    /// As [`build`](Self::build), with extra routes under the same middleware stack.
    pub async fn build_with(config: Config, extra: Router<AppState>) -> anyhow::Result<Self> {
        let db = open_database(&config).await?;
        let addr = SocketAddr::new(config.http.host, config.http.port);
        let listener = TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        let state = AppState::new(config, db)?;
        // Sessions revoked within one access-token lifetime stay refused after a restart.
        state.auth.revocations.sync_from_db(&state.db, None).await?;
        let router = crate::http::router::build(&state, extra);
        // Migrations and the router's OpenAPI document leave megabytes of freed heap behind.
        crate::util::release_freed_memory();
        Ok(Self { listener, router, state })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then stops accepting and drains requests in flight
    /// for at most `SHUTDOWN_GRACE_SECS`.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let grace = self.state.config.http.shutdown_grace;
        let background = crate::background::spawn_all(&self.state);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let state = self.state.clone();
        let user_timeout = self.state.config.realtime.idle_timeout;
        let listener = axum::serve::ListenerExt::tap_io(self.listener, move |tcp| drop_if_silent(tcp, user_timeout));
        let serve = axum::serve(listener, self.router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move {
                shutdown.await;
                let _ = stop_tx.send(true);
                // Realtime connections never end by themselves: close them (WebSockets with
                // 1001) so the drain can finish.
                state.realtime.shutdown();
                tracing::info!("shutdown requested; draining requests in flight");
            });
        let deadline = async move {
            let mut rx = stop_rx;
            let _ = rx.wait_for(|stopped| *stopped).await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            res = serve => res.map_err(|e| anyhow::anyhow!("server error: {e}"))?,
            () = deadline => tracing::warn!(grace_secs = grace.as_secs(), "drain deadline passed; closing remaining connections"),
        }
        // WebSocket tasks are not part of the drain: give them a moment to send their close
        // frames and record presence before the database goes.
        self.state.realtime.shutdown();
        self.state.realtime.closed(std::time::Duration::from_secs(3).min(grace)).await;
        for task in background {
            task.abort();
        }
        self.state.db.close().await.ok();
        tracing::info!("stopped");
        Ok(())
    }

    /// Serves until SIGTERM or SIGINT.
    pub async fn run(self) -> anyhow::Result<()> {
        tracing::info!(addr = %self.local_addr(), "listening");
        self.run_until(shutdown_signal()).await
    }
}

/// Connects to the database (waiting for it) and applies pending migrations unless
/// `MASH_AUTO_MIGRATE=false`: how `serve` and `worker` start.
pub async fn open_database(config: &Config) -> anyhow::Result<sea_orm::DatabaseConnection> {
    let db = crate::db::connect(&config.database).await?;
    if config.auto_migrate {
        Migrator::up(&db, None).await.map_err(|e| anyhow::anyhow!("applying migrations failed: {e}"))?;
    }
    Ok(db)
}

/// Resolves on SIGTERM (orchestrators) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// Sets TCP_USER_TIMEOUT: data the peer has not acknowledged for `after` drops the connection.
/// Without it a client that vanished without a FIN or RST (a phone that lost its network) keeps
/// an SSE stream and its presence for the kernel's retransmission limit, about 15 minutes.
fn drop_if_silent(tcp: &mut tokio::net::TcpStream, after: std::time::Duration) {
    #[cfg(target_os = "linux")]
    if let Err(e) = socket2::SockRef::from(&*tcp).set_tcp_user_timeout(Some(after)) {
        tracing::debug!(error = %e, "could not set TCP_USER_TIMEOUT");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (tcp, after);
}
