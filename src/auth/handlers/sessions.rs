//! The caller's sessions: `GET /auth/sessions`, `DELETE /auth/sessions/{id}`.

use axum::{extract::State, http::StatusCode};
use uuid::Uuid;

use crate::{
    auth::{
        AuthUser, ClientMeta, sessions,
        types::{SessionOut, SessionsOut},
    },
    http::{AppError, Json, Path},
    state::AppState,
};

/// The caller's live sessions, newest first.
#[utoipa::path(get, path = "/auth/sessions", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = SessionsOut), (status = 401)))]
#[tracing::instrument(skip_all)]
pub(crate) async fn list_sessions(State(state): State<AppState>, me: AuthUser) -> Result<Json<SessionsOut>, AppError> {
    let data: Vec<SessionOut> = sessions::list(&state, &me).await?;
    Ok(Json(SessionsOut { data }))
}

/// Ends one of the caller's sessions (another device, or this one).
#[utoipa::path(delete, path = "/auth/sessions/{id}", tag = "auth", security(("bearer" = [])),
    params(("id" = Uuid, Path)), responses((status = 204), (status = 401), (status = 404)))]
#[tracing::instrument(skip_all, fields(session_id = %id))]
pub(crate) async fn delete_session(
    State(state): State<AppState>,
    me: AuthUser,
    client: ClientMeta,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, AppError> {
    sessions::delete(&state, &me, id, &client).await?;
    Ok(StatusCode::NO_CONTENT)
}
