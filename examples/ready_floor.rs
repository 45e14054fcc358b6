//! The floor under `GET /health/ready` on this stack (used by `bench/scenarios/10_health_ready.sh`):
//! a bare axum server on the same runtime as mash, with no middleware, whose `GET /ready` pings
//! PostgreSQL through an sqlx pool set up as mash's (ping-before-acquire off), and whose
//! `GET /live` touches nothing. What it serves is the most any server built on axum and sqlx
//! serves here; mash's own figures are read against it.
//!
//! ```text
//! ready_floor DATABASE_URL PORT POOL_SIZE
//! ```

use std::str::FromStr;

use axum::{Json, Router, extract::State, http::StatusCode, routing::get};
use sea_orm::sqlx::{
    self, Connection,
    postgres::{PgConnectOptions, PgPoolOptions},
};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        anyhow::bail!("usage: ready_floor DATABASE_URL PORT POOL_SIZE");
    }
    let pool = PgPoolOptions::new()
        .test_before_acquire(false)
        .max_connections(args[3].parse()?)
        .connect_with(PgConnectOptions::from_str(&args[1])?)
        .await?;
    let app = Router::new()
        .route("/live", get(|| async { Json(json!({ "status": "ok" })) }))
        .route("/ready", get(ready))
        .with_state(pool);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args[2].parse::<u16>()?)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

async fn ready(State(pool): State<sqlx::PgPool>) -> Result<Json<Value>, StatusCode> {
    let mut conn = pool.acquire().await.map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    conn.ping().await.map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    Ok(Json(json!({ "status": "ok", "checks": { "database": "ok" } })))
}
