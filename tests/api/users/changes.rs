//! Admin changes to a user (role, disable, soft delete) and the sessions they end, and the
//! rule that no user JSON ever carries a secret.

use mash::users::entity::user;
use reqwest::Method;
use sea_orm::EntityTrait;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    accounts::{
        LOCALHOST, PASSWORD, admin, assert_no_secrets, assert_user_clean, audit_rows, authed, get_authed, json_of,
        jwt_part, login, login_ok, me_status, post_json, register, send_json,
    },
    assert_error, ids, spawn_app,
};

use super::{list, refresh_status};

// ---------------------------------------------------------------------------------------------
// Admin: changes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn role_change_ends_the_users_sessions() {
    let app = spawn_app().await;
    let boss = admin(&app).await;
    let t = register(&app, "promote").await;
    let path = format!("/api/v1/users/{}", t.id);

    let got = json_of(get_authed(&app, &path, &boss.access).await, 200).await;
    assert_eq!(got["id"], t.id.to_string());
    assert_user_clean(&got, PASSWORD);

    let res = send_json(&app, Method::PATCH, &path, &boss.access, json!({ "role": "GROWER" })).await;
    let body = json_of(res, 200).await;
    assert_eq!(body["role"], "GROWER");
    assert_user_clean(&body, PASSWORD);
    // The old token carried the old role: it stops working at once, and so does its refresh.
    assert_eq!(me_status(&app, &t.access).await, 401);
    assert_eq!(refresh_status(&app, &t.refresh).await, 401);
    let again = login_ok(&app, &t.email, PASSWORD).await;
    assert_eq!(jwt_part(&again.access, 1)["role"], "GROWER");
    let me = json_of(get_authed(&app, "/api/v1/users/me", &again.access).await, 200).await;
    assert_eq!(me["role"], "GROWER");

    // Setting the same role again ends nothing.
    let res = send_json(&app, Method::PATCH, &path, &boss.access, json!({ "role": "GROWER" })).await;
    json_of(res, 200).await;
    assert_eq!(me_status(&app, &again.access).await, 200);
    // A rename alone ends nothing either.
    let res = send_json(&app, Method::PATCH, &path, &boss.access, json!({ "name": "Renamed" })).await;
    assert_eq!(json_of(res, 200).await["name"], "Renamed");
    assert_eq!(me_status(&app, &again.access).await, 200);

    // Bad input and unknown users.
    let res = send_json(&app, Method::PATCH, &path, &boss.access, json!({ "role": "admin" })).await;
    let body = assert_error(res, 400, &path).await;
    assert_eq!(body["details"][0]["field"], "role", "{body}");
    let res = send_json(&app, Method::PATCH, &path, &boss.access, json!({ "passwordHash": "x" })).await;
    assert_error(res, 400, &path).await;
    let res = send_json(&app, Method::PATCH, &path, &boss.access, json!({ "name": "   " })).await;
    let body = assert_error(res, 400, &path).await;
    assert_eq!(body["details"][0]["field"], "name", "{body}");
    let missing = format!("/api/v1/users/{}", Uuid::now_v7());
    let res = send_json(&app, Method::PATCH, &missing, &boss.access, json!({ "name": "x" })).await;
    assert_error(res, 404, &missing).await;
    assert_error(get_authed(&app, &missing, &boss.access).await, 404, &missing).await;
    let res = get_authed(&app, "/api/v1/users/not-a-uuid", &boss.access).await;
    assert_error(res, 400, "/api/v1/users/not-a-uuid").await;

    // Audited: by the admin, on the user, from the client's address.
    let rows = audit_rows(&app, "user.role_changed").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].user_id, Some(boss.id));
    assert_eq!(rows[0].resource_id.as_deref(), Some(t.id.to_string().as_str()));
    assert_eq!(rows[0].ip_address.as_deref(), Some(LOCALHOST));
    let d = rows[0].details.clone().unwrap();
    assert_eq!((d["from"].as_str(), d["to"].as_str()), (Some("CUSTOMER"), Some("GROWER")));
}

#[tokio::test]
async fn disabling_a_user_ends_their_sessions_and_sign_in() {
    let app = spawn_app().await;
    let boss = admin(&app).await;
    let t = register(&app, "disable").await;
    let path = format!("/api/v1/users/{}", t.id);

    let res = send_json(&app, Method::PATCH, &path, &boss.access, json!({ "disabled": true })).await;
    let body = json_of(res, 200).await;
    assert_eq!(body["disabled"], true);
    assert_error(get_authed(&app, "/api/v1/users/me", &t.access).await, 401, "/api/v1/users/me").await;
    assert_eq!(refresh_status(&app, &t.refresh).await, 401);
    let res = login(&app, &t.email, PASSWORD).await;
    let refused = assert_error(res, 401, "/api/v1/auth/login").await;
    let wrong = assert_error(login(&app, &t.email, "wrong password x").await, 401, "/api/v1/auth/login").await;
    assert_eq!(refused["message"], wrong["message"], "a disabled account looks like bad credentials");
    // Still listed (disabled, not deleted), and shown as disabled.
    let got = json_of(get_authed(&app, &path, &boss.access).await, 200).await;
    assert_eq!(got["disabled"], true);

    // Enabled again: the same password signs in.
    let res = send_json(&app, Method::PATCH, &path, &boss.access, json!({ "disabled": false })).await;
    assert_eq!(json_of(res, 200).await["disabled"], false);
    let back = login_ok(&app, &t.email, PASSWORD).await;
    assert_eq!(me_status(&app, &back.access).await, 200);

    // Admins cannot disable or demote themselves.
    let own = format!("/api/v1/users/{}", boss.id);
    for body in [json!({ "disabled": true }), json!({ "role": "CUSTOMER" })] {
        let res = send_json(&app, Method::PATCH, &own, &boss.access, body).await;
        assert_error(res, 422, &own).await;
    }
    assert_eq!(me_status(&app, &boss.access).await, 200);

    let rows = audit_rows(&app, "user.disabled").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].user_id, Some(boss.id));
    assert_eq!(rows[0].resource_id.as_deref(), Some(t.id.to_string().as_str()));
    assert_eq!(rows[0].ip_address.as_deref(), Some(LOCALHOST));
    assert_eq!(audit_rows(&app, "user.enabled").await.len(), 1);
}

