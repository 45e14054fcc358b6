//! CONTRACT.md "Auth and users": register, login, refresh rotation and reuse, logout, sessions,
//! access tokens and the JWKS, revocation (also across a restart and across instances over
//! Redis), lockout and per-IP limits, the audit trail of sign-in events, and identity's
//! domain functions called without HTTP.

mod audit_and_races;
mod brute_force;
mod domain;
mod register;
mod sessions;
mod tokens;
