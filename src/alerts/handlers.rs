//! `/alerts`: list, read, acknowledge and resolve. A GROWER sees and acts only on the alerts
//! of growers they belong to (others answer 404); ADMIN on all. Acknowledging and resolving
//! are audited and announced like every other change.

use axum::extract::State;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, sea_query::Expr};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;

use crate::routes;
use uuid::Uuid;

use super::{
    AlertOut, Change,
    entity::{AlertStatus, Severity, alert},
};
use crate::{
    audit::{self, Entry},
    auth::{AuthUser, ClientMeta},
    greenhouse::access::{self, Need},
    http::{AppError, Json, ListParams, Page, Path, Query},
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_alerts))
        .routes(routes!(get_alert))
        .routes(routes!(ack_alert))
        .routes(routes!(resolve_alert))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct AlertQuery {
    /// Only this grower's alerts (default: every grower the caller belongs to).
    pub grower_id: Option<String>,
    /// `active`, `acknowledged` or `resolved`.
    pub status: Option<String>,
    /// `info`, `warning` or `critical`.
    pub severity: Option<String>,
    pub device_id: Option<String>,
    pub page: Option<String>,
    pub limit: Option<String>,
}

/// Alerts of the caller's growers, newest first.
#[utoipa::path(get, path = "/alerts", tag = "alerts", security(("bearer" = [])), params(AlertQuery),
    responses((status = 200, body = Page<AlertOut>), (status = 400), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all)]
async fn list_alerts(
    State(state): State<AppState>,
    user: AuthUser,
    Query(q): Query<AlertQuery>,
) -> Result<Json<Page<AlertOut>>, AppError> {
    let page = ListParams { page: q.page.clone(), limit: q.limit.clone(), cursor: None }.validate()?;
    let mut query = alert::Entity::find();
    match crate::http::uuid_param("growerId", q.grower_id.as_deref())? {
        Some(g) => {
            access::grower(&state.db, &user, g, Need::Read).await?;
            query = query.filter(alert::Column::GrowerId.eq(g));
        }
        None => {
            if let Some(growers) = access::visible_growers(&state.db, &user).await? {
                query = query.filter(alert::Column::GrowerId.is_in(growers));
            }
        }
    }
    if let Some(s) = q.status.as_deref().filter(|s| !s.is_empty()) {
        let Some(s) = AlertStatus::parse(s) else {
            return Err(AppError::invalid_field("status", "must be active, acknowledged or resolved"));
        };
        query = query.filter(alert::Column::Status.eq(s));
    }
    if let Some(s) = q.severity.as_deref().filter(|s| !s.is_empty()) {
        let Some(s) = Severity::parse(s) else {
            return Err(AppError::invalid_field("severity", "must be info, warning or critical"));
        };
        query = query.filter(alert::Column::Severity.eq(s));
    }
    if let Some(d) = crate::http::uuid_param("deviceId", q.device_id.as_deref())? {
        query = query.filter(alert::Column::DeviceId.eq(d));
    }
    let (rows, total) = page
        .fetch(&state.db, query, |q| q.order_by_desc(alert::Column::CreatedAt).order_by_desc(alert::Column::Id))
        .await?;
    Ok(Json(Page::new(rows.iter().map(AlertOut::from).collect(), &page, total)))
}

/// An alert the caller may `need`: 404 when it does not exist or is in a grower they are not in.
async fn visible_alert(state: &AppState, user: &AuthUser, id: Uuid, need: Need) -> Result<alert::Model, AppError> {
    access::require_greenhouses(user)?;
    let a = alert::Entity::find_by_id(id)
        .one(&state.db)
        .await?
        .ok_or_else(|| AppError::NotFound("alert not found".into()))?;
    access::grower_of(&state.db, user, a.grower_id, need, "alert not found").await?;
    Ok(a)
}

/// One alert.
#[utoipa::path(get, path = "/alerts/{id}", tag = "alerts", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = AlertOut), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all, fields(alert_id = %id))]
async fn get_alert(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<AlertOut>, AppError> {
    Ok(Json(AlertOut::from(&visible_alert(&state, &user, id, Need::Read).await?)))
}

/// Acknowledges an active alert: someone is on it. It stays open (repeats still update it)
/// until resolved. Acknowledging an acknowledged alert changes nothing; a resolved one is 409.
#[utoipa::path(post, path = "/alerts/{id}/ack", tag = "alerts", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = AlertOut), (status = 401), (status = 403), (status = 404), (status = 409)))]
#[tracing::instrument(skip_all, fields(alert_id = %id))]
async fn ack_alert(
    State(state): State<AppState>,
    user: AuthUser,
    client: ClientMeta,
    Path(id): Path<Uuid>,
) -> Result<Json<AlertOut>, AppError> {
    let a = visible_alert(&state, &user, id, Need::Write).await?;
    let now = state.clock.now();
    let txn = state.db.begin_write().await?;
    let moved = alert::Entity::update_many()
        .col_expr(alert::Column::Status, Expr::value(AlertStatus::Acknowledged))
        .col_expr(alert::Column::AcknowledgedAt, Expr::value(Some(now)))
        .col_expr(alert::Column::AcknowledgedBy, Expr::value(Some(user.user_id)))
        .col_expr(alert::Column::UpdatedAt, Expr::value(now))
        .filter(alert::Column::Id.eq(id))
        .filter(alert::Column::Status.eq(AlertStatus::Active))
        .exec(&txn)
        .await?;
    let current =
        alert::Entity::find_by_id(id).one(&txn).await?.ok_or_else(|| AppError::NotFound("alert not found".into()))?;
    if moved.rows_affected == 0 {
        txn.rollback().await?;
        return match current.status {
            AlertStatus::Acknowledged => Ok(Json(AlertOut::from(&current))),
            _ => Err(AppError::Conflict("the alert is already resolved".into())),
        };
    }
    audit::record(&txn, Entry::new("alert.acknowledge").by(Some(user.user_id)).on("alert", id).client(&client)).await?;
    super::delivery::notify(&txn, &state, a.grower_id, &[(Change::Acknowledged, current.clone())], None).await?;
    txn.commit().await?;
    state.jobs.wake();
    Ok(Json(AlertOut::from(&current)))
}

/// Resolves an open alert. The next time the condition is met, a new alert opens. 409 when it
/// is already resolved.
#[utoipa::path(post, path = "/alerts/{id}/resolve", tag = "alerts", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = AlertOut), (status = 401), (status = 403), (status = 404), (status = 409)))]
#[tracing::instrument(skip_all, fields(alert_id = %id))]
async fn resolve_alert(
    State(state): State<AppState>,
    user: AuthUser,
    client: ClientMeta,
    Path(id): Path<Uuid>,
) -> Result<Json<AlertOut>, AppError> {
    let a = visible_alert(&state, &user, id, Need::Write).await?;
    let txn = state.db.begin_write().await?;
    let Some(done) = super::evaluate::resolve(&txn, &a, Some(user.user_id), state.clock.now()).await? else {
        return Err(AppError::Conflict("the alert is already resolved".into()));
    };
    // The row may have changed since it was read (a repeat); answer with what is stored.
    let current = alert::Entity::find_by_id(id).one(&txn).await?.unwrap_or(done);
    audit::record(&txn, Entry::new("alert.resolve").by(Some(user.user_id)).on("alert", id).client(&client)).await?;
    super::delivery::notify(&txn, &state, a.grower_id, &[(Change::Resolved, current.clone())], None).await?;
    txn.commit().await?;
    state.jobs.wake();
    Ok(Json(AlertOut::from(&current)))
}
