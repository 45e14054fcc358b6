//! CONTRACT.md "Auth and users": register, login, refresh rotation and reuse, logout, sessions,
//! access tokens and the JWKS, revocation (also across a restart and across instances over
//! Redis), lockout and per-IP limits, and the audit trail of sign-in events.

mod audit_and_races;
mod brute_force;
mod register;
mod sessions;
mod tokens;
