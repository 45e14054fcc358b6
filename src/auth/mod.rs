//! Identity: sign-up and sign-in, access and refresh tokens, sessions, MFA, lockout, email
//! flows and external identity providers. See CONTRACT.md "Auth and users" and
//! docs/identity.md.
//!
//! The rules, each in the file named for it:
//! - a new account is a CUSTOMER with an unverified email (`register.rs`);
//! - wrong credentials answer the same whether or not the email exists, failures lock the
//!   account's password login, and only a completed sign-in clears them (`login.rs`,
//!   `abuse.rs`); with MFA on a password alone is not a session (`mfa/`);
//! - every refresh rotates the token, and a rotated token presented again revokes the whole
//!   session (`refresh.rs`); a revoked session's access tokens stop working at once, on every
//!   instance (`sessions.rs`, `revocation.rs`);
//! - email-link tokens are single use, expire, and exist only with their mail (`email.rs`);
//! - an external identity is linked to an account only when the provider vouches for its
//!   email (`oidc/`);
//! - a route asks for a permission, never a role (`roles.rs`, `extract.rs`).

use std::sync::Arc;

use utoipa_axum::router::OpenApiRouter;

use crate::{
    config::{Config, Environment},
    routes,
    state::AppState,
};

pub mod abuse;
pub mod email;
pub mod entity;
mod error;
pub mod extract;
mod handlers;
pub mod keys;
pub mod login;
pub mod mfa;
pub mod oidc;
pub mod password;
pub mod password_reset;
pub mod refresh;
pub mod register;
pub mod revocation;
pub mod roles;
pub mod secrets;
pub mod sessions;
pub mod tokens;
pub mod types;
pub mod verify_email;

pub use error::{AuthError, PasswordError};
pub use extract::{AuthUser, Authorized, ClientMeta};
pub use roles::{Permission, Role, perm};

/// Every `/auth/*` route.
pub fn router() -> OpenApiRouter<AppState> {
    use handlers::{email, login, mfa, oidc, sessions};
    OpenApiRouter::new()
        .routes(routes!(login::register))
        .routes(routes!(login::login))
        .routes(routes!(login::refresh))
        .routes(routes!(login::logout))
        .routes(routes!(sessions::list_sessions))
        .routes(routes!(sessions::delete_session))
        .routes(routes!(mfa::enroll))
        .routes(routes!(mfa::activate))
        .routes(routes!(mfa::disable))
        .routes(routes!(mfa::verify))
        .routes(routes!(email::forgot))
        .routes(routes!(email::reset))
        .routes(routes!(email::verify_email))
        .routes(routes!(email::resend_verification))
        .routes(routes!(oidc::exchange))
}

/// Served at the root, beside the other service endpoints.
pub fn well_known() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(handlers::jwks::jwks))
}

/// Everything identity keeps in memory.
pub struct AuthState {
    pub keys: keys::Keys,
    pub passwords: password::Passwords,
    pub revocations: Arc<revocation::Revocations>,
    pub verified: tokens::VerifiedTokens,
    pub abuse: abuse::Abuse,
    pub mfa: mfa::SecretBox,
    pub oidc: Option<oidc::Oidc>,
}

impl AuthState {
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let keys = match (&config.auth.jwt_private_key, config.environment) {
            (Some(pem), _) => {
                keys::Keys::from_pem(pem.expose(), config.auth.jwt_previous_key.as_ref().map(|k| k.expose()))?
            }
            (None, Environment::Development) => keys::Keys::load_or_create_dev(&config.data_dir.join("keys"))?,
            (None, Environment::Production) => anyhow::bail!("JWT_PRIVATE_KEY is required in production"),
        };
        Ok(Self {
            keys,
            passwords: password::Passwords::new(),
            revocations: revocation::Revocations::new(config.auth.access_ttl),
            verified: tokens::VerifiedTokens::new(config.auth.access_ttl),
            abuse: abuse::Abuse::new(&config.auth),
            mfa: mfa::SecretBox::from_config(config)?,
            oidc: config.auth.oidc.clone().map(oidc::Oidc::new).transpose()?,
        })
    }
}
