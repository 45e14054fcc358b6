//! The provider's side: its keys (JWKS), cached and refetched when a token names a key we do
//! not have, and the checks an ID token must pass. Asymmetric algorithms only.

use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use serde::Deserialize;
use tokio::sync::RwLock;

use crate::{auth::AuthError, config::OidcConfig};

const JWKS_TTL: Duration = Duration::from_secs(600);
/// An unknown `kid` refetches the JWKS (keys rotate), but not more often than this.
const MIN_REFETCH: Duration = Duration::from_secs(30);

/// The provider's keys, cached.
pub struct Oidc {
    cfg: OidcConfig,
    http: reqwest::Client,
    cache: RwLock<Option<(Instant, JwkSet)>>,
}

/// What we read from a verified ID token.
#[derive(Debug, Deserialize)]
pub(super) struct IdClaims {
    pub(super) sub: String,
    pub(super) email: Option<String>,
    #[serde(default)]
    pub(super) email_verified: bool,
    pub(super) name: Option<String>,
}

impl Oidc {
    pub fn new(cfg: OidcConfig) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).user_agent("mash").build()?;
        Ok(Self { cfg, http, cache: RwLock::new(None) })
    }

    /// The configured issuer, which identities are scoped by.
    pub fn issuer(&self) -> &str {
        &self.cfg.issuer
    }

    async fn fetch(&self) -> Result<JwkSet, AuthError> {
        let res = self.http.get(&self.cfg.jwks_url).send().await.map_err(|e| {
            tracing::warn!(error = %e, "fetching the OIDC JWKS failed");
            AuthError::ProviderKeysUnreachable
        })?;
        if !res.status().is_success() {
            tracing::warn!(status = res.status().as_u16(), "the OIDC JWKS endpoint answered an error");
            return Err(AuthError::ProviderKeysUnreachable);
        }
        res.json::<JwkSet>().await.map_err(|e| {
            tracing::warn!(error = %e, "the OIDC JWKS is not a JWK set");
            AuthError::ProviderKeysUnreadable
        })
    }

    /// The key for `kid`: from the cache, or refetched when the cache is old or lacks it.
    async fn key(&self, kid: &str) -> Result<jsonwebtoken::jwk::Jwk, AuthError> {
        {
            let cache = self.cache.read().await;
            if let Some((at, set)) = cache.as_ref() {
                if let Some(k) = set.find(kid).filter(|_| at.elapsed() < JWKS_TTL) {
                    return Ok(k.clone());
                }
                if at.elapsed() < MIN_REFETCH {
                    return Err(AuthError::IdTokenUnknownKey);
                }
            }
        }
        let set = self.fetch().await?;
        let found = set.find(kid).cloned();
        *self.cache.write().await = Some((Instant::now(), set));
        found.ok_or(AuthError::IdTokenUnknownKey)
    }

    /// The claims of `id_token` once its signature, issuer, audience and expiry check out.
    pub(super) async fn verify(&self, id_token: &str) -> Result<IdClaims, AuthError> {
        let header = jsonwebtoken::decode_header(id_token).map_err(|_| AuthError::InvalidIdToken)?;
        // Asymmetric algorithms only: never `none`, never a shared-secret HMAC.
        if !matches!(
            header.alg,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::ES256
                | Algorithm::ES384
                | Algorithm::EdDSA
        ) {
            return Err(AuthError::InvalidIdToken);
        }
        let kid = header.kid.ok_or(AuthError::InvalidIdToken)?;
        let jwk = self.key(&kid).await?;
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| AuthError::InvalidIdToken)?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.cfg.issuer]);
        validation.set_audience(&[&self.cfg.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 60;
        jsonwebtoken::decode::<IdClaims>(id_token, &key, &validation).map(|d| d.claims).map_err(|e| {
            tracing::debug!(error = %e, "ID token refused");
            match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::IdTokenExpired,
                _ => AuthError::InvalidIdToken,
            }
        })
    }
}
