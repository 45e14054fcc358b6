//! Password hashing (argon2id with OWASP's parameters) and the password policy.
//!
//! Hashing is deliberately slow, so it runs on the blocking pool behind a semaphore sized to
//! the CPU count: a burst of logins queues there instead of starving the async runtime.

use std::{collections::HashSet, sync::Arc};

use argon2::{
    Algorithm, Argon2, Params, Version,
    password_hash::{PasswordHasher as _, PasswordVerifier as _},
};
use tokio::sync::Semaphore;

use crate::http::{AppError, error::FieldError};

/// OWASP Password Storage Cheat Sheet: argon2id, m = 19 MiB, t = 2, p = 1.
pub const ARGON2_M_KIB: u32 = 19 * 1024;
pub const ARGON2_T: u32 = 2;
pub const ARGON2_P: u32 = 1;

pub const MIN_LEN: usize = 8;
/// Long enough for any passphrase, short enough that hashing cost stays bounded.
pub const MAX_LEN: usize = 128;

const COMMON_PASSWORDS: &str = include_str!("../../assets/common-passwords.txt");

/// Hashes and verifies passwords off the async threads.
pub struct Passwords {
    permits: Arc<Semaphore>,
    common: HashSet<&'static str>,
}

/// A real argon2id hash, with the parameters above, of a random password nobody knows:
/// verifying against it when an email is unknown makes "no such user" take as long as "wrong
/// password". A constant, so start-up does not pay a 19 MiB hash for it.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$67w5f/qyVb6Hmqztw5WoBg$2A4HlpXbFoZVOeuEcTxAH2kjiFf6nauNxY+1UQzff78";

fn argon2() -> Argon2<'static> {
    let params = Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes synchronously (for benchmarks and seeding; the server uses [`Passwords::hash`]).
pub fn hash_blocking(password: &str) -> Result<String, argon2::password_hash::Error> {
    // A fresh random 16-byte salt from the OS for every hash.
    Ok(argon2().hash_password(password.as_bytes())?.to_string())
}

fn verify_blocking(password: &str, hash: &str) -> bool {
    // Parameters are read from the stored hash, so older hashes keep verifying after a change.
    argon2().verify_password(password.as_bytes(), hash).is_ok()
}

impl Passwords {
    pub fn new() -> Self {
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let common = COMMON_PASSWORDS.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
        Self { permits: Arc::new(Semaphore::new(cpus)), common }
    }

    /// Checks the policy: 400 with `details` naming `field` when the password is too short,
    /// too long, or one of the common passwords that ship in the binary.
    pub fn check_policy(&self, field: &str, password: &str) -> Result<(), AppError> {
        let len = password.chars().count();
        let problem = if len < MIN_LEN {
            Some(format!("must be at least {MIN_LEN} characters"))
        } else if len > MAX_LEN {
            Some(format!("must be at most {MAX_LEN} characters"))
        } else if self.common.contains(password.to_lowercase().as_str()) {
            Some("is too common; choose a less guessable password".to_string())
        } else {
            None
        };
        match problem {
            None => Ok(()),
            Some(message) => Err(AppError::BadRequest {
                message: format!("{field} {message}"),
                details: vec![FieldError::new(field, message)],
            }),
        }
    }

    pub async fn hash(&self, password: &str) -> Result<String, AppError> {
        let _permit = self.permits.acquire().await.map_err(|e| AppError::Internal(e.into()))?;
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || hash_blocking(&password))
            .await
            .map_err(|e| AppError::Internal(e.into()))?
            .map_err(|e| AppError::Internal(anyhow::anyhow!("hashing failed: {e}")))
    }

    /// Verifies `password` against `hash`; with no hash (unknown user, or an account without a
    /// password) it still spends the same time and answers `false`.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool, AppError> {
        let _permit = self.permits.acquire().await.map_err(|e| AppError::Internal(e.into()))?;
        let password = password.to_owned();
        let (hash, real) = match hash {
            Some(h) => (h.to_owned(), true),
            None => (DUMMY_HASH.to_owned(), false),
        };
        let ok = tokio::task::spawn_blocking(move || verify_blocking(&password, &hash))
            .await
            .map_err(|e| AppError::Internal(e.into()))?;
        Ok(ok && real)
    }
}

impl Default for Passwords {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        let p = Passwords::new();
        assert!(p.check_policy("password", "short").is_err());
        assert!(p.check_policy("password", "password123").is_err(), "common");
        assert!(p.check_policy("password", "PASSWORD123").is_err(), "common, any case");
        assert!(p.check_policy("password", &"x".repeat(129)).is_err());
        assert!(p.check_policy("password", "correct horse battery staple").is_ok());
    }

    #[tokio::test]
    async fn hash_and_verify() {
        let p = Passwords::new();
        let h = p.hash("correct horse battery staple").await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(p.verify("correct horse battery staple", Some(&h)).await.unwrap());
        assert!(!p.verify("wrong", Some(&h)).await.unwrap());
        assert!(!p.verify("anything", None).await.unwrap());
    }

    #[test]
    fn the_dummy_hash_has_the_live_parameters() {
        assert!(DUMMY_HASH.starts_with(&format!("$argon2id$v=19$m={ARGON2_M_KIB},t={ARGON2_T},p={ARGON2_P}$")));
        assert!(!verify_blocking("", DUMMY_HASH));
    }
}
