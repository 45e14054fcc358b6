//! `/alerts`: list, read, acknowledge and resolve. A GROWER sees and acts only on the alerts
//! of growers they belong to (others answer 404); ADMIN on all. Acknowledging and resolving
//! are audited and announced like every other change ([`super::transition`]).

use axum::extract::State;
use sea_orm::ConnectionTrait;
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use super::{
    AlertOut, AlertQuery,
    entity::{AlertStatus, alert},
    list::{self, AlertFilter},
    transition,
};
use crate::{
    auth::{AuthUser, ClientMeta},
    greenhouse::access::{self, Need},
    http::{AppError, Json, ListParams, Page, Path, Query, uuid_param},
    routes,
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_alerts))
        .routes(routes!(get_alert))
        .routes(routes!(ack_alert))
        .routes(routes!(resolve_alert))
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
    // Checked in this order: the grower asked for (and access to it), then the filters.
    let filter = AlertFilter {
        growers: grower_scope(&state.db, &user, uuid_param("growerId", q.grower_id.as_deref())?).await?,
        status: q.status()?,
        severity: q.severity()?,
        device_id: uuid_param("deviceId", q.device_id.as_deref())?,
    };
    let (rows, total) = list::list(&state.db, &filter, &page).await?;
    Ok(Json(Page::new(rows.iter().map(AlertOut::from).collect(), &page, total)))
}

/// The growers whose rows a list shows the caller: the one asked for, when they may read it,
/// or every grower they belong to (`None`: all of them, for ADMIN).
pub(super) async fn grower_scope<C: ConnectionTrait>(
    db: &C,
    user: &AuthUser,
    asked: Option<Uuid>,
) -> Result<Option<Vec<Uuid>>, AppError> {
    Ok(match asked {
        Some(g) => access::grower(db, user, g, Need::Read).await.map(|_| Some(vec![g]))?,
        None => access::visible_growers(db, user).await?,
    })
}

/// An alert the caller may `need`: 404 when it does not exist or is in a grower they are not in.
async fn visible_alert(state: &AppState, user: &AuthUser, id: Uuid, need: Need) -> Result<alert::Model, AppError> {
    access::require_greenhouses(user)?;
    let a = list::find(&state.db, id.into()).await?;
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
    move_alert(&state, &user, &client, id, AlertStatus::Acknowledged).await
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
    move_alert(&state, &user, &client, id, AlertStatus::Resolved).await
}

/// What acknowledging and resolving share: the caller must be able to write the alert's grower.
async fn move_alert(
    state: &AppState,
    user: &AuthUser,
    client: &ClientMeta,
    id: Uuid,
    to: AlertStatus,
) -> Result<Json<AlertOut>, AppError> {
    visible_alert(state, user, id, Need::Write).await?;
    let a = transition::by_person(state, id.into(), to, user.user_id.into(), client).await?;
    Ok(Json(AlertOut::from(&a)))
}
