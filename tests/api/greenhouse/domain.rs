//! The greenhouse and telemetry rules as domain functions (called with the state of
//! `spawn_app()`, no HTTP), plus the write-access check of `POST /telemetry/batch` for batches
//! spanning growers and when the check itself fails: a failure is that failure (503 when the
//! database is down), never "not a device you may write to".

use std::collections::HashSet;

use chrono::{Duration, Utc};
use mash::{
    auth::{AuthUser, ClientMeta, Role},
    greenhouse::{
        AccessError, GreenhouseError, MemberRole,
        access::{self, Need},
        devices::desired,
        growers::members,
    },
    http::AppError,
    ids::{GrowerId, UserId},
};
use sea_orm::{
    ConnectionTrait, Statement,
    sea_query::{Alias, Expr, ExprTrait, Query},
};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::helpers::{
    TestApp,
    accounts::{Account, user_with_role},
    assert_error, detail_fields,
    greenhouse::{
        Device, Greenhouse, add_member, bearer, create_device, greenhouse, greenhouse_by, post_batch, reading,
    },
    spawn_app,
};

const BATCH: &str = "/api/v1/telemetry/batch";

fn person(a: &Account, role: Role) -> AuthUser {
    AuthUser { user_id: a.id, session_id: Uuid::now_v7(), role }
}

fn nowhere() -> ClientMeta {
    ClientMeta { ip: None, user_agent: None }
}

async fn stored_readings(app: &TestApp) -> i64 {
    let db = app.state.db.conn();
    let sql = Statement::from_string(db.get_database_backend(), "SELECT COUNT(*) FROM sensor_readings");
    db.query_one_raw(sql).await.unwrap().unwrap().try_get_by_index::<i64>(0).unwrap()
}

/// Two growers (A with a device, B with two), and a GROWER who is a MEMBER of A only.
struct TwoGrowers {
    a: Greenhouse,
    b: Greenhouse,
    in_a: Device,
    in_b: Device,
    also_in_b: Device,
    member_of_a: Account,
}

async fn two_growers(app: &TestApp) -> TwoGrowers {
    let a = greenhouse(app).await;
    let b = greenhouse_by(app, &a.admin).await;
    let in_a = create_device(app, &a.owner, a.grower_id, "a").await;
    let in_b = create_device(app, &b.owner, b.grower_id, "b").await;
    let also_in_b = create_device(app, &b.owner, b.grower_id, "b2").await;
    let member_of_a = user_with_role(app, "member", "GROWER").await;
    assert_eq!(add_member(app, &a.owner, a.grower_id, member_of_a.id, "MEMBER").await.status(), 201);
    TwoGrowers { a, b, in_a, in_b, also_in_b, member_of_a }
}

#[tokio::test]
async fn a_batch_spanning_growers_is_refused_naming_each_device_outside_the_callers_growers() {
    let app = spawn_app().await;
    let g = two_growers(&app).await;
    let t = Utc::now() - Duration::minutes(5);
    let unknown = Uuid::now_v7();
    let body = json!([
        reading(g.in_a.id, "air.temp", 1.0, t),
        reading(g.in_b.id, "air.temp", 2.0, t),
        reading(g.in_a.id, "air.temp", 3.0, t + Duration::seconds(1)),
        reading(g.in_b.id, "air.temp", 4.0, t + Duration::seconds(1)),
        reading(unknown, "air.temp", 5.0, t),
        reading(g.also_in_b.id, "air.temp", 6.0, t),
    ]);

    // The member of A may write A's device only: B's devices and the unknown one are named, each
    // once, by its first item; nothing is stored, not even A's readings.
    let err = assert_error(post_batch(&app, &bearer(&g.member_of_a), &body).await, 403, BATCH).await;
    assert_eq!(detail_fields(&err), ["items[1].deviceId", "items[4].deviceId", "items[5].deviceId"], "{err}");
    assert_eq!(err["message"], "items[1].deviceId: not a device you may write to; nothing was stored", "{err}");
    assert_eq!(stored_readings(&app).await, 0);

    // B's owner is refused A's device (and the unknown one).
    let err = assert_error(post_batch(&app, &bearer(&g.b.owner), &body).await, 403, BATCH).await;
    assert_eq!(detail_fields(&err), ["items[0].deviceId", "items[4].deviceId"], "{err}");

    // A member of both growers may write all of them; an admin too.
    assert_eq!(add_member(&app, &g.b.owner, g.b.grower_id, g.member_of_a.id, "MEMBER").await.status(), 201);
    let known = json!([body[0], body[1], body[2], body[3], body[5]]);
    let res = post_batch(&app, &bearer(&g.member_of_a), &known).await;
    assert_eq!(res.status(), 202);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({ "accepted": 5, "duplicates": 0 }));
    let res = post_batch(&app, &bearer(&g.a.admin), &known).await;
    assert_eq!(res.json::<Value>().await.unwrap(), json!({ "accepted": 0, "duplicates": 5 }));
}

