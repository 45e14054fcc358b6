//! `/push-tokens`: the caller's push targets (FCM registration tokens). A token belongs to one
//! user: registering a token another account had (a shared phone, a new sign-in) moves it.

use axum::{extract::State, http::StatusCode};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, sea_query::OnConflict};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;

use crate::routes;
use uuid::Uuid;

use super::entity::{Platform, push_token};
use crate::{
    auth::AuthUser,
    http::{AppError, Json, Path},
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(register, list)).routes(routes!(unregister))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushTokenIn {
    /// The FCM registration token of the app install.
    pub token: String,
    pub platform: Platform,
}

/// A registered push target. The token itself is not echoed back.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushTokenOut {
    pub id: Uuid,
    #[schema(value_type = String)]
    pub platform: Platform,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<&push_token::Model> for PushTokenOut {
    fn from(t: &push_token::Model) -> Self {
        Self { id: t.id, platform: t.platform, created_at: t.created_at, updated_at: t.updated_at }
    }
}

/// Registers a push target for the caller: 201 when new, 200 when the token was already
/// registered (it is now the caller's, with this platform).
#[utoipa::path(post, path = "/push-tokens", tag = "alerts", security(("bearer" = [])), request_body = PushTokenIn,
    responses((status = 201, body = PushTokenOut), (status = 200, body = PushTokenOut), (status = 400), (status = 401)))]
#[tracing::instrument(skip_all)]
async fn register(
    State(state): State<AppState>,
    user: AuthUser,
    Json(input): Json<PushTokenIn>,
) -> Result<(StatusCode, Json<PushTokenOut>), AppError> {
    let token = input.token.trim();
    if token.is_empty() || token.len() > 4096 || token.chars().any(char::is_control) {
        return Err(AppError::invalid_field("token", "must be 1 to 4096 printable characters"));
    }
    let now = state.clock.now();
    let txn = state.db.begin_write().await?;
    let existing = push_token::Entity::find().filter(push_token::Column::Token.eq(token)).one(&txn).await?;
    push_token::Entity::insert(push_token::ActiveModel {
        id: Set(existing.as_ref().map_or_else(Uuid::now_v7, |t| t.id)),
        user_id: Set(user.user_id),
        token: Set(token.to_string()),
        platform: Set(input.platform),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(push_token::Column::Token)
            .update_columns([push_token::Column::UserId, push_token::Column::Platform, push_token::Column::UpdatedAt])
            .to_owned(),
    )
    .exec_without_returning(&txn)
    .await?;
    let row = push_token::Entity::find()
        .filter(push_token::Column::Token.eq(token))
        .one(&txn)
        .await?
        .ok_or_else(|| anyhow::anyhow!("push token vanished"))?;
    txn.commit().await?;
    let status = if existing.is_some() { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(PushTokenOut::from(&row))))
}

/// The caller's push targets.
#[utoipa::path(get, path = "/push-tokens", tag = "alerts", security(("bearer" = [])),
    responses((status = 200, body = Vec<PushTokenOut>), (status = 401)))]
#[tracing::instrument(skip_all)]
async fn list(State(state): State<AppState>, user: AuthUser) -> Result<Json<Vec<PushTokenOut>>, AppError> {
    let rows = push_token::Entity::find()
        .filter(push_token::Column::UserId.eq(user.user_id))
        .order_by_asc(push_token::Column::CreatedAt)
        .all(&state.db)
        .await?;
    Ok(Json(rows.iter().map(PushTokenOut::from).collect()))
}

/// Removes one of the caller's push targets (sign-out on that device). 404 for another user's.
#[utoipa::path(delete, path = "/push-tokens/{id}", tag = "alerts", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 401), (status = 404)))]
#[tracing::instrument(skip_all, fields(push_token_id = %id))]
async fn unregister(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, AppError> {
    let gone = push_token::Entity::delete_many()
        .filter(push_token::Column::Id.eq(id))
        .filter(push_token::Column::UserId.eq(user.user_id))
        .exec(&state.db)
        .await?
        .rows_affected;
    if gone == 0 {
        return Err(AppError::NotFound("push token not found".into()));
    }
    Ok(StatusCode::NO_CONTENT)
}
