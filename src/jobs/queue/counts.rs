//! How many jobs there are, by type and state (`GET /admin/jobs`, the queue gauges).

use sea_orm::{ConnectionTrait, DbErr, Statement};

use crate::jobs::entity::JobStatus;

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
        let status: JobStatus = row.try_get("", "status")?;
        let retried: i32 = row.try_get("", "retried")?;
        let n: i64 = row.try_get("", "n")?;
        if out.last().is_none_or(|(t, _)| *t != job_type) {
            out.push((job_type, Counts::default()));
        }
        let c = &mut out.last_mut().expect("pushed above").1;
        match status {
            JobStatus::Queued => {
                c.queued += n;
                if retried != 0 {
                    c.failed += n;
                }
            }
            JobStatus::Running => c.running += n,
            JobStatus::Dead => c.dead += n,
        }
    }
    Ok(out)
}
