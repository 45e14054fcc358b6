//! The queue's statements: claim, finish, fail, recover expired leases, count.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, QueryFilter, Statement,
    sea_query::{Expr, ExprTrait, LockBehavior, LockType, Order, Query},
};
use uuid::Uuid;

use super::entity::{self, Column, DEAD, QUEUED, RUNNING};

/// Leases up to `limit` due jobs of the given types to `worker` until `now + lease`, highest
/// priority and earliest due first. Each claim counts as an attempt.
pub async fn claim<C: ConnectionTrait>(
    db: &C,
    types: &[&'static str],
    worker: &str,
    now: DateTime<Utc>,
    lease: Duration,
    limit: u64,
) -> Result<Vec<entity::Model>, DbErr> {
    let leases: Vec<(&'static str, Duration)> = types.iter().map(|t| (*t, lease)).collect();
    claim_leased(db, &leases, worker, now, limit).await
}

/// As [`claim`], with a lease per job type (`(type, lease)`), so a short job whose worker died
/// is retried soon while a long one keeps the time it needs.
pub async fn claim_leased<C: ConnectionTrait>(
    db: &C,
    leases: &[(&'static str, Duration)],
    worker: &str,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<entity::Model>, DbErr> {
    let due = Query::select()
        .column(Column::Id)
        .from(entity::Entity)
        .and_where(Column::Status.eq(QUEUED))
        .and_where(Column::RunAt.lte(now))
        .and_where(Column::JobType.is_in(leases.iter().map(|(t, _)| *t)))
        .order_by(Column::Priority, Order::Desc)
        .order_by(Column::RunAt, Order::Asc)
        .limit(limit)
        // PostgreSQL: concurrent claimers skip rows another claim holds. SQLite has one writer
        // at a time, and the builder leaves the clause out there.
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .to_owned();
    let until = |lease: Duration| now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::minutes(5));
    let longest = leases.iter().map(|(_, l)| *l).max().unwrap_or(Duration::from_secs(300));
    let mut distinct: Vec<Duration> = leases.iter().map(|(_, l)| *l).collect();
    distinct.sort_unstable();
    distinct.dedup();
    let locked_until: Expr = if distinct.len() <= 1 {
        Expr::value(until(longest))
    } else {
        let mut case: Option<sea_orm::sea_query::CaseStatement> = None;
        for (t, l) in leases {
            let cond = Expr::col(Column::JobType).eq(*t);
            case = Some(match case {
                None => Expr::case(cond, until(*l)),
                Some(c) => c.case(cond, until(*l)),
            });
        }
        case.map(|c| c.finally(until(longest)).into()).unwrap_or_else(|| Expr::value(until(longest)))
    };
    let claim = Query::update()
        .table(entity::Entity)
        .value(Column::Status, RUNNING)
        .value(Column::Attempts, Expr::col(Column::Attempts).add(1))
        .value(Column::LockedUntil, locked_until)
        .value(Column::LockedBy, worker)
        .value(Column::UpdatedAt, now)
        .and_where(Column::Id.in_subquery(due))
        .returning_all()
        .to_owned();
    let stmt = db.get_database_backend().build(&claim);
    let mut jobs = entity::Model::find_by_statement(stmt).all(db).await?;
    jobs.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.run_at.cmp(&b.run_at)));
    Ok(jobs)
}

/// Up to `limit` due, queued jobs of one type, for a run that does their work too (in its own
/// transaction, which [`remove_taken`] them): a read that locks nothing. Between this read and
/// that removal another worker may claim some of them; [`remove_taken`] says which were still
/// queued, and only those are done by the run.
pub async fn due<C: ConnectionTrait>(
    db: &C,
    job_type: &str,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<entity::Model>, DbErr> {
    use sea_orm::{QueryOrder, QuerySelect};
    entity::Entity::find()
        .filter(Column::Status.eq(QUEUED))
        .filter(Column::JobType.eq(job_type))
        .filter(Column::RunAt.lte(now))
        .order_by_desc(Column::Priority)
        .order_by_asc(Column::RunAt)
        .limit(limit)
        .all(db)
        .await
}

/// Removes, inside the caller's transaction, the jobs among `ids` that are still queued;
/// returns the ids removed. The caller's commit completes them, its rollback leaves them queued.
pub async fn remove_taken<C: ConnectionTrait>(db: &C, ids: &[Uuid]) -> Result<Vec<Uuid>, DbErr> {
    let mut removed = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let gone = entity::Entity::delete_many()
            .filter(Column::Id.is_in(chunk.iter().copied()))
            .filter(Column::Status.eq(QUEUED))
            .exec_with_returning(db)
            .await?;
        removed.extend(gone.into_iter().map(|j| j.id));
    }
    Ok(removed)
}

/// A run succeeded: the job is gone. `attempt` fences out a worker whose lease was taken over.
pub async fn complete<C: ConnectionTrait>(db: &C, id: Uuid, attempt: i32) -> Result<(), DbErr> {
    complete_many(db, &[(id, attempt)]).await
}

/// Several runs succeeded: one statement removes them all.
pub async fn complete_many<C: ConnectionTrait>(db: &C, done: &[(Uuid, i32)]) -> Result<(), DbErr> {
    for chunk in done.chunks(200) {
        let which = chunk.iter().fold(sea_orm::Condition::any(), |c, (id, attempt)| {
            c.add(sea_orm::Condition::all().add(Column::Id.eq(*id)).add(Column::Attempts.eq(*attempt)))
        });
        entity::Entity::delete_many().filter(Column::Status.eq(RUNNING)).filter(which).exec(db).await?;
    }
    Ok(())
}

/// The delay before attempt `attempts + 1`: 2^attempts seconds with ±50% jitter, at most an hour.
pub fn backoff(attempts: i32) -> chrono::Duration {
    let base = 2f64.powi(attempts.clamp(0, 12)).min(3600.0);
    let jittered = base * rand::rng().random_range(0.5..1.5);
    chrono::Duration::milliseconds((jittered * 1000.0) as i64)
}

/// What became of a failed run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    Retry,
    Dead,
}

/// A run failed: retried after a backoff, or dead-lettered when out of attempts (or when the
/// error is permanent). The error is kept either way.
pub async fn fail<C: ConnectionTrait>(
    db: &C,
    job: &entity::Model,
    error: &str,
    permanent: bool,
    now: DateTime<Utc>,
) -> Result<Failed, DbErr> {
    let outcome = if permanent || job.attempts >= job.max_attempts { Failed::Dead } else { Failed::Retry };
    let (status, run_at) = match outcome {
        Failed::Dead => (DEAD, now),
        Failed::Retry => (QUEUED, now + backoff(job.attempts)),
    };
    let error: String = error.chars().take(4000).collect();
    entity::Entity::update_many()
        .col_expr(Column::Status, Expr::value(status))
        .col_expr(Column::RunAt, Expr::value(run_at))
        .col_expr(Column::LockedUntil, Expr::value(Option::<DateTime<Utc>>::None))
        .col_expr(Column::LockedBy, Expr::value(Option::<String>::None))
        .col_expr(Column::LastError, Expr::value(error))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(Column::Id.eq(job.id))
        .filter(Column::Attempts.eq(job.attempts))
        .filter(Column::Status.eq(RUNNING))
        .exec(db)
        .await?;
    Ok(outcome)
}

/// Jobs whose lease ran out (their worker died or hung) go back to the queue, or to the dead
/// letters when that was their last attempt. Returns how many were recovered.
pub async fn recover_expired<C: ConnectionTrait>(db: &C, now: DateTime<Utc>) -> Result<u64, DbErr> {
    let stmt = Query::update()
        .table(entity::Entity)
        .value(
            Column::Status,
            Expr::case(Expr::col(Column::Attempts).gte(Expr::col(Column::MaxAttempts)), DEAD).finally(QUEUED),
        )
        .value(Column::RunAt, now)
        .value(Column::LockedUntil, Option::<DateTime<Utc>>::None)
        .value(Column::LockedBy, Option::<String>::None)
        .value(Column::LastError, "the worker running it stopped or timed out (lease expired)")
        .value(Column::UpdatedAt, now)
        .and_where(Column::Status.eq(RUNNING))
        .and_where(Column::LockedUntil.lt(now))
        .to_owned();
    Ok(db.execute(&stmt).await?.rows_affected())
}

/// Jobs by type and state.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// Waiting to run (due now or later), retries included.
    pub queued: i64,
    pub running: i64,
    /// Queued again after a failed attempt.
    pub failed: i64,
    /// Out of attempts; kept with their last error.
    pub dead: i64,
}

/// Counts per job type.
pub async fn counts<C: ConnectionTrait>(db: &C) -> Result<Vec<(String, Counts)>, DbErr> {
    const SQL: &str = "SELECT job_type, status, CASE WHEN attempts > 0 THEN 1 ELSE 0 END AS retried, \
                       COUNT(*) AS n FROM background_jobs GROUP BY job_type, status, retried ORDER BY job_type";
    let rows = db.query_all_raw(Statement::from_string(db.get_database_backend(), SQL)).await?;
    let mut out: Vec<(String, Counts)> = Vec::new();
    for row in rows {
        let job_type: String = row.try_get("", "job_type")?;
        let status: String = row.try_get("", "status")?;
        let retried: i32 = row.try_get("", "retried")?;
        let n: i64 = row.try_get("", "n")?;
        if out.last().is_none_or(|(t, _)| *t != job_type) {
            out.push((job_type, Counts::default()));
        }
        let c = &mut out.last_mut().expect("pushed above").1;
        match status.as_str() {
            QUEUED => {
                c.queued += n;
                if retried != 0 {
                    c.failed += n;
                }
            }
            RUNNING => c.running += n,
            _ => c.dead += n,
        }
    }
    Ok(out)
}
