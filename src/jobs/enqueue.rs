//! Putting jobs on the queue: the one place that writes new rows into `background_jobs`,
//! through any SeaORM connection, so a job enqueued inside the caller's transaction commits or
//! rolls back with it.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveValue::Set, ConnectionTrait, DbErr, EntityTrait};
use uuid::Uuid;

use super::{
    BackgroundJob,
    entity::{self, JobStatus},
    wake,
};

/// Enqueues `job` to run now, inside the caller's transaction when `db` is one.
pub async fn enqueue<C: ConnectionTrait, J: BackgroundJob>(db: &C, job: &J) -> Result<Uuid, DbErr> {
    enqueue_at(db, job, Utc::now()).await
}

/// Enqueues `job` to run at `run_at`.
pub async fn enqueue_at<C: ConnectionTrait, J: BackgroundJob>(
    db: &C,
    job: &J,
    run_at: DateTime<Utc>,
) -> Result<Uuid, DbErr> {
    let row = NewJob::of(job, run_at)?;
    insert(db, std::slice::from_ref(&row)).await?;
    Ok(row.id)
}

/// Inserts job rows, inside the caller's transaction when `db` is one, and tells the other
/// instances ([`wake::announce`], delivered at commit).
pub async fn insert<C: ConnectionTrait>(db: &C, jobs: &[NewJob]) -> Result<(), DbErr> {
    if jobs.is_empty() {
        return Ok(());
    }
    let now = Utc::now();
    let rows = jobs.iter().map(|j| entity::ActiveModel {
        id: Set(j.id),
        job_type: Set(j.job_type.to_string()),
        payload: Set(j.payload.clone()),
        priority: Set(j.priority),
        status: Set(JobStatus::Queued),
        attempts: Set(0),
        max_attempts: Set(j.max_attempts),
        run_at: Set(j.run_at),
        locked_until: Set(None),
        locked_by: Set(None),
        last_error: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    });
    entity::Entity::insert_many(rows).exec_without_returning(db).await?;
    wake::announce(db).await
}

/// A job row about to be inserted: made where the job is decided (an evaluation for a
/// telemetry batch), inserted with [`insert`] in the transaction it belongs to.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: Uuid,
    pub job_type: &'static str,
    pub payload: serde_json::Value,
    pub priority: i16,
    pub max_attempts: i32,
    pub run_at: DateTime<Utc>,
}

impl NewJob {
    pub fn of<J: BackgroundJob>(job: &J, run_at: DateTime<Utc>) -> Result<Self, DbErr> {
        Ok(Self {
            id: Uuid::now_v7(),
            job_type: J::NAME,
            payload: serde_json::to_value(job).map_err(|e| DbErr::Custom(format!("job arguments: {e}")))?,
            priority: J::PRIORITY,
            max_attempts: J::MAX_ATTEMPTS,
            run_at,
        })
    }
}
