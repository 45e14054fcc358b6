//! Finding alerts: one by id, and the page of a filtered list behind `GET /alerts`.

use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use super::{
    entity::{AlertStatus, Severity, alert},
    error::AlertError,
};
use crate::{http::PageRequest, ids::AlertId};

/// The alert with this id.
pub async fn find<C: ConnectionTrait>(db: &C, id: AlertId) -> Result<alert::Model, AlertError> {
    alert::Entity::find_by_id(id).one(db).await?.ok_or(AlertError::NotFound)
}

/// Which alerts a list shows.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    /// Only these growers' (`None`: every grower's).
    pub growers: Option<Vec<Uuid>>,
    pub status: Option<AlertStatus>,
    pub severity: Option<Severity>,
    pub device_id: Option<Uuid>,
}

/// One page of the alerts `filter` keeps, newest first, and how many there are in all.
pub async fn list<C: ConnectionTrait>(
    db: &C,
    filter: &AlertFilter,
    page: &PageRequest,
) -> Result<(Vec<alert::Model>, u64), DbErr> {
    let mut query = alert::Entity::find();
    if let Some(growers) = &filter.growers {
        query = query.filter(alert::Column::GrowerId.is_in(growers.iter().copied()));
    }
    if let Some(s) = filter.status {
        query = query.filter(alert::Column::Status.eq(s));
    }
    if let Some(s) = filter.severity {
        query = query.filter(alert::Column::Severity.eq(s));
    }
    if let Some(d) = filter.device_id {
        query = query.filter(alert::Column::DeviceId.eq(d));
    }
    page.fetch(db, query, |q| q.order_by_desc(alert::Column::CreatedAt).order_by_desc(alert::Column::Id)).await
}
