//! The alert domain's functions called directly, without HTTP, on the state of a real app:
//! the one status transition (and what a person's acknowledge and resolve add to it), a rule's
//! lifecycle through its domain functions, and the database refusing values outside the closed
//! sets (the CHECKs of `m20261206_000010`).
//!
//! The grower, device and user rows are written with sea-query, by table and column name, so
//! these tests lean on nothing of other domains but their schema.

use chrono::Utc;
use mash::{
    alerts::{
        AlertError, RuleError,
        entity::{AlertStatus, Kind, Op, Severity, alert, rule_state},
        rules::{RulePatch, RuleSpec, create::create, update::update},
        transition::{by_person, transition},
    },
    auth::ClientMeta,
    ids::{AlertId, DeviceId, GrowerId, UserId},
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter,
    sea_query::{Alias, Query, Value},
};
use uuid::Uuid;

use crate::helpers::{TestApp, spawn_app_with};

/// A grower with one member and one device.
struct Setup {
    app: TestApp,
    user: UserId,
    grower: GrowerId,
    device: DeviceId,
}

async fn insert(app: &TestApp, table: &str, row: Vec<(&str, Value)>) {
    let (columns, values): (Vec<_>, Vec<_>) = row.into_iter().map(|(c, v)| (Alias::new(c), v.into())).unzip();
    let stmt = Query::insert().into_table(Alias::new(table)).columns(columns).values_panic(values).to_owned();
    app.state.db.execute(&stmt).await.unwrap_or_else(|e| panic!("insert into {table}: {e}"));
}

async fn setup() -> Setup {
    let app = spawn_app_with(&[("JOB_CONCURRENCY", "0")], axum::Router::new()).await;
    let (user, grower, device) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let now = Utc::now();
    let email = format!("grower-{}@example.com", user.simple());
    insert(
        &app,
        "users",
        vec![
            ("id", user.into()),
            ("email", email.into()),
            ("name", "Grower".into()),
            ("role", "GROWER".into()),
            ("email_verified", true.into()),
            ("mfa_enabled", false.into()),
            ("created_at", now.into()),
            ("updated_at", now.into()),
        ],
    )
    .await;
    let grower_row = vec![("id", grower.into()), ("name", "Glasshouse".into()), ("created_at", now.into())];
    insert(&app, "growers", [grower_row, vec![("updated_at", now.into())]].concat()).await;
    insert(
        &app,
        "devices",
        vec![
            ("id", device.into()),
            ("grower_id", grower.into()),
            ("name", "sensor".into()),
            ("token_id", device.simple().to_string().into()),
            ("token_hash", "0".repeat(64).into()),
            ("desired", serde_json::json!({}).into()),
        ],
    )
    .await;
    Setup { app, user: user.into(), grower: grower.into(), device: device.into() }
}

fn client() -> ClientMeta {
    ClientMeta { ip: None, user_agent: Some("alerts-domain-test".into()) }
}

fn threshold(device: Option<DeviceId>) -> RuleSpec {
    RuleSpec {
        device_id: device.map(Uuid::from),
        name: Some("  too hot  ".into()),
        metric: "temp".into(),
        kind: Kind::Threshold,
        op: Some(Op::Gt),
        threshold: Some(30.0),
        low: None,
        high: None,
        for_seconds: 0,
        severity: "critical".into(),
        enabled: true,
        auto_resolve: true,
        alpha: None,
        warmup_samples: None,
    }
}

/// An open alert of `rule` on the setup's device, written as the evaluator would.
async fn open_alert(s: &Setup, rule: Uuid) -> AlertId {
    let now = s.app.state.clock.now();
    let a = alert::Model {
        id: Uuid::now_v7(),
        grower_id: s.grower.into(),
        device_id: s.device.into(),
        rule_id: rule,
        metric: "temp".into(),
        severity: Severity::Critical,
        status: AlertStatus::Active,
        message: "temp is 31 (above 30)".into(),
        value: 31.0,
        count: 1,
        created_at: now,
        last_seen_at: now,
        acknowledged_at: None,
        acknowledged_by: None,
        resolved_at: None,
        resolved_by: None,
        updated_at: now,
    };
    alert::Entity::insert(a.clone().into_active_model()).exec_without_returning(&s.app.state.db).await.unwrap();
    a.id.into()
}

