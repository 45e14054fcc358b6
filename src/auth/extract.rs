//! Authentication and authorization as extractors, so a handler cannot forget either:
//! `AuthUser` for "signed in", `Authorized<perm::X>` for "signed in and allowed to X".

use std::{marker::PhantomData, net::SocketAddr, ops::Deref};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::{header, request::Parts},
};
use uuid::Uuid;

use super::{
    AuthError,
    roles::{Role, perm::Required},
    tokens::TokenError,
};
use crate::{http::AppError, state::AppState};

/// The signed-in person behind a request.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub role: Role,
}

impl AuthUser {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// 403 unless the role holds `permission`: the refusal of [`Authorized`], so an `AppError`.
    pub fn require(&self, permission: super::roles::Permission) -> Result<(), AppError> {
        if self.role.can(permission) {
            Ok(())
        } else {
            Err(AppError::Forbidden("you are not allowed to do this".into()))
        }
    }
}

/// The credential of an `Authorization: <scheme> <credential>` header, when the scheme is
/// `scheme` (compared case-insensitively).
pub fn authorization<'h>(headers: &'h axum::http::HeaderMap, scheme: &str) -> Option<&'h str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (given, credential) = value.split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then_some(credential.trim())
}

/// The bearer token of a request, if any.
pub fn bearer(parts: &Parts) -> Option<&str> {
    authorization(&parts.headers, "bearer")
}

/// Verifies an access token and checks that its session is not revoked. No database round trip.
pub fn authenticate(state: &AppState, token: &str) -> Result<AuthUser, AuthError> {
    authenticate_until(state, token).map(|(user, _)| user)
}

/// [`authenticate`], also returning when the token expires (seconds since the epoch), for
/// connections that outlive it.
pub fn authenticate_until(state: &AppState, token: &str) -> Result<(AuthUser, i64), AuthError> {
    let claims = state.auth.verified.verify(&state.auth.keys, token).map_err(|e| {
        tracing::debug!(reason = %e, "access token refused");
        match e {
            TokenError::Expired => AuthError::AccessTokenExpired,
            TokenError::UnknownKey | TokenError::Invalid => AuthError::InvalidAccessToken,
        }
    })?;
    if state.auth.revocations.is_revoked(&claims.sid) {
        return Err(AuthError::SessionRevoked);
    }
    Ok((AuthUser { user_id: claims.sub, session_id: claims.sid, role: claims.role }, claims.exp))
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(user) = parts.extensions.get::<AuthUser>() {
            return Ok(user.clone());
        }
        let token = bearer(parts).ok_or(AuthError::MissingBearer)?;
        let user = authenticate(state, token)?;
        parts.extensions.insert(user.clone());
        Ok(user)
    }
}

/// A signed-in user whose role holds the permission `P`; 401 or 403 otherwise.
#[derive(Debug, Clone)]
pub struct Authorized<P: Required> {
    pub user: AuthUser,
    _p: PhantomData<P>,
}

impl<P: Required> Deref for Authorized<P> {
    type Target = AuthUser;
    fn deref(&self) -> &AuthUser {
        &self.user
    }
}

impl<P: Required> FromRequestParts<AppState> for Authorized<P> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let user = AuthUser::from_request_parts(parts, state).await?;
        user.require(P::PERMISSION)?;
        Ok(Self { user, _p: PhantomData })
    }
}

/// Where a request came from, for sessions and the audit log.
#[derive(Debug, Clone)]
pub struct ClientMeta {
    pub ip: Option<std::net::IpAddr>,
    pub user_agent: Option<String>,
}

impl ClientMeta {
    pub fn ip_string(&self) -> Option<String> {
        self.ip.map(|ip| ip.to_string())
    }
}

impl FromRequestParts<AppState> for ClientMeta {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        // The trusted proxy appends the address it saw to whatever the client sent, so only the
        // last entry is trustworthy; the first is whatever the client wrote (per-IP limits and the
        // audit log would be trivially spoofed).
        let forwarded = state
            .config
            .auth
            .trust_proxy
            .then(|| parts.headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()))
            .flatten()
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse().ok());
        let user_agent =
            parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|s| s.chars().take(512).collect());
        Ok(Self { ip: forwarded.or(peer), user_agent })
    }
}