#[tokio::test]
async fn deleting_a_user_is_a_soft_delete_that_ends_everything() {
    let app = spawn_app().await;
    let boss = admin(&app).await;
    let t = register(&app, "delete").await;
    let path = format!("/api/v1/users/{}", t.id);

    let res = authed(&app, Method::DELETE, &path, &boss.access).send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert_error(get_authed(&app, &path, &boss.access).await, 404, &path).await;
    let res = authed(&app, Method::DELETE, &path, &boss.access).send().await.unwrap();
    assert_error(res, 404, &path).await;
    let res = send_json(&app, Method::PATCH, &path, &boss.access, json!({ "name": "zombie" })).await;
    assert_error(res, 404, &path).await;
    assert_eq!(me_status(&app, &t.access).await, 401);
    assert_eq!(refresh_status(&app, &t.refresh).await, 401);
    assert_eq!(login(&app, &t.email, PASSWORD).await.status(), 401);
    let body = list(&app, &boss.access, "").await;
    assert!(!ids(&body).contains(&t.id.to_string()));
    // Soft: the row is still there, marked deleted; the email stays reserved.
    let row = user::Entity::find_by_id(t.id).one(&app.state.db).await.unwrap().expect("row kept");
    assert!(row.deleted_at.is_some());
    let res =
        post_json(&app, "/api/v1/auth/register", json!({ "email": t.email, "password": PASSWORD, "name": "Again" }))
            .await;
    assert_error(res, 409, "/api/v1/auth/register").await;

    // Admins cannot delete themselves.
    let own = format!("/api/v1/users/{}", boss.id);
    let res = authed(&app, Method::DELETE, &own, &boss.access).send().await.unwrap();
    assert_error(res, 422, &own).await;
    assert_eq!(me_status(&app, &boss.access).await, 200);

    let rows = audit_rows(&app, "user.deleted").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].user_id, Some(boss.id));
    assert_eq!(rows[0].resource_id.as_deref(), Some(t.id.to_string().as_str()));
    assert_eq!(rows[0].ip_address.as_deref(), Some(LOCALHOST));
}

// ---------------------------------------------------------------------------------------------
// No secret in any user JSON
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn no_user_json_ever_carries_a_secret() {
    let app = spawn_app().await;
    let boss = admin(&app).await;
    // A user with MFA on, so the row holds a TOTP secret and backup codes too.
    let email = crate::helpers::accounts::unique_email("secretive");
    const OWN: &str = "my very own secret passphrase";
    let res = post_json(&app, "/api/v1/auth/register", json!({ "email": email, "password": OWN, "name": "S" })).await;
    let body = json_of(res, 201).await;
    assert_no_secrets(&body, OWN);
    assert_user_clean(&body["user"], OWN);
    let access = body["accessToken"].as_str().unwrap().to_string();
    let id = body["user"]["id"].as_str().unwrap().to_string();

    let body = json_of(login(&app, &email, OWN).await, 200).await;
    assert_no_secrets(&body, OWN);
    assert_user_clean(&body["user"], OWN);
    let me = json_of(get_authed(&app, "/api/v1/users/me", &access).await, 200).await;
    assert_user_clean(&me, OWN);

    let res = authed(&app, Method::POST, "/api/v1/auth/mfa/totp/enroll", &access).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let row = user::Entity::find_by_id(id.parse::<Uuid>().unwrap()).one(&app.state.db).await.unwrap().unwrap();
    let pending = row.totp_pending_enc.clone().expect("pending secret stored");
    assert!(row.password_hash.as_deref().is_some_and(|h| h.starts_with("$argon2")));

    let check = |v: &Value| {
        assert_user_clean(v, OWN);
        assert!(!v.to_string().contains(&pending), "{v}");
    };
    check(&json_of(get_authed(&app, "/api/v1/users/me", &access).await, 200).await);
    let listed = list(&app, &boss.access, "?limit=100").await;
    assert_no_secrets(&listed, OWN);
    for u in listed["data"].as_array().unwrap() {
        check(u);
    }
    let path = format!("/api/v1/users/{id}");
    check(&json_of(get_authed(&app, &path, &boss.access).await, 200).await);
    check(&json_of(send_json(&app, Method::PATCH, &path, &boss.access, json!({ "name": "Renamed" })).await, 200).await);
    check(
        &json_of(send_json(&app, Method::PATCH, "/api/v1/users/me", &access, json!({ "name": "Mine" })).await, 200)
            .await,
    );
    // Error bodies do not echo the password either.
    let res = post_json(&app, "/api/v1/auth/register", json!({ "email": email, "password": OWN, "name": "S" })).await;
    assert_no_secrets(&assert_error(res, 409, "/api/v1/auth/register").await, OWN);
    let res = login(&app, &email, "wrong but long password").await;
    assert_no_secrets(&assert_error(res, 401, "/api/v1/auth/login").await, "wrong but long password");
}
