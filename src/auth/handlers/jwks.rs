//! `GET /.well-known/jwks.json`, served at the root beside the other service endpoints.

use axum::extract::State;

use crate::{auth::keys::JwkSet, http::Json, state::AppState};

/// Public keys that verify access tokens (current and previous).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth", responses((status = 200, body = JwkSet)))]
pub(crate) async fn jwks(State(state): State<AppState>) -> Json<JwkSet> {
    Json(state.auth.keys.jwks().clone())
}