#[tokio::test]
async fn writable_growers_are_the_callers_growers_in_one_answer() {
    let app = spawn_app().await;
    let g = two_growers(&app).await;
    let both: HashSet<GrowerId> = [GrowerId(g.a.grower_id), GrowerId(g.b.grower_id)].into();
    let db = &app.state.db;

    let member = person(&g.member_of_a, Role::Grower);
    let writable = access::writable_growers(db, &member, &both).await.unwrap();
    assert_eq!(writable, [GrowerId(g.a.grower_id)].into());
    let admin = person(&g.a.admin, Role::Admin);
    assert_eq!(access::writable_growers(db, &admin, &both).await.unwrap(), both);
    let customer = person(&g.member_of_a, Role::Customer);
    assert!(matches!(access::writable_growers(db, &customer, &both).await, Err(AccessError::NoGreenhouses)));

    // The same standing as the single-grower check.
    assert!(access::grower(db, &member, g.a.grower_id, Need::Write).await.is_ok());
    assert!(matches!(access::grower(db, &member, g.a.grower_id, Need::Manage).await, Err(AccessError::OwnersOnly)));
    assert!(matches!(access::grower(db, &member, g.b.grower_id, Need::Read).await, Err(AccessError::NotFound(_))));
}

#[tokio::test]
async fn a_database_outage_while_checking_write_access_is_a_503_not_a_403() {
    let app = spawn_app().await;
    let g = two_growers(&app).await;
    let body = json!([reading(g.in_a.id, "air.temp", 1.0, Utc::now() - Duration::minutes(1))]);
    app.state.db.close().await.unwrap();

    let growers: HashSet<GrowerId> = [GrowerId(g.a.grower_id)].into();
    let err = access::writable_growers(&app.state.db, &person(&g.member_of_a, Role::Grower), &growers).await;
    let Err(err @ AccessError::Db(_)) = err else { panic!("an outage is an error, not an answer: {err:?}") };
    assert_eq!(AppError::from(err).status().as_u16(), 503);

    let err = assert_error(post_batch(&app, &bearer(&g.member_of_a), &body).await, 503, BATCH).await;
    assert_eq!(err["details"], Value::Null, "{err}");
}

#[tokio::test]
async fn a_failing_membership_lookup_is_an_error_not_a_refusal() {
    let app = spawn_app().await;
    let g = two_growers(&app).await;
    let body = json!([reading(g.in_a.id, "air.temp", 1.0, Utc::now() - Duration::minutes(1))]);
    // The devices' growers are still found; only the membership lookup fails.
    let db = app.state.db.conn();
    db.execute_unprepared("ALTER TABLE grower_members RENAME TO grower_members_away").await.unwrap();
    let res = post_batch(&app, &bearer(&g.member_of_a), &body).await;
    db.execute_unprepared("ALTER TABLE grower_members_away RENAME TO grower_members").await.unwrap();
    assert_error(res, 500, BATCH).await;
    assert_eq!(stored_readings(&app).await, 0);
    assert_eq!(post_batch(&app, &bearer(&g.member_of_a), &body).await.status(), 202);
}

