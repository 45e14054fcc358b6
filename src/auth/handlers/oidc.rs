//! `POST /auth/oidc/exchange`: sign-in with an external identity provider's ID token.

use axum::extract::State;

use crate::{
    auth::{
        ClientMeta, oidc,
        types::{AuthOut, ExchangeIn},
    },
    http::{AppError, Json, Valid},
    state::AppState,
    users::UserOut,
};

/// Exchanges an external ID token for Mash tokens, linking or creating the user.
#[utoipa::path(post, path = "/auth/oidc/exchange", tag = "auth", request_body = ExchangeIn,
    responses(
        (status = 200, body = AuthOut), (status = 401, description = "token refused"),
        (status = 409, description = "the email belongs to an account and the provider does not vouch for it"),
        (status = 422, description = "OIDC is not configured"), (status = 503, description = "provider keys unreachable")
    ))]
#[tracing::instrument(skip_all)]
pub(crate) async fn exchange(
    State(state): State<AppState>,
    client: ClientMeta,
    Valid(Json(input)): Valid<Json<ExchangeIn>>,
) -> Result<Json<AuthOut>, AppError> {
    let (u, tokens) = oidc::exchange(&state, &input, &client).await?;
    Ok(Json(AuthOut { user: UserOut::from(&u), tokens }))
}
