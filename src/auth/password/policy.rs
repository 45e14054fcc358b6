//! The password policy: 8 to 128 characters, and not one of the ~11,600 common passwords that
//! ship in the binary (`assets/common-passwords.txt`, from zxcvbn), in any case.

use std::collections::HashSet;

use super::Passwords;
use crate::auth::PasswordError;

pub const MIN_LEN: usize = 8;
/// Long enough for any passphrase, short enough that hashing cost stays bounded.
pub const MAX_LEN: usize = 128;

const COMMON_PASSWORDS: &str = include_str!("../../../assets/common-passwords.txt");

/// The common-password list as a set, built at the first policy check (about 0.4 MiB that a
/// server nobody signs up to never needs). A `static` on purpose: it is a constant table, a
/// function of the text compiled into the binary, the same for every state in the process.
static COMMON: std::sync::LazyLock<HashSet<&'static str>> =
    std::sync::LazyLock::new(|| COMMON_PASSWORDS.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).collect());

impl Passwords {
    /// Checks the policy: 400 with `details` naming `field` when the password is too short,
    /// too long, or one of the common passwords that ship in the binary.
    pub fn check_policy(&self, field: &str, password: &str) -> Result<(), PasswordError> {
        let len = password.chars().count();
        let problem = if len < MIN_LEN {
            Some(format!("must be at least {MIN_LEN} characters"))
        } else if len > MAX_LEN {
            Some(format!("must be at most {MAX_LEN} characters"))
        } else if COMMON.contains(password.to_lowercase().as_str()) {
            Some("is too common; choose a less guessable password".to_string())
        } else {
            None
        };
        match problem {
            None => Ok(()),
            Some(problem) => Err(PasswordError::Policy { field: field.to_owned(), problem }),
        }
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
}
