//! TOTP secrets at rest: AES-256-GCM under `MFA_ENCRYPTION_KEY`, with the user id as
//! associated data, so a sealed secret copied onto another user's row does not open.

use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{Aead, Payload},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use rand::RngCore;
use uuid::Uuid;

use crate::config::{Config, Environment};

/// Encrypts and decrypts TOTP secrets.
pub struct SecretBox(Aes256Gcm);

impl SecretBox {
    /// From `MFA_ENCRYPTION_KEY` (32 bytes, base64); in development a key is created once in
    /// the data directory.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let key_b64 = match (&config.auth.mfa_encryption_key, config.environment) {
            (Some(k), _) => k.expose().trim().to_string(),
            (None, Environment::Production) => anyhow::bail!("MFA_ENCRYPTION_KEY is required in production"),
            (None, Environment::Development) => {
                let dir = config.data_dir.join("keys");
                std::fs::create_dir_all(&dir)?;
                let path = dir.join("mfa.key");
                let (key, _) = crate::util::read_or_create_private(&path, || {
                    let mut key = [0u8; 32];
                    rand::rng().fill_bytes(&mut key);
                    Ok(STANDARD.encode(key))
                })?;
                key.trim().to_string()
            }
        };
        let bytes = STANDARD
            .decode(&key_b64)
            .map_err(|_| anyhow::anyhow!("invalid configuration: MFA_ENCRYPTION_KEY: not base64"))?;
        let cipher = Aes256Gcm::new_from_slice(&bytes)
            .map_err(|_| anyhow::anyhow!("invalid configuration: MFA_ENCRYPTION_KEY: must decode to 32 bytes"))?;
        Ok(Self(cipher))
    }

    pub(crate) fn seal(&self, user_id: Uuid, plain: &[u8]) -> anyhow::Result<String> {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .0
            .encrypt(&Nonce::from(nonce), Payload { msg: plain, aad: user_id.as_bytes() })
            .map_err(|_| anyhow::anyhow!("encrypting an MFA secret failed"))?;
        Ok(STANDARD.encode([nonce.as_slice(), &sealed].concat()))
    }

    pub(crate) fn open(&self, user_id: Uuid, sealed: &str) -> anyhow::Result<Vec<u8>> {
        let raw = STANDARD.decode(sealed)?;
        if raw.len() < 12 {
            anyhow::bail!("sealed MFA secret too short");
        }
        let (nonce, body) = raw.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| anyhow::anyhow!("bad nonce"))?;
        self.0
            .decrypt(&Nonce::from(nonce), Payload { msg: body, aad: user_id.as_bytes() })
            .map_err(|_| anyhow::anyhow!("an MFA secret could not be decrypted (wrong key?)"))
    }
}
