//! `/alert-rules`: create, list, change and delete a grower's rules. Members of the grower
//! (and ADMIN) may; everyone else gets 404 for a grower they do not belong to.
//!
//! A change to what a rule watches (kind, metric, device, comparison, thresholds, timing)
//! starts its evaluation state afresh. Disabling or deleting a rule resolves its open alerts.

use axum::{extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, sea_query::ExprTrait};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;

use crate::routes;
use uuid::Uuid;

use super::{
    Change,
    engine::{self, Kind, Op},
    entity::{AlertStatus, Severity, alert, rule, rule_state},
};
use crate::{
    audit::{self, Entry},
    auth::{AuthUser, ClientMeta},
    greenhouse::access::{self, Need},
    http::{AppError, FieldError, Json, ListParams, Page, Path, Query},
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_rule, list_rules)).routes(routes!(update_rule, delete_rule))
}

/// A new rule.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleIn {
    pub grower_id: Uuid,
    /// One device; without it, every device of the grower.
    pub device_id: Option<Uuid>,
    /// A label for people (up to 120 characters).
    pub name: Option<String>,
    pub metric: String,
    pub kind: Kind,
    /// threshold and rate: `gt`/`lt` compare with `threshold`, `outside` with `low`..`high`.
    pub op: Option<Op>,
    /// threshold/rate: the limit (rate: per minute). anomaly: `k`, in standard deviations (default 3).
    pub threshold: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
    /// threshold/rate/anomaly: how long the condition must hold before the rule fires (default 0).
    /// stale: how long without a reading (required).
    pub for_seconds: Option<i32>,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// Defaults to true.
    pub enabled: Option<bool>,
    /// Resolve the open alert when the condition clears (default true).
    pub auto_resolve: Option<bool>,
    /// anomaly: weight of each new reading in the baseline, 0 < alpha <= 1 (default 0.1).
    pub alpha: Option<f64>,
    /// anomaly: readings before the detector judges (default 20, at least 2).
    pub warmup_samples: Option<i32>,
}

/// Changes to a rule; absent fields stay, `null` clears an optional one.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RulePatch {
    #[serde(default, deserialize_with = "crate::util::present")]
    #[schema(value_type = Option<Uuid>)]
    pub device_id: Option<Option<Uuid>>,
    #[serde(default, deserialize_with = "crate::util::present")]
    #[schema(value_type = Option<String>)]
    pub name: Option<Option<String>>,
    pub metric: Option<String>,
    pub kind: Option<Kind>,
    #[serde(default, deserialize_with = "crate::util::present")]
    #[schema(value_type = Option<Op>)]
    pub op: Option<Option<Op>>,
    #[serde(default, deserialize_with = "crate::util::present")]
    #[schema(value_type = Option<f64>)]
    pub threshold: Option<Option<f64>>,
    #[serde(default, deserialize_with = "crate::util::present")]
    #[schema(value_type = Option<f64>)]
    pub low: Option<Option<f64>>,
    #[serde(default, deserialize_with = "crate::util::present")]
    #[schema(value_type = Option<f64>)]
    pub high: Option<Option<f64>>,
    pub for_seconds: Option<i32>,
    pub severity: Option<String>,
    pub enabled: Option<bool>,
    pub auto_resolve: Option<bool>,
    #[serde(default, deserialize_with = "crate::util::present")]
    #[schema(value_type = Option<f64>)]
    pub alpha: Option<Option<f64>>,
    #[serde(default, deserialize_with = "crate::util::present")]
    #[schema(value_type = Option<i32>)]
    pub warmup_samples: Option<Option<i32>>,
}

