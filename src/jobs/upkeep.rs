//! `queue_upkeep`, hourly: dead jobs and delivery records past their retention go.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};

use super::{BackgroundJob, JobStatus, Run, entity};
use crate::alerts::entity::delivery;
use crate::state::AppState;

/// Queue and alerting upkeep: drops dead jobs and delivery records past their retention.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Upkeep {}

impl BackgroundJob for Upkeep {
    const NAME: &'static str = "queue_upkeep";

    async fn run(&self, state: &AppState, _run: Run) -> anyhow::Result<()> {
        let cutoff = state.clock.now() - chrono::Duration::days(i64::from(state.config.jobs.dead_retention_days));
        let dead = entity::Entity::delete_many()
            .filter(entity::Column::Status.eq(JobStatus::Dead))
            .filter(entity::Column::UpdatedAt.lt(cutoff))
            .exec(&state.db)
            .await?
            .rows_affected;
        let deliveries = delivery::Entity::delete_many()
            .filter(delivery::Column::CreatedAt.lt(cutoff))
            .exec(&state.db)
            .await?
            .rows_affected;
        tracing::info!(dead, deliveries, %cutoff, "queue upkeep done");
        Ok(())
    }
}
