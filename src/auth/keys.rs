//! Signing keys for access tokens (EdDSA / Ed25519) and the JWKS that publishes them.
//!
//! The current key signs; the current and the previous key both verify, so a key can rotate
//! without signing anyone out: configure the new key as current and the old one's public key
//! as previous for one access-token lifetime. In development the key is created once and kept
//! in the data directory; in production it must come from configuration.

use std::{collections::HashMap, path::Path};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::{
    Signer, SigningKey, VerifyingKey,
    pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, spki::der::pem::LineEnding},
};
use jsonwebtoken::DecodingKey;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// One public key in JWK form (RFC 8037, OKP / Ed25519).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Jwk {
    pub kty: &'static str,
    pub crv: &'static str,
    pub x: String,
    pub kid: String,
    #[serde(rename = "use")]
    pub use_: &'static str,
    pub alg: &'static str,
}

/// `{"keys": [...]}` as served at `/.well-known/jwks.json`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

struct VerifyKey {
    decoding: DecodingKey,
}

/// The key ring: one signing key, one or two verifying keys.
pub struct Keys {
    kid: String,
    /// Kept parsed: a token costs one signature (the generic encoder parses the PKCS#8 key and
    /// derives its public half again for every token).
    signing: SigningKey,
    /// `{"typ":"JWT","alg":"EdDSA","kid":…}`, base64url-encoded once.
    header: String,
    verifying: HashMap<String, VerifyKey>,
    jwks: JwkSet,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").field("kid", &self.kid).field("verifying", &self.verifying.keys()).finish()
    }
}

/// RFC 7638 thumbprint of an Ed25519 public key, used as `kid`.
fn thumbprint(x: &str) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

fn jwk_for(public: &VerifyingKey) -> Jwk {
    let x = URL_SAFE_NO_PAD.encode(public.as_bytes());
    Jwk { kty: "OKP", crv: "Ed25519", kid: thumbprint(&x), x, use_: "sig", alg: "EdDSA" }
}

impl Keys {
    /// Builds the ring from a PKCS#8 PEM private key and, optionally, the previous key's
    /// public PEM (SPKI) or private PEM.
    pub fn from_pem(current_private: &str, previous: Option<&str>) -> anyhow::Result<Self> {
        let signing = SigningKey::from_pkcs8_pem(current_private)
            .map_err(|e| anyhow::anyhow!("JWT_PRIVATE_KEY is not an Ed25519 PKCS#8 PEM key: {e}"))?;
        let previous = match previous {
            None => None,
            Some(pem) => Some(
                VerifyingKey::from_public_key_pem(pem)
                    .or_else(|_| SigningKey::from_pkcs8_pem(pem).map(|k| k.verifying_key()))
                    .map_err(|e| anyhow::anyhow!("JWT_PREVIOUS_KEY is not an Ed25519 PEM key: {e}"))?,
            ),
        };
        Self::new(&signing, previous.as_ref())
    }

    fn new(signing: &SigningKey, previous: Option<&VerifyingKey>) -> anyhow::Result<Self> {
        let mut verifying = HashMap::new();
        let mut jwks = Vec::new();
        let current_jwk = jwk_for(&signing.verifying_key());
        let kid = current_jwk.kid.clone();
        for public in std::iter::once(signing.verifying_key()).chain(previous.copied()) {
            let jwk = jwk_for(&public);
            let decoding = DecodingKey::from_ed_components(&jwk.x)?;
            if verifying.insert(jwk.kid.clone(), VerifyKey { decoding }).is_none() {
                jwks.push(jwk);
            }
        }
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(kid.clone());
        let header = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?);
        Ok(Self { kid, signing: signing.clone(), header, verifying, jwks: JwkSet { keys: jwks } })
    }

    /// Development keys: read from `dir/jwt-ed25519.pem`, created (mode 0600) when missing.
    /// A `jwt-ed25519.previous.pem` beside it, when present, keeps verifying.
    pub fn load_or_create_dev(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
        let path = dir.join("jwt-ed25519.pem");
        let (pem, created) = crate::util::read_or_create_private(&path, || {
            let mut seed = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut seed);
            let key = SigningKey::from_bytes(&seed);
            Ok(key.to_pkcs8_pem(LineEnding::LF).map_err(|e| anyhow::anyhow!("encoding key: {e}"))?.to_string())
        })?;
        if created {
            tracing::info!(path = %path.display(), "created a development signing key for access tokens");
        }
        let previous = std::fs::read_to_string(dir.join("jwt-ed25519.previous.pem")).ok();
        Self::from_pem(&pem, previous.as_deref())
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// A compact JWS (EdDSA, this key's `kid`) of `claims`.
    pub fn sign<T: Serialize>(&self, claims: &T) -> anyhow::Result<String> {
        let mut token = format!("{}.{}", self.header, URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?));
        let signature = self.signing.sign(token.as_bytes());
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature.to_bytes()));
        Ok(token)
    }

    /// The verifying key with this `kid`, if it is one of ours.
    pub fn decoding(&self, kid: &str) -> Option<&DecodingKey> {
        self.verifying.get(kid).map(|k| &k.decoding)
    }

    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_keys_persist_and_previous_key_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let a = Keys::load_or_create_dev(dir.path()).unwrap();
        let b = Keys::load_or_create_dev(dir.path()).unwrap();
        assert_eq!(a.kid(), b.kid(), "the key is created once and reused");
        assert_eq!(a.jwks().keys.len(), 1);

        std::fs::rename(dir.path().join("jwt-ed25519.pem"), dir.path().join("jwt-ed25519.previous.pem")).unwrap();
        let c = Keys::load_or_create_dev(dir.path()).unwrap();
        assert_ne!(c.kid(), a.kid());
        assert_eq!(c.jwks().keys.len(), 2);
        assert!(c.decoding(a.kid()).is_some(), "the previous key still verifies");
    }

    #[test]
    fn bad_pem_is_a_clear_error() {
        let err = Keys::from_pem("not a key", None).unwrap_err().to_string();
        assert!(err.contains("JWT_PRIVATE_KEY"), "{err}");
    }
}
