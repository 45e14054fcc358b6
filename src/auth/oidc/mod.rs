//! Sign-in with an external OpenID Connect identity (Firebase Auth, Google, any OIDC
//! provider): the client presents the provider's ID token, we verify it against the provider's
//! JWKS (signature, `iss`, `aud`, `exp`; `provider.rs`) and answer with our own tokens.
//!
//! The user is found by `(issuer, sub)` (`external_uid`, as seed 000 keeps `firebaseUid`). A new
//! identity is linked to an existing account only when the provider vouches for the email
//! (`email_verified`), otherwise a takeover would be one unverified email away (`link.rs`).

mod link;
mod provider;

pub use provider::Oidc;

use super::{
    AuthError, ClientMeta, sessions,
    types::{ExchangeIn, TokenPair},
};
use crate::{state::AppState, users::entity::user};

/// Exchanges an external ID token for a session, linking or creating the user.
pub async fn exchange(
    state: &AppState,
    input: &ExchangeIn,
    client: &ClientMeta,
) -> Result<(user::Model, TokenPair), AuthError> {
    state.auth.abuse.check_client(state.redis.as_ref(), client).await?;
    let Some(oidc) = state.auth.oidc.as_ref() else {
        return Err(AuthError::OidcNotConfigured);
    };
    let claims = oidc.verify(&input.id_token).await?;
    let u = link::link_or_create(state, oidc.issuer(), &claims, client).await?;
    if !sessions::is_active(&u) {
        return Err(AuthError::AccountDisabled);
    }
    let tokens = sessions::start(state, &u, &input.device(), client, "oidc").await?;
    Ok((u, tokens))
}
