//! Alerts: rules over telemetry, evaluated on the job workers; the alert lifecycle (one open
//! alert per (rule, device), acknowledged and resolved by people, resolved by the rule when the
//! condition clears); and delivery of every change (realtime event, FCM push, email, signed
//! webhook), each attempt recorded in `notification_deliveries`.
//!
//! Ingestion only asks [`watched`] which readings some enabled rule looks at (a cached,
//! in-memory index) and enqueues them, in the batch's own transaction, as one
//! `evaluate_readings` job per grower, on both databases. Batches nothing watches cost one
//! cache lookup.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

pub mod delivery;
pub mod engine;
pub mod entity;
pub mod evaluate;
pub mod fcm;
mod handlers;
mod push_tokens;
mod rules;
pub mod webhooks;

use crate::{greenhouse::entity::device, jobs::NewJob, state::AppState, telemetry::store::Reading};
use entity::{AlertStatus, Severity, alert, rule};

/// The Redis channel on which rule changes are announced (payload: the grower id).
pub const CHANNEL: &str = "mash:alert-rules";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(rules::router())
        .merge(handlers::router())
        .merge(push_tokens::router())
        .merge(webhooks::router())
}

/// A grower's enabled rules, and what they look at: (device or any device, metric).
pub struct GrowerRules {
    pub rules: Vec<rule::Model>,
    watch: HashSet<(Option<Uuid>, String)>,
}

impl GrowerRules {
    fn watches(&self, device_id: Uuid, metric: &str) -> bool {
        // Few rules per grower: a scan beats building a key per reading.
        self.watch.iter().any(|(d, m)| m == metric && d.is_none_or(|d| d == device_id))
    }
}

/// Process-wide alerting state.
pub struct AlertsState {
    /// Enabled rules by (grower, generation), for ingestion (what is watched) and for the
    /// evaluation jobs. Every rule change, here or (through Redis) on another instance, bumps the
    /// generation, so entries read before it are never found again — even one stored by a lookup
    /// that raced the change. The TTL bounds a missed message.
    rules: moka::sync::Cache<(Uuid, u64), Arc<GrowerRules>>,
    generation: std::sync::atomic::AtomicU64,
    /// The grower of each device (devices do not change grower).
    device_growers: moka::sync::Cache<Uuid, Uuid>,
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
            generation: std::sync::atomic::AtomicU64::new(0),
            fcm: config.alerts.fcm.clone().map(fcm::Fcm::new).transpose()?,
            webhooks: webhooks::Sender::new(config.alerts.webhook_allow_private)?,
        })
    }

    /// Forgets the cached rules here (rule changes are rare: every grower's entry goes).
    pub fn rules_changed_locally(&self) {
        self.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// After a rule write commits: refresh this instance's index, and other instances' via Redis.
pub async fn rules_changed(state: &AppState, grower_id: Uuid) {
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
    let generation = state.generation.load(std::sync::atomic::Ordering::SeqCst);
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

/// The evaluation jobs a batch about to be stored needs: per grower, one `evaluate_readings`
/// job naming the devices, metrics and time range of the readings its enabled rules watch,
/// to commit with the batch. Empty (and no database work once cached) when no rule looks at it.
pub async fn watched(state: &AppState, readings: &[Reading], accepted_at: DateTime<Utc>) -> Result<Vec<NewJob>, DbErr> {
    let alerts = &state.alerts;
    let devices: HashSet<Uuid> = readings.iter().map(|r| r.device_id).collect();
    let unknown: Vec<Uuid> = devices.iter().copied().filter(|d| !alerts.device_growers.contains_key(d)).collect();
    if !unknown.is_empty() {
        let rows: Vec<(Uuid, Uuid)> = device::Entity::find()
            .select_only()
            .columns([device::Column::Id, device::Column::GrowerId])
            .filter(device::Column::Id.is_in(unknown))
            .into_tuple()
            .all(&state.db)
            .await?;
        for (d, g) in rows {
            alerts.device_growers.insert(d, g);
        }
    }
    let mut watches = RulesByGrower::default();
    let mut per_grower: HashMap<Uuid, Span<'_>> = HashMap::new();
    for r in readings {
        let Some(grower) = alerts.device_growers.get(&r.device_id) else { continue };
        let watch = watches.of(&state.db, alerts, grower).await?;
        if !watch.watches(r.device_id, &r.metric) {
            continue;
        }
        let ts = r.ts.timestamp_micros();
        let e = per_grower.entry(grower).or_insert_with(|| (HashSet::new(), HashSet::new(), ts, ts));
        e.0.insert(r.device_id);
        e.1.insert(r.metric.as_str());
        e.2 = e.2.min(ts);
        e.3 = e.3.max(ts);
    }
    let accepted_at_ms = accepted_at.timestamp_millis();
    per_grower
        .into_iter()
        .map(|(grower_id, (devices, metrics, from_us, to_us))| {
            let job = evaluate::EvaluateReadings {
                grower_id,
                devices: devices.into_iter().collect(),
                metrics: metrics.into_iter().map(str::to_owned).collect(),
                from_us,
                to_us,
                accepted_at_ms,
            };
            NewJob::of(&job, accepted_at)
        })
        .collect()
}

/// The watched part of a batch for one grower: devices, metrics, first and last time (µs).
type Span<'a> = (HashSet<Uuid>, HashSet<&'a str>, i64, i64);

/// How an alert changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Created,
    Updated,
    Acknowledged,
    Resolved,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Created => "created",
            Change::Updated => "updated",
            Change::Acknowledged => "acknowledged",
            Change::Resolved => "resolved",
        }
    }
}

/// An alert as clients see it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertOut {
    pub id: Uuid,
    pub grower_id: Uuid,
    pub device_id: Uuid,
    pub rule_id: Uuid,
    pub metric: String,
    /// `info`, `warning` or `critical`.
    #[schema(value_type = String)]
    pub severity: Severity,
    /// `active`, `acknowledged` or `resolved`.
    #[schema(value_type = String)]
    pub status: AlertStatus,
    pub message: String,
    /// The reading that (last) met the condition; for `stale`, the seconds since the last reading.
    pub value: f64,
    /// How many times the condition was met while this alert was open.
    pub count: i32,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acknowledged_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acknowledged_by: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<Uuid>,
}

impl From<&alert::Model> for AlertOut {
    fn from(a: &alert::Model) -> Self {
        Self {
            id: a.id,
            grower_id: a.grower_id,
            device_id: a.device_id,
            rule_id: a.rule_id,
            metric: a.metric.clone(),
            severity: a.severity,
            status: a.status,
            message: a.message.clone(),
            value: a.value,
            count: a.count,
            created_at: a.created_at,
            last_seen_at: a.last_seen_at,
            acknowledged_at: a.acknowledged_at,
            acknowledged_by: a.acknowledged_by,
            resolved_at: a.resolved_at,
            resolved_by: a.resolved_by,
        }
    }
}
