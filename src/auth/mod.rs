//! Identity: sign-up and sign-in, access and refresh tokens, sessions, MFA, lockout, email
//! flows and external identity providers. See CONTRACT.md "Auth and users".

use std::sync::Arc;

use crate::config::{Config, Environment};

pub mod abuse;
pub mod email;
pub mod entity;
pub mod extract;
mod handlers;
pub mod keys;
pub mod mfa;
pub mod oidc;
pub mod password;
pub mod revocation;
pub mod roles;
pub mod secrets;
pub mod sessions;
pub mod tokens;

pub use extract::{AuthUser, Authorized, ClientMeta};
pub use handlers::{router, well_known};
pub use roles::{Permission, Role, perm};

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
