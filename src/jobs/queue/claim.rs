//! Taking jobs off the queue: a worker's claim (a lease per job type), and a run that takes on
//! queued jobs of its own type ([`due`], then [`remove_taken`] in its transaction).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait, LockBehavior, LockType, Order, Query},
};
use uuid::Uuid;

use crate::jobs::entity::{self, Column, JobStatus};

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
        .and_where(Column::Status.eq(JobStatus::Queued))
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
        .value(Column::Status, JobStatus::Running)
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
    entity::Entity::find()
        .filter(Column::Status.eq(JobStatus::Queued))
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
            .filter(Column::Status.eq(JobStatus::Queued))
            .exec_with_returning(db)
            .await?;
        removed.extend(gone.into_iter().map(|j| j.id));
    }
    Ok(removed)
}