/// A rule.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleOut {
    pub id: Uuid,
    pub grower_id: Uuid,
    pub device_id: Option<Uuid>,
    pub name: Option<String>,
    pub metric: String,
    #[schema(value_type = String)]
    pub kind: Kind,
    #[schema(value_type = Option<String>)]
    pub op: Option<Op>,
    pub threshold: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub for_seconds: i32,
    #[schema(value_type = String)]
    pub severity: Severity,
    pub enabled: bool,
    pub auto_resolve: bool,
    pub alpha: Option<f64>,
    pub warmup_samples: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&rule::Model> for RuleOut {
    fn from(r: &rule::Model) -> Self {
        Self {
            id: r.id,
            grower_id: r.grower_id,
            device_id: r.device_id,
            name: r.name.clone(),
            metric: r.metric.clone(),
            kind: r.kind,
            op: r.op,
            threshold: r.threshold,
            low: r.low,
            high: r.high,
            for_seconds: r.for_seconds,
            severity: r.severity,
            enabled: r.enabled,
            auto_resolve: r.auto_resolve,
            alpha: r.alpha,
            warmup_samples: r.warmup_samples,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// Checks a complete rule; every problem is named.
fn validate(r: &rule::Model, severity_ok: bool) -> Result<(), AppError> {
    let mut bad = Vec::new();
    let mut err = |f: &str, m: &str| bad.push(FieldError::new(f, m));
    if let Some(name) = &r.name
        && (name.trim().is_empty() || name.chars().count() > 120)
    {
        err("name", "must be 1 to 120 characters");
    }
    if !crate::telemetry::batch::valid_metric(&r.metric) {
        err("metric", "must match ^[a-z][a-z0-9_.]{0,63}$");
    }
    if !severity_ok {
        err("severity", "must be info, warning or critical");
    }
    for (f, v) in [("threshold", r.threshold), ("low", r.low), ("high", r.high), ("alpha", r.alpha)] {
        if v.is_some_and(|v| !v.is_finite()) {
            err(f, "must be a finite number");
        }
    }
    if !(0..=2_592_000).contains(&r.for_seconds) {
        err("forSeconds", "must be between 0 and 2592000 (30 days)");
    }
    let kind = Some(r.kind);
    match kind {
        Some(Kind::Threshold | Kind::Rate) => match r.op {
            None => err("op", "is required for threshold and rate rules: gt, lt or outside"),
            Some(Op::Gt | Op::Lt) if r.threshold.is_none() => err("threshold", "is required with op gt or lt"),
            Some(Op::Outside) => match (r.low, r.high) {
                (Some(l), Some(h)) if l < h => {}
                (Some(_), Some(_)) => err("low", "must be below high"),
                _ => err("low", "low and high are both required with op outside"),
            },
            _ => {}
        },
        Some(Kind::Stale) => {
            if r.for_seconds < 1 {
                err("forSeconds", "is required for stale rules (seconds without a reading, at least 1)");
            }
        }
        Some(Kind::Anomaly) => {
            if r.threshold.is_some_and(|k| k <= 0.0) {
                err("threshold", "is k, the number of standard deviations, and must be above 0");
            }
            if r.alpha.is_some_and(|a| !(a > 0.0 && a <= 1.0)) {
                err("alpha", "must be above 0 and at most 1");
            }
            if r.warmup_samples.is_some_and(|w| !(2..=100_000).contains(&w)) {
                err("warmupSamples", "must be between 2 and 100000");
            }
        }
        None => err("kind", "must be threshold, rate, stale or anomaly"),
    }
    if !matches!(kind, Some(Kind::Anomaly)) {
        if r.alpha.is_some() {
            err("alpha", "applies to anomaly rules only");
        }
        if r.warmup_samples.is_some() {
            err("warmupSamples", "applies to anomaly rules only");
        }
    }
    if let Some(first) = bad.first() {
        return Err(AppError::BadRequest {
            message: format!("invalid {}: {}", first.field, first.message),
            details: bad,
        });
    }
    Ok(())
}

/// A device of the grower, or 400 naming `deviceId`.
async fn check_device(state: &AppState, grower_id: Uuid, device_id: Option<Uuid>) -> Result<(), AppError> {
    if let Some(d) = device_id {
        let found = access::find_live_device(&state.db, d).await?;
        if found.is_none_or(|dev| dev.grower_id != grower_id) {
            return Err(AppError::invalid_field("deviceId", "is not a device of this grower"));
        }
    }
    Ok(())
}

/// A rule the caller may `need`: 404 when it does not exist or is in a grower they are not in.
async fn visible_rule(state: &AppState, user: &AuthUser, id: Uuid, need: Need) -> Result<rule::Model, AppError> {
    access::require_greenhouses(user)?;
    let r = rule::Entity::find_by_id(id)
        .filter(rule::Column::DeletedAt.is_null())
        .one(&state.db)
        .await?
        .ok_or_else(|| AppError::NotFound("alert rule not found".into()))?;
    access::grower_of(&state.db, user, r.grower_id, need, "alert rule not found").await?;
    Ok(r)
}

/// Creates a rule (members of the grower and ADMIN).
#[utoipa::path(post, path = "/alert-rules", tag = "alerts", security(("bearer" = [])), request_body = RuleIn,
    responses((status = 201, body = RuleOut), (status = 400), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all)]
async fn create_rule(
    State(state): State<AppState>,
    user: AuthUser,
    client: ClientMeta,
    Json(input): Json<RuleIn>,
) -> Result<(StatusCode, Json<RuleOut>), AppError> {
    access::grower(&state.db, &user, input.grower_id, Need::Write).await?;
    let now = state.clock.now();
    let severity = Severity::parse(&input.severity);
    let r = rule::Model {
        id: Uuid::now_v7(),
        grower_id: input.grower_id,
        device_id: input.device_id,
        name: input.name.map(|n| n.trim().to_string()),
        metric: input.metric,
        kind: input.kind,
        op: input.op,
        threshold: input.threshold,
        low: input.low,
        high: input.high,
        for_seconds: input.for_seconds.unwrap_or(0),
        severity: severity.unwrap_or(Severity::Info),
        enabled: input.enabled.unwrap_or(true),
        auto_resolve: input.auto_resolve.unwrap_or(true),
        alpha: input.alpha,
        warmup_samples: input.warmup_samples,
        created_by: Some(user.user_id),
        deleted_at: None,
        created_at: now,
        updated_at: now,
    };
    validate(&r, severity.is_some())?;
    check_device(&state, r.grower_id, r.device_id).await?;
    let txn = state.db.begin_write().await?;
    rule::Entity::insert(r.clone().into_active_model()).exec_without_returning(&txn).await?;
    audit::record(
        &txn,
        Entry::new("alert_rule.create")
            .by(Some(user.user_id))
            .on("alert_rule", r.id)
            .client(&client)
            .details(serde_json::json!({"growerId": r.grower_id, "kind": r.kind, "metric": r.metric})),
    )
    .await?;
    txn.commit().await?;
    super::rules_changed(&state, r.grower_id.into()).await;
    Ok((StatusCode::CREATED, Json(RuleOut::from(&r))))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct RuleQuery {
    /// Only this grower's rules (default: every grower the caller belongs to).
    pub grower_id: Option<String>,
    /// Only rules of this device (rules for all devices included).
    pub device_id: Option<String>,
    pub page: Option<String>,
    pub limit: Option<String>,
}

/// Rules of the caller's growers, oldest first.
#[utoipa::path(get, path = "/alert-rules", tag = "alerts", security(("bearer" = [])), params(RuleQuery),
    responses((status = 200, body = Page<RuleOut>), (status = 400), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all)]
async fn list_rules(
    State(state): State<AppState>,
    user: AuthUser,
    Query(q): Query<RuleQuery>,
) -> Result<Json<Page<RuleOut>>, AppError> {
    let page = ListParams { page: q.page.clone(), limit: q.limit.clone(), cursor: None }.validate()?;
    let mut query = rule::Entity::find().filter(rule::Column::DeletedAt.is_null());
    match crate::http::uuid_param("growerId", q.grower_id.as_deref())? {
        Some(g) => {
            access::grower(&state.db, &user, g, Need::Read).await?;
            query = query.filter(rule::Column::GrowerId.eq(g));
        }
        None => {
            if let Some(growers) = access::visible_growers(&state.db, &user).await? {
                query = query.filter(rule::Column::GrowerId.is_in(growers));
            }
        }
    }
    if let Some(d) = crate::http::uuid_param("deviceId", q.device_id.as_deref())? {
        query = query.filter(rule::Column::DeviceId.eq(d).or(rule::Column::DeviceId.is_null()));
    }
    let (rows, total) = page
        .fetch(&state.db, query, |q| q.order_by_asc(rule::Column::CreatedAt).order_by_asc(rule::Column::Id))
        .await?;
    Ok(Json(Page::new(rows.iter().map(RuleOut::from).collect(), &page, total)))
}

/// Resolves every open alert of a rule (it was disabled or deleted) and enqueues the news.
async fn resolve_open(
    txn: &sea_orm::DatabaseTransaction,
    state: &AppState,
    r: &rule::Model,
    by: Uuid,
    now: DateTime<Utc>,
) -> Result<(), AppError> {
    let open = alert::Entity::find()
        .filter(alert::Column::RuleId.eq(r.id))
        .filter(alert::Column::Status.ne(AlertStatus::Resolved))
        .all(txn)
        .await?;
    let mut changes = Vec::new();
    for a in open {
        if let Some(done) =
            super::transition::transition(txn, a.id.into(), AlertStatus::Resolved, Some(by.into()), now).await?
        {
            changes.push((Change::Resolved, done));
        }
    }
    super::delivery::notify(txn, state, r.grower_id, &changes, None).await?;
    Ok(())
}

/// Changes a rule (members of its grower and ADMIN). The result is validated as a whole.
#[utoipa::path(patch, path = "/alert-rules/{id}", tag = "alerts", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = RulePatch,
    responses((status = 200, body = RuleOut), (status = 400), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all, fields(rule_id = %id))]
async fn update_rule(
    State(state): State<AppState>,
    user: AuthUser,
    client: ClientMeta,
    Path(id): Path<Uuid>,
    Json(p): Json<RulePatch>,
) -> Result<Json<RuleOut>, AppError> {
    let before = visible_rule(&state, &user, id, Need::Write).await?;
    let mut r = before.clone();
    let mut severity_ok = true;
    if let Some(v) = p.device_id {
        r.device_id = v;
    }
    if let Some(v) = p.name {
        r.name = v.map(|n| n.trim().to_string());
    }
    if let Some(v) = p.metric {
        r.metric = v;
    }
    if let Some(v) = p.kind {
        r.kind = v;
    }
    if let Some(v) = p.op {
        r.op = v;
    }
    if let Some(v) = p.threshold {
        r.threshold = v;
    }
    if let Some(v) = p.low {
        r.low = v;
    }
    if let Some(v) = p.high {
        r.high = v;
    }
    if let Some(v) = p.for_seconds {
        r.for_seconds = v;
    }
    if let Some(v) = p.severity {
        match Severity::parse(&v) {
            Some(s) => r.severity = s,
            None => severity_ok = false,
        }
    }
    if let Some(v) = p.enabled {
        r.enabled = v;
    }
    if let Some(v) = p.auto_resolve {
        r.auto_resolve = v;
    }
    if let Some(v) = p.alpha {
        r.alpha = v;
    }
    if let Some(v) = p.warmup_samples {
        r.warmup_samples = v;
    }
    validate(&r, severity_ok)?;
    check_device(&state, r.grower_id, r.device_id).await?;
    let now = state.clock.now();
    r.updated_at = now;
    let redefined =
        engine::Rule::from_model(&r) != engine::Rule::from_model(&before) || r.device_id != before.device_id;
    let txn = state.db.begin_write().await?;
    // Every field written (`into_active_model` alone marks them unchanged and writes nothing),
    // except those a PATCH never changes.
    let mut active = sea_orm::ActiveModelTrait::reset_all(r.clone().into_active_model());
    active.id = sea_orm::ActiveValue::Unchanged(r.id);
    active.created_at = sea_orm::ActiveValue::Unchanged(r.created_at);
    active.created_by = sea_orm::ActiveValue::Unchanged(r.created_by);
    active.grower_id = sea_orm::ActiveValue::Unchanged(r.grower_id);
    active.deleted_at = sea_orm::ActiveValue::Unchanged(None);
    rule::Entity::update(active).exec(&txn).await?;
    if redefined {
        rule_state::Entity::delete_many().filter(rule_state::Column::RuleId.eq(r.id)).exec(&txn).await?;
    }
    if before.enabled && !r.enabled {
        resolve_open(&txn, &state, &r, user.user_id, now).await?;
    }
    audit::record(&txn, Entry::new("alert_rule.update").by(Some(user.user_id)).on("alert_rule", r.id).client(&client))
        .await?;
    txn.commit().await?;
    state.jobs.wake();
    super::rules_changed(&state, r.grower_id.into()).await;
    Ok(Json(RuleOut::from(&r)))
}

/// Deletes a rule (members of its grower and ADMIN); its open alerts are resolved.
#[utoipa::path(delete, path = "/alert-rules/{id}", tag = "alerts", security(("bearer" = [])),
    params(("id" = Uuid, Path)), responses((status = 204), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all, fields(rule_id = %id))]
