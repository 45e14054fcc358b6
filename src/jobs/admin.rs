//! `GET /admin/jobs`: the queue at a glance, and `POST /admin/jobs/{id}/retry` for a dead job.

use axum::extract::State;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, sea_query::Expr};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;

use crate::routes;
use uuid::Uuid;

use super::{
    entity::{self, Column, JobStatus},
    queue::{self, Counts},
};
use crate::{
    audit::{self, Entry},
    auth::{Authorized, ClientMeta, perm},
    http::{AppError, Json, Path},
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_jobs)).routes(routes!(retry_job))
}

/// One job type's counts.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobTypeOut {
    pub job_type: String,
    #[serde(flatten)]
    pub counts: Counts,
}

/// A dead-lettered job.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadJobOut {
    pub id: Uuid,
    pub job_type: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When it was dead-lettered.
    pub failed_at: chrono::DateTime<chrono::Utc>,
}

/// The queue: totals, per job type, and the latest dead jobs.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobsOut {
    /// Jobs waiting to run (`queued`), retries included.
    pub depth: i64,
    pub running: i64,
    /// Queued again after a failed attempt.
    pub failed: i64,
    pub dead: i64,
    /// When the longest-waiting due job became due; `null` when none is waiting.
    pub oldest_due_at: Option<chrono::DateTime<chrono::Utc>>,
    pub by_type: Vec<JobTypeOut>,
    /// The 20 most recent dead jobs, with their last error.
    pub recent_dead: Vec<DeadJobOut>,
}

/// Queue depth, running, failed and dead jobs (ADMIN).
#[utoipa::path(get, path = "/admin/jobs", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = JobsOut), (status = 401), (status = 403)))]
#[tracing::instrument(skip_all)]
async fn get_jobs(
    State(state): State<AppState>,
    _admin: Authorized<perm::ReadJobs>,
) -> Result<Json<JobsOut>, AppError> {
    let by_type = queue::counts(&state.db).await?;
    let total = by_type.iter().fold(Counts::default(), |mut t, (_, c)| {
        t.queued += c.queued;
        t.running += c.running;
        t.failed += c.failed;
        t.dead += c.dead;
        t
    });
    let oldest_due_at = entity::Entity::find()
        .select_only()
        .column(Column::RunAt)
        .filter(Column::Status.eq(JobStatus::Queued))
        .filter(Column::RunAt.lte(state.clock.now()))
        .order_by_asc(Column::RunAt)
        .into_tuple::<chrono::DateTime<chrono::Utc>>()
        .one(&state.db)
        .await?;
    let recent_dead = entity::Entity::find()
        .filter(Column::Status.eq(JobStatus::Dead))
        .order_by_desc(Column::UpdatedAt)
        .limit(20)
        .all(&state.db)
        .await?
        .into_iter()
        .map(|j| DeadJobOut {
            id: j.id,
            job_type: j.job_type,
            attempts: j.attempts,
            last_error: j.last_error,
            created_at: j.created_at,
            failed_at: j.updated_at,
        })
        .collect();
    Ok(Json(JobsOut {
        depth: total.queued,
        running: total.running,
        failed: total.failed,
        dead: total.dead,
        oldest_due_at,
        by_type: by_type.into_iter().map(|(job_type, counts)| JobTypeOut { job_type, counts }).collect(),
        recent_dead,
    }))
}

/// Puts a dead job back on the queue with a fresh set of attempts (ADMIN). 404 when no dead
/// job has this id. Audited.
#[utoipa::path(post, path = "/admin/jobs/{id}/retry", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path)), responses((status = 204), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all, fields(job_id = %id))]
async fn retry_job(
    State(state): State<AppState>,
    admin: Authorized<perm::ManageConfig>,
    client: ClientMeta,
    Path(id): Path<Uuid>,
) -> Result<axum::http::StatusCode, AppError> {
    let now = state.clock.now();
    let txn = state.db.begin_write().await?;
    let moved = entity::Entity::update_many()
        .col_expr(Column::Status, Expr::value(JobStatus::Queued))
        .col_expr(Column::Attempts, Expr::value(0))
        .col_expr(Column::RunAt, Expr::value(now))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(Column::Id.eq(id))
        .filter(Column::Status.eq(JobStatus::Dead))
        .exec(&txn)
        .await?;
    if moved.rows_affected == 0 {
        return Err(AppError::NotFound("no dead job has this id".into()));
    }
    audit::record(&txn, Entry::new("job.retry").by(Some(admin.user_id)).on("job", id).client(&client)).await?;
    txn.commit().await?;
    state.jobs.wake();
    Ok(axum::http::StatusCode::NO_CONTENT)
}
