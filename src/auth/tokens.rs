//! Access tokens: short-lived EdDSA JWTs carrying `sub`, `sid`, `role`, `exp`, `iat`, `jti`
//! and a `kid` header. Verifying one costs no database round trip; revocation is checked
//! against the in-memory revocation set (see `revocation.rs`).

use std::time::Duration;

use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{keys::Keys, roles::Role};

pub const ISSUER: &str = "mash";

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
pub fn issue(keys: &Keys, user_id: Uuid, session_id: Uuid, role: Role, ttl: Duration) -> anyhow::Result<String> {
    let now = chrono::Utc::now().timestamp();
    let claims = AccessClaims {
        sub: user_id,
        sid: session_id,
        role,
        iat: now,
        exp: now + ttl.as_secs() as i64,
        jti: Uuid::now_v7(),
        iss: ISSUER.to_string(),
    };
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(keys.kid().to_string());
    Ok(jsonwebtoken::encode(&header, &claims, keys.encoding())?)
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
    validation.leeway = 5;
    jsonwebtoken::decode::<AccessClaims>(token, key, &validation).map(|d| d.claims).map_err(|e| match e.kind() {
        jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
        _ => TokenError::Invalid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::load_or_create_dev(dir.path()).unwrap();
        let (user, sid) = (Uuid::now_v7(), Uuid::now_v7());
        let token = issue(&keys, user, sid, Role::Grower, Duration::from_secs(60)).unwrap();
        let claims = verify(&keys, &token).unwrap();
        assert_eq!((claims.sub, claims.sid, claims.role), (user, sid, Role::Grower));
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some(keys.kid()));

        // Tampered payload.
        let mut parts: Vec<&str> = token.split('.').collect();
        let other = issue(&keys, Uuid::now_v7(), sid, Role::Admin, Duration::from_secs(60)).unwrap();
        let other_payload = other.split('.').nth(1).unwrap().to_string();
        parts[1] = &other_payload;
        assert_eq!(verify(&keys, &parts.join(".")), Err(TokenError::Invalid));

        // Another key ring does not know this kid.
        let dir2 = tempfile::tempdir().unwrap();
        let stranger = Keys::load_or_create_dev(dir2.path()).unwrap();
        assert_eq!(verify(&stranger, &token), Err(TokenError::UnknownKey));
    }
}
