//! Creating a rule: checked, stored, audited; every instance's rule index refreshed.

use sea_orm::{EntityTrait, IntoActiveModel};

use super::spec::{Identity, RuleSpec, check_device};
use crate::{
    alerts::{cache::rules_changed, entity::rule, error::RuleError},
    audit::{self, Entry},
    auth::ClientMeta,
    ids::{GrowerId, UserId},
    state::AppState,
};

/// Creates a rule of `grower_id` defined by `spec`, `by` a person.
pub async fn create(
    state: &AppState,
    grower_id: GrowerId,
    spec: RuleSpec,
    by: UserId,
    client: &ClientMeta,
) -> Result<rule::Model, RuleError> {
    let severity = spec.check()?;
    check_device(&state.db, grower_id, spec.device_id.map(Into::into)).await?;
    let r = spec.into_rule(severity, Identity::new(grower_id, by, state.clock.now()));
    let txn = state.db.begin_write().await?;
    rule::Entity::insert(r.clone().into_active_model()).exec_without_returning(&txn).await?;
    let details = serde_json::json!({"growerId": r.grower_id, "kind": r.kind.as_str(), "metric": r.metric});
    let entry = Entry::new("alert_rule.create").by(Some(by.into())).on("alert_rule", r.id).client(client);
    audit::record(&txn, entry.details(details)).await?;
    txn.commit().await?;
    rules_changed(state, grower_id).await;
    Ok(r)
}
