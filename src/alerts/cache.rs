//! The enabled rules of each grower, cached in process for ingestion (which readings some rule
//! watches) and for the evaluation jobs. Every rule change, here or (through Redis) on another
//! instance, bumps a generation, so entries read before it are never found again — even one
//! stored by a lookup that raced the change. The TTL (`ALERT_RULE_CACHE_SECS`) bounds a missed
//! message.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::{entity::rule, fcm, webhooks};
use crate::{ids::GrowerId, state::AppState};

/// The Redis channel on which rule changes are announced (payload: the grower id).
pub const CHANNEL: &str = "mash:alert-rules";

/// A grower's enabled rules, and what they look at: (device or any device, metric).
pub struct GrowerRules {
    pub rules: Vec<rule::Model>,
    watch: HashSet<(Option<Uuid>, String)>,
}

impl GrowerRules {
    /// Whether some rule looks at this device's metric.
    pub fn watches(&self, device_id: Uuid, metric: &str) -> bool {
        // Few rules per grower: a scan beats building a key per reading.
        self.watch.iter().any(|(d, m)| m == metric && d.is_none_or(|d| d == device_id))
    }
}

/// Process-wide alerting state.
pub struct AlertsState {
    /// Enabled rules by (grower, generation).
    rules: moka::sync::Cache<(Uuid, u64), Arc<GrowerRules>>,
    generation: AtomicU64,
    /// The grower of each device (devices do not change grower).
    pub(super) device_growers: moka::sync::Cache<Uuid, Uuid>,
    pub fcm: Option<fcm::Fcm>,
    pub webhooks: webhooks::Sender,
}

impl AlertsState {
    pub fn new(config: &crate::Config) -> anyhow::Result<Self> {
        Ok(Self {
            rules: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(config.alerts.rule_cache_ttl)
                .build(),
            device_growers: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(Duration::from_secs(3600))
                .build(),
            generation: AtomicU64::new(0),
            fcm: config.alerts.fcm.clone().map(fcm::Fcm::new).transpose()?,
            webhooks: webhooks::Sender::new(config.alerts.webhook_allow_private)?,
        })
    }

    /// Forgets the cached rules here (rule changes are rare: every grower's entry goes).
    pub fn rules_changed_locally(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

/// After a rule write commits: refresh this instance's index, and other instances' via Redis.
pub async fn rules_changed(state: &AppState, grower_id: GrowerId) {
    state.alerts.rules_changed_locally();
    if let Some(redis) = &state.redis {
        crate::pubsub::publish(redis, CHANNEL, &grower_id.to_string()).await;
    }
}

/// The Redis subscription that keeps rule indexes fresh across instances.
pub fn spawn_background(state: &AppState) -> Vec<tokio::task::JoinHandle<()>> {
    let Some(url) = state.config.redis_url.clone() else { return Vec::new() };
    let s = state.clone();
    vec![crate::pubsub::subscribe(url, CHANNEL, move |heard| match heard {
        // Changes announced while we were not subscribed were missed: start over.
        crate::pubsub::Heard::Subscribed | crate::pubsub::Heard::Message(_) => s.alerts.rules_changed_locally(),
    })]
}

/// The enabled rules of a grower, from the cache.
pub async fn rules_of<C: ConnectionTrait>(
    db: &C,
    state: &AlertsState,
    grower_id: Uuid,
) -> Result<Arc<GrowerRules>, DbErr> {
    let generation = state.generation.load(Ordering::SeqCst);
    if let Some(w) = state.rules.get(&(grower_id, generation)) {
        return Ok(w);
    }
    let rules = rule::Entity::find()
        .filter(rule::Column::GrowerId.eq(grower_id))
        .filter(rule::Column::Enabled.eq(true))
        .filter(rule::Column::DeletedAt.is_null())
        .all(db)
        .await?;
    let watch = rules.iter().map(|r| (r.device_id, r.metric.clone())).collect();
    let w = Arc::new(GrowerRules { rules, watch });
    state.rules.insert((grower_id, generation), w.clone());
    Ok(w)
}

/// The enabled rules of each grower a piece of work meets, looked up (in the cache) once.
#[derive(Default)]
pub(crate) struct RulesByGrower(HashMap<Uuid, Arc<GrowerRules>>);

impl RulesByGrower {
    pub(crate) async fn of<C: ConnectionTrait>(
        &mut self,
        db: &C,
        state: &AlertsState,
        grower_id: Uuid,
    ) -> Result<Arc<GrowerRules>, DbErr> {
        if let Some(w) = self.0.get(&grower_id) {
            return Ok(w.clone());
        }
        let w = rules_of(db, state, grower_id).await?;
        self.0.insert(grower_id, w.clone());
        Ok(w)
    }
}
