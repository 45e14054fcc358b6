//! Sign-in with an external OpenID Connect identity (Firebase Auth, Google, any OIDC
//! provider): the client presents the provider's ID token, we verify it against the provider's
//! JWKS (signature, `iss`, `aud`, `exp`) and answer with our own tokens.
//!
//! The user is found by `(issuer, sub)` (`external_uid`, as seed 000 keeps `firebaseUid`). A new
//! identity is linked to an existing account only when the provider vouches for the email
//! (`email_verified`), otherwise a takeover would be one unverified email away.

use std::time::{Duration, Instant};

use axum::extract::State;
use chrono::Utc;
use garde::Validate;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use serde::Deserialize;
use tokio::sync::RwLock;
use utoipa_axum::router::OpenApiRouter;

use crate::routes;
use uuid::Uuid;

use super::{
    ClientMeta, Role,
    handlers::AuthOut,
    sessions::{self, DeviceInfo},
};
use crate::{
    audit::{self, Entry},
    config::OidcConfig,
    http::{AppError, Json, Valid},
    state::AppState,
    users::{UserOut, entity::user, normalize_email},
};

const JWKS_TTL: Duration = Duration::from_secs(600);
/// An unknown `kid` refetches the JWKS (keys rotate), but not more often than this.
const MIN_REFETCH: Duration = Duration::from_secs(30);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(exchange))
}

/// The provider's keys, cached.
pub struct Oidc {
    cfg: OidcConfig,
    http: reqwest::Client,
    cache: RwLock<Option<(Instant, JwkSet)>>,
}

#[derive(Debug, Deserialize)]
struct IdClaims {
    sub: String,
    email: Option<String>,
    #[serde(default)]
    email_verified: bool,
    name: Option<String>,
}

impl Oidc {
    pub fn new(cfg: OidcConfig) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).user_agent("mash").build()?;
        Ok(Self { cfg, http, cache: RwLock::new(None) })
    }

    async fn fetch(&self) -> Result<JwkSet, AppError> {
        let res = self.http.get(&self.cfg.jwks_url).send().await.map_err(|e| {
            tracing::warn!(error = %e, "fetching the OIDC JWKS failed");
            AppError::Unavailable("the identity provider's keys cannot be fetched".into())
        })?;
        if !res.status().is_success() {
            tracing::warn!(status = res.status().as_u16(), "the OIDC JWKS endpoint answered an error");
            return Err(AppError::Unavailable("the identity provider's keys cannot be fetched".into()));
        }
        res.json::<JwkSet>().await.map_err(|e| {
            tracing::warn!(error = %e, "the OIDC JWKS is not a JWK set");
            AppError::Unavailable("the identity provider's keys cannot be read".into())
        })
    }

    /// The key for `kid`: from the cache, or refetched when the cache is old or lacks it.
    async fn key(&self, kid: &str) -> Result<jsonwebtoken::jwk::Jwk, AppError> {
        {
            let cache = self.cache.read().await;
            if let Some((at, set)) = cache.as_ref() {
                if let Some(k) = set.find(kid).filter(|_| at.elapsed() < JWKS_TTL) {
                    return Ok(k.clone());
                }
                if at.elapsed() < MIN_REFETCH {
                    return Err(AppError::Unauthorized("ID token signed by an unknown key".into()));
                }
            }
        }
        let set = self.fetch().await?;
        let found = set.find(kid).cloned();
        *self.cache.write().await = Some((Instant::now(), set));
        found.ok_or_else(|| AppError::Unauthorized("ID token signed by an unknown key".into()))
    }

    async fn verify(&self, id_token: &str) -> Result<IdClaims, AppError> {
        let bad = || AppError::Unauthorized("invalid ID token".into());
        let header = jsonwebtoken::decode_header(id_token).map_err(|_| bad())?;
        // Asymmetric algorithms only: never `none`, never a shared-secret HMAC.
        if !matches!(
            header.alg,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::ES256
                | Algorithm::ES384
                | Algorithm::EdDSA
        ) {
            return Err(bad());
        }
        let kid = header.kid.ok_or_else(bad)?;
        let jwk = self.key(&kid).await?;
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| bad())?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.cfg.issuer]);
        validation.set_audience(&[&self.cfg.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 60;
        jsonwebtoken::decode::<IdClaims>(id_token, &key, &validation).map(|d| d.claims).map_err(|e| {
            tracing::debug!(error = %e, "ID token refused");
            match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AppError::Unauthorized("ID token expired".into()),
                _ => bad(),
            }
        })
    }
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExchangeIn {
    /// The provider's ID token (a JWT).
    #[garde(length(min = 1, max = 16384))]
    pub id_token: String,
    #[garde(length(max = 128))]
    pub device_id: Option<String>,
    #[garde(length(max = 128))]
    pub device_name: Option<String>,
}

