//! Which account an external identity signs in to: the one already linked to `(issuer, sub)`;
//! else the account of the same email, linked now, only when the provider vouches for that
//! email; else a new CUSTOMER account.

use chrono::Utc;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use uuid::Uuid;

use super::provider::IdClaims;
use crate::{
    audit::{self, Entry},
    auth::{AuthError, ClientMeta, Role},
    db::WriteTxn,
    state::AppState,
    users::{NewUser, entity::user, normalize_email},
};

pub(super) async fn link_or_create(
    state: &AppState,
    issuer: &str,
    claims: &IdClaims,
    client: &ClientMeta,
) -> Result<user::Model, AuthError> {
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
            return link(txn, issuer, claims, existing, client).await;
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
        NewUser {
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
    let details = serde_json::json!({ "method": "oidc", "issuer": issuer });
    audit::record(&txn, Entry::new("user.register").by(Some(id)).on("user", id).details(details).client(client))
        .await?;
    reread(txn, id).await
}

/// Links the identity to `existing`, the account of the same email, when the provider vouches
/// for that email and the account has no external identity yet.
async fn link(
    txn: WriteTxn,
    issuer: &str,
    claims: &IdClaims,
    existing: user::Model,
    client: &ClientMeta,
) -> Result<user::Model, AuthError> {
    if !claims.email_verified || existing.deleted_at.is_some() {
        return Err(AuthError::EmailNotVouched);
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
        return Err(AuthError::AlreadyLinked);
    }
    let details = serde_json::json!({ "issuer": issuer });
    let entry = Entry::new("user.external_linked").by(Some(existing.id)).on("user", existing.id).details(details);
    audit::record(&txn, entry.client(client)).await?;
    reread(txn, existing.id).await
}

/// The user as written, then the commit.
async fn reread(txn: WriteTxn, id: Uuid) -> Result<user::Model, AuthError> {
    let u = user::Entity::find_by_id(id).one(&txn).await?.ok_or_else(|| anyhow::anyhow!("user vanished"))?;
    txn.commit().await?;
    Ok(u)
}
