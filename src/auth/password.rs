//! Password hashing (argon2id with OWASP's parameters) and the password policy.
//!
//! Hashing is deliberately slow, so it runs on the blocking pool behind a semaphore sized to
//! the CPU count: a burst of logins queues there instead of starving the async runtime.

use std::{collections::HashSet, sync::Arc};

use argon2::{
    Algorithm, Argon2, Block, Params, Version,
    password_hash::phc::{Output, ParamsString, PasswordHash, Salt},
};
use rand::RngCore;
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
    /// One working memory per permit, reused from hash to hash.
    memories: Arc<std::sync::Mutex<Vec<Memory>>>,
    common: HashSet<&'static str>,
}

/// A real argon2id hash, with the parameters above, of a random password nobody knows:
/// verifying against it when an email is unknown makes "no such user" take as long as "wrong
/// password". A constant, so start-up does not pay a 19 MiB hash for it.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$67w5f/qyVb6Hmqztw5WoBg$2A4HlpXbFoZVOeuEcTxAH2kjiFf6nauNxY+1UQzff78";

fn params() -> Params {
    Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, None).expect("valid argon2 parameters")
}

/// Working memory for one hash (19 MiB at the parameters above). The server keeps one per
/// hashing slot and reuses it: a fresh 19 MiB per login would be mapped, faulted in and given
/// back every time, and the allocator's per-thread arenas would hold on to hundreds of MiB
/// under a burst of logins.
pub type Memory = Vec<Block>;

fn new_memory(params: &Params) -> Memory {
    vec![Block::default(); params.block_count()]
}

/// Hashes into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`), using `memory`.
fn hash_with(password: &str, memory: &mut Memory) -> anyhow::Result<String> {
    let params = params();
    if memory.len() != params.block_count() {
        *memory = new_memory(&params);
    }
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let mut out = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, memory.as_mut_slice())
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| anyhow::anyhow!("argon2 params: {e}"))?,
        salt: Some(Salt::new(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?),
        hash: Some(Output::new(&out).map_err(|e| anyhow::anyhow!("output: {e}"))?),
    };
    Ok(phc.to_string())
}

/// Verifies against a PHC string with the parameters it names (so older hashes keep working
/// after a parameter change), using `memory` when it is the right size.
fn verify_with(password: &str, hash: &str, memory: &mut Memory) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else { return false };
    let (Ok(algorithm), Ok(params)) = (Algorithm::try_from(parsed.algorithm.as_str()), Params::try_from(&parsed))
    else {
        return false;
    };
    let version = parsed.version.and_then(|v| Version::try_from(v).ok()).unwrap_or_default();
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else { return false };
    if memory.len() != params.block_count() {
        *memory = new_memory(&params);
    }
    let mut out = vec![0u8; expected.as_bytes().len()];
    if Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, memory.as_mut_slice())
        .is_err()
    {
        return false;
    }
    crate::util::constant_time_eq(&out, expected.as_bytes())
}

/// Hashes synchronously (for benchmarks and seeding; the server uses [`Passwords::hash`]).
pub fn hash_blocking(password: &str) -> anyhow::Result<String> {
    hash_with(password, &mut new_memory(&params()))
}

/// Verifies synchronously (benchmarks); the server uses [`Passwords::verify`].
pub fn verify_blocking(password: &str, hash: &str) -> bool {
    verify_with(password, hash, &mut new_memory(&params()))
}

impl Passwords {
    pub fn new() -> Self {
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let common = COMMON_PASSWORDS.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
        Self { permits: Arc::new(Semaphore::new(cpus)), memories: Arc::default(), common }
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

    /// Runs `work` on the blocking pool with a hashing permit and a reused working memory.
    async fn with_memory<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Memory) -> T + Send + 'static,
    ) -> Result<T, AppError> {
        let _permit = self.permits.acquire().await.map_err(|e| AppError::Internal(e.into()))?;
        let memories = self.memories.clone();
        tokio::task::spawn_blocking(move || {
            let mut memory = memories.lock().map(|mut m| m.pop()).ok().flatten().unwrap_or_default();
            let result = work(&mut memory);
            if let Ok(mut pool) = memories.lock() {
                pool.push(memory);
            }
            result
        })
        .await
        .map_err(|e| AppError::Internal(e.into()))
    }

    pub async fn hash(&self, password: &str) -> Result<String, AppError> {
        let password = password.to_owned();
        self.with_memory(move |memory| hash_with(&password, memory)).await?.map_err(AppError::Internal)
    }

    /// Verifies `password` against `hash`; with no hash (unknown user, or an account without a
    /// password) it still spends the same time and answers `false`.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool, AppError> {
        let password = password.to_owned();
        let (hash, real) = match hash {
            Some(h) => (h.to_owned(), true),
            None => (DUMMY_HASH.to_owned(), false),
        };
        let ok = self.with_memory(move |memory| verify_with(&password, &hash, memory)).await?;
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
    fn hashes_interoperate_with_the_reference_encoder() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        // Ours verifies with argon2's own verifier, and argon2's own hash verifies with ours.
        let ours = hash_blocking("interop passphrase").unwrap();
        let reference = Argon2::new(Algorithm::Argon2id, Version::V0x13, params());
        assert!(reference.verify_password(b"interop passphrase", ours.as_str()).is_ok());
        let theirs = reference.hash_password(b"interop passphrase").unwrap().to_string();
        assert!(verify_blocking("interop passphrase", &theirs));
        assert!(!verify_blocking("wrong", &theirs));
        // A hash with other parameters still verifies (the memory is resized for it).
        let older = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(8 * 1024, 1, 1, None).unwrap())
            .hash_password(b"interop passphrase")
            .unwrap()
            .to_string();
        let mut memory = new_memory(&params());
        assert!(verify_with("interop passphrase", &older, &mut memory));
        assert!(verify_with("interop passphrase", &ours, &mut memory));
        assert!(!verify_with("x", "not a phc string", &mut memory));
    }

    #[test]
    fn the_dummy_hash_has_the_live_parameters() {
        assert!(DUMMY_HASH.starts_with(&format!("$argon2id$v=19$m={ARGON2_M_KIB},t={ARGON2_T},p={ARGON2_P}$")));
        assert!(!verify_blocking("", DUMMY_HASH));
    }
}
