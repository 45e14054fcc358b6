//! Push tokens: registered, moved, listed and deleted by their owner; registration validated
//! and only for a signed-in user.

use axum::Router;
use chrono::DateTime;
use mash::alerts::entity::push_token;
use reqwest::Method;
use sea_orm::EntityTrait;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{
    accounts::{Account, authed, get_authed, json_of, register},
    assert_error, detail_fields, spawn_app_with,
};

use super::{new_push_token, post_push_token};

// ---------------------------------------------------------------------------------------------
// Push tokens
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn push_tokens_are_registered_moved_listed_and_deleted_by_their_owner() {
    let app = spawn_app_with(&[("JOB_CONCURRENCY", "0")], Router::new()).await;
    let ada = register(&app, "ada").await;
    let bob = register(&app, "bob").await;
    let list = |who: &Account| {
        let token = who.access.clone();
        let app = &app;
        async move { json_of(get_authed(app, "/api/v1/push-tokens", &token).await, 200).await }
    };

    let res = post_push_token(&app, &ada, json!({"token": "shared-phone-token", "platform": "ios"})).await;
    let first = json_of(res, 201).await;
    let id = first["id"].as_str().unwrap().to_string();
    assert_eq!(first["platform"], "ios");
    assert!(first.get("token").is_none() && !first.to_string().contains("shared-phone-token"), "{first}");
    for ts in ["createdAt", "updatedAt"] {
        DateTime::parse_from_rfc3339(first[ts].as_str().unwrap()).expect("RFC 3339");
    }

    // Registering it again: 200, the same row.
    let res = post_push_token(&app, &ada, json!({"token": "shared-phone-token", "platform": "android"})).await;
    let again = json_of(res, 200).await;
    assert_eq!(again["id"], id);
    assert_eq!(again["platform"], "android");

    // Another account signs in on that phone: the token moves to it.
    let res = post_push_token(&app, &bob, json!({"token": "shared-phone-token", "platform": "web"})).await;
    let moved = json_of(res, 200).await;
    assert_eq!(moved["id"], id);
    assert_eq!(moved["platform"], "web");
    let rows = push_token::Entity::find().all(&app.state.db).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].user_id, bob.id);
    assert_eq!(rows[0].token, "shared-phone-token");

    // Each lists only their own, without the token itself.
    let own = new_push_token(&app, &ada, "ada-tablet-token", "android").await;
    let ada_list = list(&ada).await;
    let ada_ids: Vec<&str> = ada_list.as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ada_ids, vec![own.to_string().as_str()], "{ada_list}");
    assert!(!ada_list.to_string().contains("ada-tablet-token"), "{ada_list}");
    let bob_list = list(&bob).await;
    assert_eq!(bob_list.as_array().unwrap().len(), 1, "{bob_list}");
    assert_eq!(bob_list[0]["id"], id);
    assert_eq!(bob_list[0]["platform"], "web");
    assert!(!bob_list.to_string().contains("shared-phone-token"), "{bob_list}");

    // Someone else's token is 404 and stays; one's own goes, once.
    let path = format!("/api/v1/push-tokens/{own}");
    assert_error(authed(&app, Method::DELETE, &path, &bob.access).send().await.unwrap(), 404, &path).await;
    assert!(push_token::Entity::find_by_id(own).one(&app.state.db).await.unwrap().is_some());
    assert_eq!(authed(&app, Method::DELETE, &path, &ada.access).send().await.unwrap().status(), 204);
    assert!(push_token::Entity::find_by_id(own).one(&app.state.db).await.unwrap().is_none());
    assert_error(authed(&app, Method::DELETE, &path, &ada.access).send().await.unwrap(), 404, &path).await;
    let unknown = format!("/api/v1/push-tokens/{}", Uuid::now_v7());
    assert_error(authed(&app, Method::DELETE, &unknown, &ada.access).send().await.unwrap(), 404, &unknown).await;
    assert_eq!(list(&ada).await, json!([]));
    assert_eq!(list(&bob).await.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn push_token_registration_is_validated_and_needs_a_signed_in_user() {
    let app = spawn_app_with(&[("JOB_CONCURRENCY", "0")], Router::new()).await;
    let ada = register(&app, "ada").await;
    let path = "/api/v1/push-tokens";
    for (body, field) in [
        (json!({"token": "t-1", "platform": "symbian"}), "platform"),
        (json!({"token": "t-1", "platform": "IOS"}), "platform"),
        (json!({"token": "t-1"}), "platform"),
        (json!({"token": "", "platform": "ios"}), "token"),
        (json!({"token": "   ", "platform": "ios"}), "token"),
        (json!({"token": "line\nbreak", "platform": "ios"}), "token"),
        (json!({"token": "x".repeat(4097), "platform": "ios"}), "token"),
        (json!({"platform": "ios"}), "token"),
        (json!({"token": 42, "platform": "ios"}), "token"),
    ] {
        let err = assert_error(post_push_token(&app, &ada, body.clone()).await, 400, path).await;
        let fields = detail_fields(&err);
        assert!(fields.iter().any(|f| f == field) || err["message"].as_str().unwrap().contains(field), "{body}: {err}");
    }
    assert!(push_token::Entity::find().all(&app.state.db).await.unwrap().is_empty());

    // No bearer token: 401 on every route.
    let res = app.client.post(app.url(path)).json(&json!({"token": "t-1", "platform": "ios"})).send().await.unwrap();
    assert_error(res, 401, path).await;
    assert_error(app.client.get(app.url(path)).send().await.unwrap(), 401, path).await;
    let one = format!("{path}/{}", Uuid::now_v7());
    assert_error(app.client.delete(app.url(&one)).send().await.unwrap(), 401, &one).await;
    let res = authed(&app, Method::POST, path, "not-a-token").json(&json!({"token": "t-1", "platform": "ios"})).send();
    assert_error(res.await.unwrap(), 401, path).await;
    assert!(push_token::Entity::find().all(&app.state.db).await.unwrap().is_empty());

    // A valid registration still works afterwards.
    new_push_token(&app, &ada, "t-1", "web").await;
}
