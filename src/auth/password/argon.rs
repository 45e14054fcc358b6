//! argon2id as the server runs it: OWASP's parameters, PHC strings that name their parameters
//! (so older hashes keep verifying after a change), and a caller-supplied working memory.

use argon2::{
    Algorithm, Argon2, Params, Version,
    password_hash::phc::{Output, ParamsString, PasswordHash, Salt},
};
use rand::RngCore;

use super::{ARGON2_M_KIB, ARGON2_P, ARGON2_T, memory::Memory};

/// A real argon2id hash, with the server's parameters, of a random password nobody knows:
/// verifying against it when an email is unknown makes "no such user" take as long as "wrong
/// password". A constant, so start-up does not pay a 19 MiB hash for it.
pub(super) const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$67w5f/qyVb6Hmqztw5WoBg$2A4HlpXbFoZVOeuEcTxAH2kjiFf6nauNxY+1UQzff78";

pub(super) fn params() -> Params {
    Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, None).expect("valid argon2 parameters")
}

/// Hashes into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`), using `memory`.
pub(super) fn hash_with(password: &str, memory: &mut Memory) -> anyhow::Result<String> {
    let params = params();
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let mut out = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, memory.blocks_for(&params))
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
pub(super) fn verify_with(password: &str, hash: &str, memory: &mut Memory) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else { return false };
    let (Ok(algorithm), Ok(params)) = (Algorithm::try_from(parsed.algorithm.as_str()), Params::try_from(&parsed))
    else {
        return false;
    };
    let version = parsed.version.and_then(|v| Version::try_from(v).ok()).unwrap_or_default();
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else { return false };
    let mut out = vec![0u8; expected.as_bytes().len()];
    let blocks = memory.blocks_for(&params);
    if Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, blocks)
        .is_err()
    {
        return false;
    }
    crate::util::constant_time_eq(&out, expected.as_bytes())
}

/// Hashes synchronously (for benchmarks and seeding; the server uses [`Passwords::hash`]).
pub fn hash_blocking(password: &str) -> anyhow::Result<String> {
    hash_with(password, &mut Memory::default())
}

/// Verifies synchronously (benchmarks); the server uses [`Passwords::verify`].
pub fn verify_blocking(password: &str, hash: &str) -> bool {
    verify_with(password, hash, &mut Memory::default())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut memory = Memory::default();
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
