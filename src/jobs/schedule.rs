//! Periodic jobs. Each has a row in `job_schedules` with its next due time; every instance
//! looks at the due rows, and the one whose conditional update (`… WHERE next_run_at = <what it
//! read>`) lands enqueues that round's job in the same transaction. However many instances
//! run, a round is enqueued once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, TransactionTrait,
    sea_query::{Expr, OnConflict},
};
use tokio::task::JoinHandle;

use super::{BackgroundJob, enqueue, entity::schedule};
use crate::state::AppState;

/// One periodic job: a name, how often, and how to enqueue a round.
pub struct Periodic {
    pub name: &'static str,
    pub every: Duration,
    enqueue: for<'a> fn(&'a sea_orm::DatabaseTransaction) -> futures_util::future::BoxFuture<'a, Result<(), DbErr>>,
}

impl Periodic {
    pub fn of<J: BackgroundJob + Default>(every: Duration) -> Self {
        Self {
            name: J::NAME,
            every,
            enqueue: |txn| Box::pin(async move { enqueue(txn, &J::default()).await.map(|_| ()) }),
        }
    }
}

/// The periodic jobs of this binary, with their configured intervals.
pub fn periodic(state: &AppState) -> Vec<Periodic> {
    vec![
        Periodic::of::<crate::telemetry::maintenance::TelemetryMaintenance>(state.config.telemetry.maintenance_every),
        Periodic::of::<crate::alerts::evaluate::CheckStale>(state.config.alerts.stale_check_every),
        Periodic::of::<crate::idempotency::PruneIdempotencyKeys>(Duration::from_secs(600)),
        Periodic::of::<super::Upkeep>(Duration::from_secs(3600)),
    ]
}

/// Makes sure every periodic job has its row (first round due now) and the configured interval.
pub async fn register(db: &DatabaseConnection, jobs: &[Periodic], now: DateTime<Utc>) -> Result<(), DbErr> {
    for p in jobs {
        schedule::Entity::insert(schedule::ActiveModel {
            name: Set(p.name.to_string()),
            every_secs: Set(p.every.as_secs().max(1) as i64),
            next_run_at: Set(now),
            last_run_at: Set(None),
        })
        .on_conflict(OnConflict::column(schedule::Column::Name).update_column(schedule::Column::EverySecs).to_owned())
        .exec_without_returning(db)
        .await?;
    }
    Ok(())
}

/// Enqueues the rounds that are due and that no other instance took first. Returns the names
/// enqueued by this call.
pub async fn tick(state: &AppState, jobs: &[Periodic]) -> Result<Vec<&'static str>, DbErr> {
    let now = state.clock.now();
    let due = schedule::Entity::find().filter(schedule::Column::NextRunAt.lte(now)).all(&state.db).await?;
    let mut enqueued = Vec::new();
    for row in due {
        let Some(p) = jobs.iter().find(|p| p.name == row.name) else { continue };
        let next = now + chrono::Duration::seconds(row.every_secs.max(1));
        let txn = state.db.begin().await?;
        let won = schedule::Entity::update_many()
            .col_expr(schedule::Column::NextRunAt, Expr::value(next))
            .col_expr(schedule::Column::LastRunAt, Expr::value(Some(now)))
            .filter(schedule::Column::Name.eq(row.name.as_str()))
            .filter(schedule::Column::NextRunAt.eq(row.next_run_at))
            .exec(&txn)
            .await?
            .rows_affected
            == 1;
        if won {
            (p.enqueue)(&txn).await?;
            txn.commit().await?;
            enqueued.push(p.name);
        } else {
            txn.rollback().await?;
        }
    }
    if !enqueued.is_empty() {
        state.jobs.wake();
    }
    Ok(enqueued)
}

/// Registers the schedules and ticks every second.
pub fn spawn(state: &AppState) -> JoinHandle<()> {
    let state = state.clone();
    tokio::spawn(async move {
        let jobs = periodic(&state);
        let mut backoff = Duration::from_secs(1);
        while let Err(e) = register(&state.db, &jobs, state.clock.now()).await {
            tracing::warn!(error = %e, "could not register periodic jobs; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
        let mut tick_every = tokio::time::interval(Duration::from_secs(1));
        tick_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick_every.tick().await;
            if let Err(e) = tick(&state, &jobs).await {
                tracing::warn!(error = %e, "schedule tick failed");
            }
        }
    })
}
