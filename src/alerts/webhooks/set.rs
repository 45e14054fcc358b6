//! A grower's webhook: set (with a new signing secret on creation or rotation), read, removed.
//! The secret is sealed with AES-GCM at rest and shown once.

use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait, sea_query::OnConflict};

use crate::{
    alerts::{entity::webhook, error::WebhookError},
    audit::{self, Entry},
    auth::ClientMeta,
    ids::{GrowerId, UserId},
    state::AppState,
};

/// What a grower asks for.
#[derive(Debug, Clone)]
pub struct WebhookSetting {
    /// Checked against [`super::Sender::check_url`].
    pub url: String,
    pub enabled: bool,
    /// Issue a new signing secret (the old one stops working at once).
    pub rotate_secret: bool,
}

/// Sets `grower_id`'s webhook, `by` a person: the webhook as stored, and its signing secret
/// when one was issued (on creation, or when asked to rotate).
pub async fn set(
    state: &AppState,
    grower_id: GrowerId,
    setting: WebhookSetting,
    by: UserId,
    client: &ClientMeta,
) -> Result<(webhook::Model, Option<String>), WebhookError> {
    let url = state.alerts.webhooks.check_url(setting.url.trim()).map_err(WebhookError::InvalidUrl)?;
    let now = state.clock.now();
    let txn = state.db.begin_write().await?;
    let existing = webhook::Entity::find_by_id(grower_id).one(&txn).await?;
    let new_secret = (existing.is_none() || setting.rotate_secret)
        .then(|| format!("whsec_{}", crate::auth::secrets::random_token()));
    let sealed = match (&new_secret, &existing) {
        (Some(s), _) => state.auth.mfa.seal(grower_id.into(), s.as_bytes()).map_err(WebhookError::Seal)?,
        (None, Some(h)) => h.secret_sealed.clone(),
        (None, None) => unreachable!("a new webhook always gets a secret"),
    };
    let row = webhook::Model {
        grower_id: grower_id.into(),
        url: url.to_string(),
        secret_sealed: sealed,
        enabled: setting.enabled,
        created_at: existing.as_ref().map_or(now, |h| h.created_at),
        updated_at: now,
    };
    webhook::Entity::insert(webhook::ActiveModel {
        grower_id: Set(row.grower_id),
        url: Set(row.url.clone()),
        secret_sealed: Set(row.secret_sealed.clone()),
        enabled: Set(row.enabled),
        created_at: Set(row.created_at),
        updated_at: Set(row.updated_at),
    })
    .on_conflict(
        OnConflict::column(webhook::Column::GrowerId)
            .update_columns([
                webhook::Column::Url,
                webhook::Column::SecretSealed,
                webhook::Column::Enabled,
                webhook::Column::UpdatedAt,
            ])
            .to_owned(),
    )
    .exec_without_returning(&txn)
    .await?;
    let details = serde_json::json!({"url": row.url, "enabled": row.enabled, "secretRotated": new_secret.is_some()});
    let entry = Entry::new("alert_webhook.set").by(Some(by.into())).on("grower", grower_id).details(details);
    audit::record(&txn, entry.client(client)).await?;
    txn.commit().await?;
    Ok((row, new_secret))
}

/// `grower_id`'s webhook.
pub async fn find<C: ConnectionTrait>(db: &C, grower_id: GrowerId) -> Result<webhook::Model, WebhookError> {
    webhook::Entity::find_by_id(grower_id).one(db).await?.ok_or(WebhookError::NotFound)
}

/// Removes `grower_id`'s webhook, `by` a person.
pub async fn remove(
    state: &AppState,
    grower_id: GrowerId,
    by: UserId,
    client: &ClientMeta,
) -> Result<(), WebhookError> {
    let txn = state.db.begin_write().await?;
    let gone = webhook::Entity::delete_by_id(grower_id).exec(&txn).await?.rows_affected;
    if gone == 0 {
        return Err(WebhookError::NotFound);
    }
    let entry = Entry::new("alert_webhook.delete").by(Some(by.into())).on("grower", grower_id).client(client);
    audit::record(&txn, entry).await?;
    txn.commit().await?;
    Ok(())
}

/// The webhook's secret, decrypted.
pub fn open_secret(state: &AppState, hook: &webhook::Model) -> anyhow::Result<String> {
    let plain = state.auth.mfa.open(hook.grower_id, &hook.secret_sealed).map_err(|e| anyhow::anyhow!("{e}"))?;
    String::from_utf8(plain).map_err(|_| anyhow::anyhow!("webhook secret is not UTF-8"))
}