#[tokio::test]
async fn desired_state_goes_up_one_version_per_change_and_honours_if_version() {
    let app = spawn_app().await;
    let g = two_growers(&app).await;
    let member = person(&g.member_of_a, Role::Grower);
    let client = nowhere();
    let doc = |v: Value| -> Map<String, Value> { v.as_object().unwrap().clone() };
    let replace = |body| desired::replace(&app.state, &member, &client, g.in_a.id, body);

    let d = replace(doc(json!({ "fan": "on" }))).await.unwrap();
    assert_eq!((d.document.clone(), d.version), (json!({ "fan": "on" }), 1));
    // The same document again changes nothing.
    assert_eq!(replace(doc(json!({ "fan": "on", "ifVersion": 1 }))).await.unwrap().version, 1);
    let stale = replace(doc(json!({ "fan": "off", "ifVersion": 0 }))).await;
    assert!(matches!(stale, Err(GreenhouseError::VersionMismatch { current: 1, expected: 0 })), "{stale:?}");
    assert_eq!(replace(doc(json!({ "fan": "off", "ifVersion": 1 }))).await.unwrap().version, 2);
    let bad = replace(doc(json!({ "ifVersion": -1 }))).await;
    assert!(matches!(bad, Err(GreenhouseError::Invalid { field: "ifVersion", .. })), "{bad:?}");

    // Not a device of the caller's growers: as if it did not exist.
    let foreign = desired::replace(&app.state, &member, &client, g.in_b.id, doc(json!({}))).await;
    assert!(matches!(foreign, Err(GreenhouseError::Access(AccessError::NotFound(_)))), "{foreign:?}");
}

#[tokio::test]
async fn a_grower_keeps_an_owner_unless_an_admin_changes_it() {
    let app = spawn_app().await;
    let g = two_growers(&app).await;
    let (db, grower) = (&app.state.db, GrowerId(g.a.grower_id));
    let owner = person(&g.a.owner, Role::Grower);
    let me = UserId(g.a.owner.id);

    let demote = members::change_role(db, &owner, &nowhere(), grower, me, MemberRole::Member).await;
    assert!(matches!(demote, Err(GreenhouseError::LastOwner)), "{demote:?}");
    let leave = members::remove(db, &owner, &nowhere(), grower, me).await;
    assert!(matches!(leave, Err(GreenhouseError::LastOwner)), "{leave:?}");

    // With a second owner, the first may step down.
    let other = UserId(g.member_of_a.id);
    let (m, _) = members::change_role(db, &owner, &nowhere(), grower, other, MemberRole::Owner).await.unwrap();
    assert_eq!(m.role, MemberRole::Owner);
    members::remove(db, &owner, &nowhere(), grower, me).await.unwrap();

    // An admin may leave a grower without owners.
    let admin = person(&g.a.admin, Role::Admin);
    members::change_role(db, &admin, &nowhere(), grower, other, MemberRole::Member).await.unwrap();
    let again = members::add(db, &admin, &nowhere(), grower, other, MemberRole::Owner).await;
    assert!(matches!(again, Err(GreenhouseError::AlreadyMember)), "{again:?}");
}

#[tokio::test]
async fn the_database_refuses_a_member_role_outside_the_enum() {
    let app = spawn_app().await;
    let g = two_growers(&app).await;
    let db = &app.state.db;
    let table = || Alias::new("grower_members");
    let outsider = user_with_role(&app, "outsider", "GROWER").await;
    let insert = Query::insert()
        .into_table(table())
        .columns([Alias::new("grower_id"), Alias::new("user_id"), Alias::new("role"), Alias::new("created_at")])
        .values_panic([g.a.grower_id.into(), outsider.id.into(), "BOSS".into(), Utc::now().into()])
        .to_owned();
    assert!(db.execute(&insert).await.is_err(), "a role outside OWNER/MEMBER was stored");
    let set_role = |role: &str| {
        Query::update()
            .table(table())
            .value(Alias::new("role"), role)
            .and_where(Expr::col(Alias::new("user_id")).eq(g.member_of_a.id))
            .to_owned()
    };
    assert!(db.execute(&set_role("owner")).await.is_err(), "a role outside OWNER/MEMBER was stored");
    let stored = access::member_role(db, GrowerId(g.a.grower_id), UserId(g.member_of_a.id)).await.unwrap();
    assert_eq!(stored, Some(MemberRole::Member));
    // The enum's own values still go in.
    assert_eq!(db.execute(&set_role("OWNER")).await.unwrap().rows_affected(), 1);
}