/// Exchanges an external ID token for Mash tokens, linking or creating the user.
#[utoipa::path(post, path = "/auth/oidc/exchange", tag = "auth", request_body = ExchangeIn,
    responses(
        (status = 200, body = AuthOut), (status = 401, description = "token refused"),
        (status = 409, description = "the email belongs to an account and the provider does not vouch for it"),
        (status = 422, description = "OIDC is not configured"), (status = 503, description = "provider keys unreachable")
    ))]
#[tracing::instrument(skip_all)]
async fn exchange(
    State(state): State<AppState>,
    client: ClientMeta,
    Valid(Json(input)): Valid<Json<ExchangeIn>>,
) -> Result<Json<AuthOut>, AppError> {
    state.auth.abuse.check_client(state.redis.as_ref(), &client).await?;
    let Some(oidc) = state.auth.oidc.as_ref() else {
        return Err(AppError::Unprocessable("sign-in with an external identity provider is not configured".into()));
    };
    let claims = oidc.verify(&input.id_token).await?;
    let issuer = oidc.cfg.issuer.clone();
    let u = link_or_create(&state, &issuer, &claims, &client).await?;
    if !sessions::is_active(&u) {
        return Err(AppError::Unauthorized("this account is disabled".into()));
    }
    let device = DeviceInfo { device_id: input.device_id, device_name: input.device_name };
    let tokens = sessions::start(&state, &u, &device, &client, "oidc").await?;
    Ok(Json(AuthOut { user: UserOut::from(&u), tokens }))
}

async fn link_or_create(
    state: &AppState,
    issuer: &str,
    claims: &IdClaims,
    client: &ClientMeta,
) -> Result<user::Model, AppError> {
    let by_identity = user::Entity::find()
        .filter(user::Column::ExternalIssuer.eq(issuer))
        .filter(user::Column::ExternalUid.eq(claims.sub.as_str()))
        .filter(user::Column::DeletedAt.is_null())
        .one(&state.db)
        .await?;
    if let Some(u) = by_identity {
        return Ok(u);
    }
    let email = claims.email.as_deref().map(normalize_email).filter(|e| e.contains('@'));
    let txn = state.db.begin_write().await?;
    if let Some(email) = &email {
        let existing = user::Entity::find().filter(user::Column::Email.eq(email.as_str())).one(&txn).await?;
        if let Some(existing) = existing {
            if !claims.email_verified || existing.deleted_at.is_some() {
                return Err(AppError::Conflict(
                    "an account with this email already exists; sign in with its password first".into(),
                ));
            }
            let linked = user::Entity::update_many()
                .col_expr(user::Column::ExternalIssuer, Expr::value(issuer))
                .col_expr(user::Column::ExternalUid, Expr::value(claims.sub.as_str()))
                .col_expr(user::Column::EmailVerified, Expr::value(true))
                .col_expr(user::Column::UpdatedAt, Expr::value(Utc::now()))
                .filter(user::Column::Id.eq(existing.id))
                .filter(user::Column::ExternalUid.is_null())
                .exec(&txn)
                .await?;
            if linked.rows_affected != 1 {
                return Err(AppError::Conflict("this account is already linked to another external identity".into()));
            }
            audit::record(
                &txn,
                Entry::new("user.external_linked")
                    .by(Some(existing.id))
                    .on("user", existing.id)
                    .details(serde_json::json!({ "issuer": issuer }))
                    .client(client),
            )
            .await?;
            let u = user::Entity::find_by_id(existing.id)
                .one(&txn)
                .await?
                .ok_or_else(|| anyhow::anyhow!("user vanished"))?;
            txn.commit().await?;
            return Ok(u);
        }
    }
    // A provider without an email claim still gets an account, under an address that can
    // never receive mail (RFC 2606 `.invalid`).
    let host =
        url::Url::parse(issuer).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_else(|| "oidc".into());
    let email = email.unwrap_or_else(|| format!("{}@{host}.invalid", claims.sub.to_lowercase()));
    let id = Uuid::now_v7();
    let name = claims
        .name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| email.split('@').next().unwrap_or("user").to_string());
    user::Entity::insert(
        crate::users::NewUser {
            email,
            name: &name,
            role: Role::Customer,
            password_hash: None,
            email_verified: claims.email_verified,
            external: Some((issuer, &claims.sub)),
        }
        .into_active(id),
    )
    .exec_without_returning(&txn)
    .await?;
    audit::record(
        &txn,
        Entry::new("user.register")
            .by(Some(id))
            .on("user", id)
            .details(serde_json::json!({ "method": "oidc", "issuer": issuer }))
            .client(client),
    )
    .await?;
    let u = user::Entity::find_by_id(id).one(&txn).await?.ok_or_else(|| anyhow::anyhow!("user vanished"))?;
    txn.commit().await?;
    Ok(u)
}