async fn delete_rule(
    State(state): State<AppState>,
    user: AuthUser,
    client: ClientMeta,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, AppError> {
    let r = visible_rule(&state, &user, id, Need::Write).await?;
    let now = state.clock.now();
    let txn = state.db.begin_write().await?;
    let gone = rule::Entity::update_many()
        .col_expr(rule::Column::DeletedAt, sea_orm::sea_query::Expr::value(Some(now)))
        .col_expr(rule::Column::UpdatedAt, sea_orm::sea_query::Expr::value(now))
        .filter(rule::Column::Id.eq(id))
        .filter(rule::Column::DeletedAt.is_null())
        .exec(&txn)
        .await?;
    if gone.rows_affected == 0 {
        return Err(AppError::NotFound("alert rule not found".into()));
    }
    rule_state::Entity::delete_many().filter(rule_state::Column::RuleId.eq(id)).exec(&txn).await?;
    resolve_open(&txn, &state, &r, user.user_id, now).await?;
    audit::record(&txn, Entry::new("alert_rule.delete").by(Some(user.user_id)).on("alert_rule", id).client(&client))
        .await?;
    txn.commit().await?;
    state.jobs.wake();
    super::rules_changed(&state, r.grower_id.into()).await;
    Ok(StatusCode::NO_CONTENT)
}
