//! Random tokens and their stored form. Tokens handed to clients (refresh, MFA, email links,
//! backup codes) are 256-bit random values; only their SHA-256 is stored, so a database leak
//! does not leak usable tokens. Lookup is by the hash's unique index (no scan).

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// 32 random bytes, URL-safe base64 (43 characters).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Hex SHA-256 of a token, as stored and looked up.
pub fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A backup code a person can type: 10 characters from an unambiguous alphabet, as `xxxxx-xxxxx`.
pub fn backup_code() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut rng = rand::rng();
    let chars: String = (0..10).map(|_| ALPHABET[(rng.next_u32() as usize) % ALPHABET.len()] as char).collect();
    format!("{}-{}", &chars[..5], &chars[5..])
}

/// Backup codes are compared without their dash and case-insensitively.
pub fn normalize_backup_code(code: &str) -> String {
    code.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(token_hash(&a).len(), 64);
        assert_eq!(token_hash(&a), token_hash(&a));
        assert_ne!(token_hash(&a), token_hash(&b));
    }

    #[test]
    fn backup_codes_normalize() {
        let code = backup_code();
        assert_eq!(code.len(), 11);
        assert_eq!(normalize_backup_code(&code.to_uppercase()), normalize_backup_code(&code));
        assert_eq!(normalize_backup_code(&code).len(), 10);
    }
}
