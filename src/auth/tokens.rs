//! Access tokens: short-lived EdDSA JWTs carrying `sub`, `sid`, `role`, `exp`, `iat`, `jti`
//! and a `kid` header. Verifying one costs no database round trip; revocation is checked
//! against the in-memory revocation set (see `revocation.rs`).

use std::time::Duration;

use jsonwebtoken::{Algorithm, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{keys::Keys, roles::Role};
use crate::ids::UserId;

pub const ISSUER: &str = "mash";
/// Clock skew tolerated on `exp`.
const LEEWAY_SECS: u64 = 5;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub sub: Uuid,
    pub sid: Uuid,
    pub role: Role,
    pub iat: i64,
    pub exp: i64,
    pub jti: Uuid,
    pub iss: String,
}

/// Signs an access token for a session.
pub fn issue(keys: &Keys, user_id: UserId, session_id: Uuid, role: Role, ttl: Duration) -> anyhow::Result<String> {
    let now = chrono::Utc::now().timestamp();
    let claims = AccessClaims {
        sub: user_id.into(),
        sid: session_id,
        role,
        iat: now,
        exp: now + ttl.as_secs() as i64,
        jti: Uuid::now_v7(),
        iss: ISSUER.to_string(),
    };
    keys.sign(&claims)
}

/// Why a token was refused. Every variant is a 401 for the client; the distinction is for logs.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("access token expired")]
    Expired,
    #[error("access token signed by an unknown key")]
    UnknownKey,
    #[error("invalid access token")]
    Invalid,
}

/// Checks signature (with the key named by `kid`), algorithm, issuer and expiry.
pub fn verify(keys: &Keys, token: &str) -> Result<AccessClaims, TokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
    if header.alg != Algorithm::EdDSA {
        return Err(TokenError::Invalid);
    }
    let kid = header.kid.ok_or(TokenError::Invalid)?;
    let key = keys.decoding(&kid).ok_or(TokenError::UnknownKey)?;
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&[ISSUER]);
    validation.set_required_spec_claims(&["exp", "iat", "sub", "iss"]);
    validation.leeway = LEEWAY_SECS;
    jsonwebtoken::decode::<AccessClaims>(token, key, &validation).map(|d| d.claims).map_err(|e| match e.kind() {
        jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
        _ => TokenError::Invalid,
    })
}

/// Remembers tokens that verified, so a client reusing its access token (the common case: one
/// token for up to 15 minutes of requests) costs a hash lookup instead of a signature check.
/// Keyed by the SHA-256 of the *whole* token, so a token differing in any byte is verified
/// afresh; expiry is still checked on every use, and revocation is checked by the caller.
pub struct VerifiedTokens {
    cache: moka::sync::Cache<[u8; 32], AccessClaims>,
}

impl VerifiedTokens {
    pub fn new(access_ttl: Duration) -> Self {
        Self { cache: moka::sync::Cache::builder().max_capacity(200_000).time_to_live(access_ttl).build() }
    }

    pub fn verify(&self, keys: &Keys, token: &str) -> Result<AccessClaims, TokenError> {
        use sha2::{Digest, Sha256};
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(claims) = self.cache.get(&key) {
            if chrono::Utc::now().timestamp() > claims.exp + LEEWAY_SECS as i64 {
                self.cache.invalidate(&key);
                return Err(TokenError::Expired);
            }
            return Ok(claims);
        }
        let claims = verify(keys, token)?;
        self.cache.insert(key, claims.clone());
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::load_or_create_dev(dir.path()).unwrap();
        let (user, sid) = (UserId(Uuid::now_v7()), Uuid::now_v7());
        let token = issue(&keys, user, sid, Role::Grower, Duration::from_secs(60)).unwrap();
        let claims = verify(&keys, &token).unwrap();
        assert_eq!((claims.sub, claims.sid, claims.role), (Uuid::from(user), sid, Role::Grower));
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some(keys.kid()));

        // Tampered payload.
        let mut parts: Vec<&str> = token.split('.').collect();
        let other = issue(&keys, UserId(Uuid::now_v7()), sid, Role::Admin, Duration::from_secs(60)).unwrap();
        let other_payload = other.split('.').nth(1).unwrap().to_string();
        parts[1] = &other_payload;
        assert_eq!(verify(&keys, &parts.join(".")), Err(TokenError::Invalid));

        // Another key ring does not know this kid.
        let dir2 = tempfile::tempdir().unwrap();
        let stranger = Keys::load_or_create_dev(dir2.path()).unwrap();
        assert_eq!(verify(&stranger, &token), Err(TokenError::UnknownKey));
    }

    #[test]
    fn tokens_are_what_jsonwebtoken_itself_signs() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::load_or_create_dev(dir.path()).unwrap();
        let claims = AccessClaims {
            sub: Uuid::now_v7(),
            sid: Uuid::now_v7(),
            role: Role::Customer,
            iat: 1_700_000_000,
            exp: 1_700_000_900,
            jti: Uuid::now_v7(),
            iss: ISSUER.into(),
        };
        let pem = std::fs::read(dir.path().join("jwt-ed25519.pem")).unwrap();
        let mut header = jsonwebtoken::Header::new(Algorithm::EdDSA);
        header.kid = Some(keys.kid().to_string());
        // Ed25519 signatures are deterministic: the same key and message give the same token.
        let theirs =
            jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_ed_pem(&pem).unwrap()).unwrap();
        assert_eq!(keys.sign(&claims).unwrap(), theirs);
    }

    #[test]
    fn the_cache_never_accepts_what_verify_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::load_or_create_dev(dir.path()).unwrap();
        let cache = VerifiedTokens::new(Duration::from_secs(60));
        let token =
            issue(&keys, UserId(Uuid::now_v7()), Uuid::now_v7(), Role::Customer, Duration::from_secs(60)).unwrap();
        let first = cache.verify(&keys, &token).unwrap();
        assert_eq!(cache.verify(&keys, &token).unwrap(), first, "served from the cache");
        // Same signature, different payload: a different cache key, so it is verified and refused.
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let admin = issue(&keys, first.sub.into(), first.sid, Role::Admin, Duration::from_secs(60)).unwrap();
        parts[1] = admin.split('.').nth(1).unwrap().to_owned();
        assert_eq!(cache.verify(&keys, &parts.join(".")), Err(TokenError::Invalid));
        // An expired token that was cached once is refused.
        let short = issue(&keys, UserId(Uuid::now_v7()), Uuid::now_v7(), Role::Customer, Duration::ZERO).unwrap();
        let claims = verify(&keys, &short).unwrap();
        let key: [u8; 32] =
            sha2::Digest::finalize(sha2::Digest::chain_update(sha2::Sha256::default(), short.as_bytes())).into();
        cache.cache.insert(key, AccessClaims { exp: claims.exp - 3600, ..claims });
        assert_eq!(cache.verify(&keys, &short), Err(TokenError::Expired));
    }
}
