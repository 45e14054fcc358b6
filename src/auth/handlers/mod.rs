//! Every `/auth/*` route (and the JWKS), thin: extract, call the one domain function, shape the
//! answer. One file per resource.

pub(super) mod email;
pub(super) mod jwks;
pub(super) mod login;
pub(super) mod mfa;
pub(super) mod oidc;
pub(super) mod sessions;
