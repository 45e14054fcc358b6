//! The `/alert-rules` handlers: who may, what was asked, what is answered.

use axum::{extract::State, http::StatusCode};
use uuid::Uuid;

use super::{RuleIn, RuleOut, RulePatch, RuleQuery, create, delete, list, spec::RuleSpec, update};
use crate::{
    alerts::{entity::rule, handlers::grower_scope},
    auth::{AuthUser, ClientMeta},
    greenhouse::access::{self, Need},
    http::{AppError, Json, ListParams, Page, Path, Query, uuid_param},
    state::AppState,
};

/// A rule the caller may `need`: 404 when it does not exist or is in a grower they are not in.
async fn visible_rule(state: &AppState, user: &AuthUser, id: Uuid, need: Need) -> Result<rule::Model, AppError> {
    access::require_greenhouses(user)?;
    let r = list::find(&state.db, id.into()).await?;
    access::grower_of(&state.db, user, r.grower_id, need, "alert rule not found").await?;
    Ok(r)
}

/// Creates a rule (members of the grower and ADMIN).
#[utoipa::path(post, path = "/alert-rules", tag = "alerts", security(("bearer" = [])), request_body = RuleIn,
    responses((status = 201, body = RuleOut), (status = 400), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all)]
pub(super) async fn create_rule(
    State(state): State<AppState>,
    user: AuthUser,
    client: ClientMeta,
    Json(input): Json<RuleIn>,
) -> Result<(StatusCode, Json<RuleOut>), AppError> {
    access::grower(&state.db, &user, input.grower_id, Need::Write).await?;
    let grower_id = input.grower_id.into();
    let r = create::create(&state, grower_id, RuleSpec::from(input), user.user_id.into(), &client).await?;
    Ok((StatusCode::CREATED, Json(RuleOut::from(&r))))
}

/// Rules of the caller's growers, oldest first.
#[utoipa::path(get, path = "/alert-rules", tag = "alerts", security(("bearer" = [])), params(RuleQuery),
    responses((status = 200, body = Page<RuleOut>), (status = 400), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all)]
pub(super) async fn list_rules(
    State(state): State<AppState>,
    user: AuthUser,
    Query(q): Query<RuleQuery>,
) -> Result<Json<Page<RuleOut>>, AppError> {
    let page = ListParams { page: q.page.clone(), limit: q.limit.clone(), cursor: None }.validate()?;
    let growers = grower_scope(&state.db, &user, uuid_param("growerId", q.grower_id.as_deref())?).await?;
    let device_id = uuid_param("deviceId", q.device_id.as_deref())?;
    let (rows, total) = list::list(&state.db, growers.as_deref(), device_id, &page).await?;
    Ok(Json(Page::new(rows.iter().map(RuleOut::from).collect(), &page, total)))
}

/// Changes a rule (members of its grower and ADMIN). The result is validated as a whole.
#[utoipa::path(patch, path = "/alert-rules/{id}", tag = "alerts", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = RulePatch,
    responses((status = 200, body = RuleOut), (status = 400), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all, fields(rule_id = %id))]
pub(super) async fn update_rule(
    State(state): State<AppState>,
    user: AuthUser,
    client: ClientMeta,
    Path(id): Path<Uuid>,
    Json(patch): Json<RulePatch>,
) -> Result<Json<RuleOut>, AppError> {
    let before = visible_rule(&state, &user, id, Need::Write).await?;
    let r = update::update(&state, before, patch, user.user_id.into(), &client).await?;
    Ok(Json(RuleOut::from(&r)))
}

/// Deletes a rule (members of its grower and ADMIN); its open alerts are resolved.
#[utoipa::path(delete, path = "/alert-rules/{id}", tag = "alerts", security(("bearer" = [])),
    params(("id" = Uuid, Path)), responses((status = 204), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all, fields(rule_id = %id))]
pub(super) async fn delete_rule(
    State(state): State<AppState>,
    user: AuthUser,
    client: ClientMeta,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, AppError> {
    let r = visible_rule(&state, &user, id, Need::Write).await?;
    delete::delete(&state, &r, user.user_id.into(), &client).await?;
    Ok(StatusCode::NO_CONTENT)
}
