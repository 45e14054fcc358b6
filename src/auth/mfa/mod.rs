//! TOTP (RFC 6238: SHA-1, 6 digits, 30 s steps, one step of drift either way) with replay
//! refusal, ten single-use backup codes, and the short-lived single-use `mfaToken` that
//! bridges password login and code verification. Secrets are encrypted at rest with
//! AES-256-GCM, bound to their user by the associated data.
//!
//! - `secret_box.rs`: the encryption of secrets at rest;
//! - `codes.rs`: checking a code, each accepted once;
//! - `enroll.rs`: turning MFA on (enroll, activate) and off;
//! - `challenge.rs`: the second login step.

mod challenge;
mod codes;
mod enroll;
mod secret_box;

pub use challenge::{start_challenge, verify};
pub use enroll::{activate, disable, enroll};
pub use secret_box::SecretBox;
