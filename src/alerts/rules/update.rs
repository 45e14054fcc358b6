//! Changing a rule: the patch applied to its definition, checked as a whole. A change to what
//! the rule watches (kind, metric, device, comparison, thresholds, timing) starts its evaluation
//! state afresh; disabling it resolves its open alerts.

use sea_orm::{ActiveModelTrait, ActiveValue::Unchanged, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter};

use super::{
    RulePatch,
    delete::resolve_open_alerts,
    spec::{Identity, RuleSpec, check_device},
};
use crate::{
    alerts::{
        cache::rules_changed,
        engine,
        entity::{rule, rule_state},
        error::RuleError,
    },
    audit::{self, Entry},
    auth::ClientMeta,
    ids::UserId,
    state::AppState,
};

impl RulePatch {
    /// Applies the fields present: absent ones stay, `null` clears an optional one.
    pub fn apply_to(self, s: &mut RuleSpec) {
        let RulePatch {
            device_id,
            name,
            metric,
            kind,
            op,
            threshold,
            low,
            high,
            for_seconds,
            severity,
            enabled,
            auto_resolve,
            alpha,
            warmup_samples,
        } = self;
        set(&mut s.device_id, device_id);
        set(&mut s.name, name);
        set(&mut s.metric, metric);
        set(&mut s.kind, kind);
        set(&mut s.op, op);
        set(&mut s.threshold, threshold);
        set(&mut s.low, low);
        set(&mut s.high, high);
        set(&mut s.for_seconds, for_seconds);
        set(&mut s.severity, severity);
        set(&mut s.enabled, enabled);
        set(&mut s.auto_resolve, auto_resolve);
        set(&mut s.alpha, alpha);
        set(&mut s.warmup_samples, warmup_samples);
    }
}

fn set<T>(field: &mut T, patched: Option<T>) {
    if let Some(v) = patched {
        *field = v;
    }
}

/// Changes `before` (a live rule) by `patch`, `by` a person; the rule as stored.
pub async fn update(
    state: &AppState,
    before: rule::Model,
    patch: RulePatch,
    by: UserId,
    client: &ClientMeta,
) -> Result<rule::Model, RuleError> {
    let mut spec = RuleSpec::of(&before);
    patch.apply_to(&mut spec);
    let severity = spec.check()?;
    check_device(&state.db, before.grower_id.into(), spec.device_id.map(Into::into)).await?;
    let now = state.clock.now();
    let r = spec.into_rule(severity, Identity::of(&before, now));
    let redefined = engine::Rule::from(&r) != engine::Rule::from(&before) || r.device_id != before.device_id;
    let txn = state.db.begin_write().await?;
    // Every field written (`into_active_model` alone marks them unchanged and writes nothing),
    // except those a change never touches.
    let mut active = r.clone().into_active_model().reset_all();
    active.id = Unchanged(r.id);
    active.created_at = Unchanged(r.created_at);
    active.created_by = Unchanged(r.created_by);
    active.grower_id = Unchanged(r.grower_id);
    active.deleted_at = Unchanged(None);
    rule::Entity::update(active).exec(&txn).await?;
    if redefined {
        rule_state::Entity::delete_many().filter(rule_state::Column::RuleId.eq(r.id)).exec(&txn).await?;
    }
    if before.enabled && !r.enabled {
        resolve_open_alerts(&txn, state, &r, by, now).await?;
    }
    let entry = Entry::new("alert_rule.update").by(Some(by.into())).on("alert_rule", r.id).client(client);
    audit::record(&txn, entry).await?;
    txn.commit().await?;
    state.jobs.wake();
    rules_changed(state, r.grower_id.into()).await;
    Ok(r)
}
