//! The audit trail of sign-in events, and races: concurrent registrations, concurrent use of
//! one refresh token, concurrent logins from one new device, and rows written together.

use mash::{audit::entity as audit_log, users::entity::user};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    accounts::{
        LOCALHOST, PASSWORD, assert_audited, audit_rows, json_of, login, login_ok, me_status, post_json, refresh,
        register, sid, unique_email,
    },
    spawn_app,
};

// ---------------------------------------------------------------------------------------------
// Audit trail
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn sign_in_events_are_audited() {
    let app = spawn_app().await;
    let a = register(&app, "audit").await;

    let s = login_ok(&app, &a.email, PASSWORD).await;
    let rows = assert_audited(&app, "auth.login", a.id).await;
    assert!(rows.iter().any(|r| r.resource_id.as_deref() == Some(sid(&s.access).as_str())), "{rows:?}");

    assert_eq!(login(&app, &a.email, "a wrong password").await.status(), 401);
    let failed = assert_audited(&app, "auth.login_failed", a.id).await;
    assert_eq!(failed.len(), 1);
    // An unknown email is recorded too, without a user.
    assert_eq!(login(&app, "ghost@example.com", "a wrong password").await.status(), 401);
    let all_failed = audit_rows(&app, "auth.login_failed").await;
    assert_eq!(all_failed.len(), 2);
    assert!(all_failed.iter().any(|r| r.user_id.is_none() && r.ip_address.as_deref() == Some(LOCALHOST)));

    assert_eq!(post_json(&app, "/api/v1/auth/logout", json!({ "refreshToken": s.refresh })).await.status(), 204);
    let rows = assert_audited(&app, "auth.logout", a.id).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].resource_id.as_deref(), Some(sid(&s.access).as_str()));

    let r = json_of(refresh(&app, &a.refresh).await, 200).await;
    assert!(r["refreshToken"].is_string());
    assert_eq!(refresh(&app, &a.refresh).await.status(), 401);
    let rows = assert_audited(&app, "auth.refresh_reuse", a.id).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].resource_id.as_deref(), Some(sid(&a.access).as_str()));
}

// ---------------------------------------------------------------------------------------------
// Races
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_registrations_of_one_email_make_one_account() {
    let app = spawn_app().await;
    let email = unique_email("race");
    let attempts = (0..6).map(|i| {
        post_json(
            &app,
            "/api/v1/auth/register",
            json!({ "email": email, "password": PASSWORD, "name": format!("R{i}") }),
        )
    });
    let statuses: Vec<u16> =
        futures_util::future::join_all(attempts).await.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 201 || *s == 409), "{statuses:?}");
    let n = user::Entity::find().filter(user::Column::Email.eq(email.as_str())).count(&app.state.db).await.unwrap();
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_refresh_token_used_concurrently_never_forks_the_session() {
    let app = spawn_app().await;
    let a = register(&app, "fork").await;
    let attempts = (0..5).map(|_| refresh(&app, &a.refresh));
    let responses = futures_util::future::join_all(attempts).await;
    let mut winners = Vec::new();
    for res in responses {
        match res.status().as_u16() {
            200 => winners.push(res.json::<Value>().await.unwrap()),
            401 => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert!(winners.len() <= 1, "two live chains from one token: {winners:?}");
    // The losers were reuse: the session is over, whoever won.
    for w in &winners {
        assert_eq!(refresh(&app, w["refreshToken"].as_str().unwrap()).await.status(), 401);
        assert_eq!(me_status(&app, w["accessToken"].as_str().unwrap()).await, 401);
    }
    assert_eq!(me_status(&app, &a.access).await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_logins_from_one_new_device_all_succeed() {
    let app = spawn_app().await;
    let a = register(&app, "device-race").await;
    for round in 0..3 {
        let device = format!("phone-{round}");
        let attempts = (0..6).map(|_| {
            post_json(
                &app,
                "/api/v1/auth/login",
                json!({ "email": a.email, "password": PASSWORD, "deviceId": device, "deviceName": "Phone" }),
            )
        });
        let statuses: Vec<u16> =
            futures_util::future::join_all(attempts).await.iter().map(|r| r.status().as_u16()).collect();
        assert!(statuses.iter().all(|s| *s == 200), "round {round}: {statuses:?}");
    }
    let n = mash::auth::entity::user_device::Entity::find()
        .filter(mash::auth::entity::user_device::Column::UserId.eq(a.id))
        .count(&app.state.db)
        .await
        .unwrap();
    assert_eq!(n, 3, "one row per device");
}

/// What `db::insert_together` promises the login's session write: rows that refer to each
/// other go in together (one statement on PostgreSQL), and when one of them fails none is
/// written.
#[tokio::test]
async fn rows_written_together_are_all_written_or_none() {
    use mash::{
        audit::Entry,
        auth::entity::{refresh_token, session},
    };
    use sea_orm::{ActiveValue::Set, QueryTrait};

    let app = spawn_app().await;
    let account = register(&app, "together").await;
    let db = &app.state.db;
    let now = chrono::Utc::now();
    let session_row = |id: Uuid| {
        session::Entity::insert(session::ActiveModel {
            id: Set(id),
            user_id: Set(account.id),
            user_device_id: Set(None),
            ip_address: Set(None),
            user_agent: Set(None),
            created_at: Set(now),
            last_used_at: Set(now),
            expires_at: Set(now + chrono::Duration::days(1)),
            revoked_at: Set(None),
            revoked_reason: Set(None),
        })
        .into_query()
    };
    let refresh_row = |session_id: Uuid| {
        refresh_token::Entity::insert(refresh_token::ActiveModel {
            id: Set(Uuid::now_v7()),
            session_id: Set(session_id),
            user_id: Set(account.id),
            token_hash: Set(Uuid::now_v7().simple().to_string()),
            created_at: Set(now),
            expires_at: Set(now + chrono::Duration::days(1)),
            used_at: Set(None),
        })
        .into_query()
    };
    let refresh_count = |session_id: Uuid| {
        refresh_token::Entity::find().filter(refresh_token::Column::SessionId.eq(session_id)).count(db)
    };

    // A refresh token that refers to the session written in the same call: its foreign key holds.
    let first = Uuid::now_v7();
    let (audit_id, audit_row) = mash::audit::insert(Entry::new("test.together").by(Some(account.id)));
    db.insert_together(vec![session_row(first), refresh_row(first), audit_row.clone()])
        .await
        .expect("rows that refer to each other go in together");
    assert!(session::Entity::find_by_id(first).one(db).await.unwrap().is_some());
    assert_eq!(refresh_count(first).await.unwrap(), 1);
    assert!(audit_log::Entity::find_by_id(audit_id).one(db).await.unwrap().is_some());

    // The last row fails (its audit id is taken now): the session and token before it are not written.
    let second = Uuid::now_v7();
    let failed = db.insert_together(vec![session_row(second), refresh_row(second), audit_row]).await;
    assert!(failed.is_err(), "a duplicate primary key fails the whole write");
    assert!(session::Entity::find_by_id(second).one(db).await.unwrap().is_none(), "no session without its siblings");
    assert_eq!(refresh_count(second).await.unwrap(), 0);

    // A refresh token for a session that exists nowhere fails, and takes the session beside it along.
    let third = Uuid::now_v7();
    let failed = db.insert_together(vec![session_row(third), refresh_row(Uuid::now_v7())]).await;
    assert!(failed.is_err(), "the foreign key is still checked");
    assert!(session::Entity::find_by_id(third).one(db).await.unwrap().is_none());
}