async fn audits(s: &Setup, action: &str) -> u64 {
    mash::audit::entity::Entity::find()
        .filter(mash::audit::entity::Column::Action.eq(action))
        .count(&s.app.state.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn an_alert_moves_forward_once_and_never_back_to_active() {
    let s = setup().await;
    let rule = create(&s.app.state, s.grower, threshold(None), s.user, &client()).await.expect("a sound rule");
    let id = open_alert(&s, rule.id).await;
    let db = &s.app.state.db;
    let now = s.app.state.clock.now();

    let acked = transition(db, id, AlertStatus::Acknowledged, Some(s.user), now).await.unwrap().expect("moved");
    assert_eq!(acked.status, AlertStatus::Acknowledged);
    assert_eq!((acked.acknowledged_at, acked.acknowledged_by), (Some(now), Some(s.user.into())));
    assert_eq!(transition(db, id, AlertStatus::Acknowledged, Some(s.user), now).await.unwrap(), None, "twice");
    assert_eq!(transition(db, id, AlertStatus::Active, None, now).await.unwrap(), None, "nothing goes back");

    // The rule resolving it (no person) is a move too.
    let resolved = transition(db, id, AlertStatus::Resolved, None, now).await.unwrap().expect("moved");
    assert_eq!((resolved.status, resolved.resolved_by), (AlertStatus::Resolved, None));
    for to in [AlertStatus::Acknowledged, AlertStatus::Resolved, AlertStatus::Active] {
        assert_eq!(transition(db, id, to, Some(s.user), now).await.unwrap(), None, "resolved is final ({to:?})");
    }
    let stored = alert::Entity::find_by_id(id).one(db).await.unwrap().unwrap();
    assert_eq!(stored, resolved, "what a move answers is what is stored");
}

#[tokio::test]
async fn a_person_acknowledging_twice_changes_nothing_and_a_resolved_alert_refuses_both_moves() {
    let s = setup().await;
    let rule = create(&s.app.state, s.grower, threshold(None), s.user, &client()).await.unwrap();
    let id = open_alert(&s, rule.id).await;
    let state = &s.app.state;

    let first = by_person(state, id, AlertStatus::Acknowledged, s.user, &client()).await.unwrap();
    let again = by_person(state, id, AlertStatus::Acknowledged, s.user, &client()).await.unwrap();
    assert_eq!(again, first, "acknowledging an acknowledged alert answers it as it is");
    assert_eq!(audits(&s, "alert.acknowledge").await, 1, "and records nothing more");

    let resolved = by_person(state, id, AlertStatus::Resolved, s.user, &client()).await.unwrap();
    assert_eq!((resolved.status, resolved.resolved_by), (AlertStatus::Resolved, Some(s.user.into())));
    assert_eq!(audits(&s, "alert.resolve").await, 1);
    for to in [AlertStatus::Acknowledged, AlertStatus::Resolved] {
        let refused = by_person(state, id, to, s.user, &client()).await;
        assert!(matches!(refused, Err(AlertError::AlreadyResolved)), "{to:?}: {refused:?}");
    }
    let missing = by_person(state, Uuid::now_v7().into(), AlertStatus::Resolved, s.user, &client()).await;
    assert!(matches!(missing, Err(AlertError::NotFound)), "{missing:?}");
    // Each move was announced with the transaction that made it: acknowledged, then resolved.
    let published = mash::jobs::entity::Entity::find()
        .filter(mash::jobs::entity::Column::JobType.eq("publish_alert_events"))
        .count(&state.db)
        .await
        .unwrap();
    assert_eq!(published, 2);
}

#[tokio::test]
async fn a_rule_is_checked_as_a_whole_and_disabling_it_resolves_its_open_alerts() {
    let s = setup().await;
    let state = &s.app.state;
    let rule = create(state, s.grower, threshold(Some(s.device)), s.user, &client()).await.unwrap();
    assert_eq!((rule.name.as_deref(), rule.severity), (Some("too hot"), Severity::Critical));

    // A device of another grower is refused; so is a rule with several problems, each named.
    let elsewhere = create(state, Uuid::now_v7().into(), threshold(Some(s.device)), s.user, &client()).await;
    assert!(matches!(elsewhere, Err(RuleError::DeviceNotInGrower)), "{elsewhere:?}");
    let patch = RulePatch { severity: Some("loud".into()), op: Some(None), ..RulePatch::default() };
    match update(state, rule.clone(), patch, s.user, &client()).await {
        Err(RuleError::Invalid(details)) => {
            let fields: Vec<&str> = details.iter().map(|d| d.field.as_str()).collect();
            assert_eq!(fields, ["severity", "op"]);
        }
        other => panic!("{other:?}"),
    }

    // A new threshold is a new definition: the rule's own state starts afresh.
    let state_row = rule_state::Model {
        rule_id: rule.id,
        device_id: s.device.into(),
        breach_since: Some(Utc::now()),
        mean: 0.0,
        variance: 0.0,
        samples: 3,
        updated_at: Utc::now(),
    };
    rule_state::Entity::insert(state_row.into_active_model()).exec_without_returning(&state.db).await.unwrap();
    let patch = RulePatch { threshold: Some(Some(35.0)), ..RulePatch::default() };
    let rule = update(state, rule, patch, s.user, &client()).await.unwrap();
    assert_eq!(rule.threshold, Some(35.0));
    let states = rule_state::Entity::find().filter(rule_state::Column::RuleId.eq(rule.id)).count(&state.db);
    assert_eq!(states.await.unwrap(), 0);

    let id = open_alert(&s, rule.id).await;
    let patch = RulePatch { enabled: Some(false), ..RulePatch::default() };
    let rule = update(state, rule, patch, s.user, &client()).await.unwrap();
    assert!(!rule.enabled);
    let a = alert::Entity::find_by_id(id).one(&state.db).await.unwrap().unwrap();
    assert_eq!((a.status, a.resolved_by), (AlertStatus::Resolved, Some(s.user.into())));
}

#[tokio::test]
async fn the_database_refuses_values_outside_the_closed_sets() {
    let s = setup().await;
    let db = &s.app.state.db;
    let rule = create(&s.app.state, s.grower, threshold(None), s.user, &client()).await.unwrap();
    let alert = Uuid::from(open_alert(&s, rule.id).await);
    mash::jobs::enqueue(db, &mash::jobs::Noop {}).await.unwrap();
    mash::alerts::delivery::record_delivery(
        &s.app.state,
        1,
        Some(alert),
        mash::alerts::entity::Channel::Email,
        "someone@example.com",
        mash::alerts::entity::DeliveryStatus::Logged,
        None,
    )
    .await;
    // One rule, one alert, one job and one delivery in the database: no WHERE needed.
    let refused = [
        "UPDATE alerts SET status = 'snoozed'",
        "UPDATE alerts SET severity = 'loud'",
        "UPDATE alert_rules SET kind = 'sometimes'",
        "UPDATE alert_rules SET op = 'between'",
        "UPDATE alert_rules SET severity = 'CRITICAL'",
        "UPDATE background_jobs SET status = 'paused'",
        "UPDATE notification_deliveries SET channel = 'sms'",
        "UPDATE notification_deliveries SET status = 'bounced'",
    ];
    for sql in refused {
        assert!(db.execute_unprepared(sql).await.is_err(), "refused: {sql}");
    }
    let allowed = [
        "UPDATE alerts SET status = 'acknowledged', message = 'still hot'",
        "UPDATE alert_rules SET op = NULL",
        "UPDATE background_jobs SET status = 'dead'",
        "UPDATE notification_deliveries SET target = 'someone-else@example.com'",
    ];
    for sql in allowed {
        db.execute_unprepared(sql).await.unwrap_or_else(|e| panic!("allowed: {sql}: {e}"));
    }
    let a = alert::Entity::find_by_id(alert).one(db).await.unwrap().unwrap();
    assert_eq!((a.status, a.message.as_str()), (AlertStatus::Acknowledged, "still hot"));
}
