//! CONTRACT.md "Conventions": error shape, rejections, request ids, CORS, security headers,
//! compression, body limits, timeouts and the list helper.

use axum::Router;
use serde_json::{Value, json};

use crate::helpers::{assert_error, probe, spawn_app, spawn_app_with};

async fn probe_app() -> crate::helpers::TestApp {
    spawn_app_with(&[("HTTP_REQUEST_TIMEOUT_SECS", "1")], probe::routes()).await
}

#[tokio::test]
async fn unknown_route_is_404_in_contract_shape() {
    let app = spawn_app().await;
    let res = app.get("/api/v1/no/such/thing?x=1").await;
    let body = assert_error(res, 404, "/api/v1/no/such/thing").await;
    assert_eq!(body["error"], "Not Found");
}

#[tokio::test]
async fn wrong_method_is_405_with_allow_header() {
    let app = spawn_app().await;
    let res = app.client.delete(app.url("/health/live")).send().await.unwrap();
    let allow = res.headers().get("allow").expect("Allow header").to_str().unwrap().to_owned();
    assert!(allow.contains("GET"), "{allow}");
    assert_error(res, 405, "/health/live").await;
}

#[tokio::test]
async fn malformed_json_is_400() {
    let app = probe_app().await;
    let res = app
        .client
        .post(app.url("/api/v1/probe/echo"))
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    let body = assert_error(res, 400, "/api/v1/probe/echo").await;
    assert!(body["message"].as_str().unwrap().contains("malformed JSON"), "{body}");
}

#[tokio::test]
async fn missing_or_wrong_content_type_is_415() {
    let app = probe_app().await;
    let body = r#"{"name":"a","email":"a@b.co","count":1}"#;
    let res = app.client.post(app.url("/api/v1/probe/echo")).body(body).send().await.unwrap();
    assert_error(res, 415, "/api/v1/probe/echo").await;
    let res = app
        .client
        .post(app.url("/api/v1/probe/echo"))
        .header("content-type", "text/plain")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_error(res, 415, "/api/v1/probe/echo").await;
    // The same body with the right type goes through.
    let res = app
        .client
        .post(app.url("/api/v1/probe/echo"))
        .header("content-type", "application/json; charset=utf-8")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn wrong_field_type_is_400_naming_the_field() {
    let app = probe_app().await;
    let res = app
        .client
        .post(app.url("/api/v1/probe/echo"))
        .json(&json!({"name": "a", "email": "a@b.co", "count": "three"}))
        .send()
        .await
        .unwrap();
    let body = assert_error(res, 400, "/api/v1/probe/echo").await;
    assert_eq!(body["details"][0]["field"], "count", "{body}");
}

#[tokio::test]
async fn validation_lists_every_bad_field() {
    let app = probe_app().await;
    let res = app
        .client
        .post(app.url("/api/v1/probe/echo"))
        .json(&json!({"name": "much too long a name", "email": "not-an-email", "count": 9}))
        .send()
        .await
        .unwrap();
    let body = assert_error(res, 400, "/api/v1/probe/echo").await;
    let mut fields: Vec<&str> =
        body["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
    fields.sort();
    assert_eq!(fields, ["count", "email", "name"], "{body}");
    for d in body["details"].as_array().unwrap() {
        assert!(!d["message"].as_str().unwrap().is_empty());
    }
}

#[tokio::test]
async fn body_over_the_default_limit_is_413_and_a_route_can_raise_it() {
    let app = probe_app().await;
    let big = json!({ "blob": "x".repeat(1024 * 1024 + 10) });
    let res = app.client.post(app.url("/api/v1/probe/echo")).json(&big).send().await.unwrap();
    assert_error(res, 413, "/api/v1/probe/echo").await;
    // /probe/big raised its own limit to 8 MiB.
    let res = app.client.post(app.url("/api/v1/probe/big")).json(&big).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let too_big = json!({ "blob": "x".repeat(9 * 1024 * 1024) });
    let res = app.client.post(app.url("/api/v1/probe/big")).json(&too_big).send().await.unwrap();
    assert_error(res, 413, "/api/v1/probe/big").await;
}

#[tokio::test]
async fn non_uuid_path_parameter_is_400_naming_it() {
    let app = probe_app().await;
    let res = app.get("/api/v1/probe/items/not-a-uuid").await;
    let body = assert_error(res, 400, "/api/v1/probe/items/not-a-uuid").await;
    assert_eq!(body["details"][0]["field"], "id", "{body}");
    let id = uuid::Uuid::now_v7();
    let res = app.get(&format!("/api/v1/probe/items/{id}")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["id"], id.to_string());
}

#[tokio::test]
async fn a_panic_is_a_500_that_reveals_nothing() {
    let app = probe_app().await;
    let res = app.get("/api/v1/probe/panic").await;
    let body = assert_error(res, 500, "/api/v1/probe/panic").await;
    assert_eq!(body["message"], "internal server error");
    assert!(!body.to_string().contains("hunter2"));
    // The server keeps serving.
    assert_eq!(app.get("/health/live").await.status(), 200);
}

#[tokio::test]
async fn a_request_over_the_timeout_is_cut_off_in_contract_shape() {
    let app = probe_app().await;
    let res = app.get("/api/v1/probe/slow").await;
    assert_error(res, 503, "/api/v1/probe/slow").await;
}

#[tokio::test]
async fn request_id_is_generated_or_echoed() {
    let app = spawn_app().await;
    let res = app.get("/health/live").await;
    let id = res.headers()["x-request-id"].to_str().unwrap();
    let parsed = uuid::Uuid::parse_str(id).expect("generated ids are UUIDs");
    assert_eq!(parsed.get_version_num(), 7);

    let res = app.client.get(app.url("/nope")).header("x-request-id", "client-abc-123").send().await.unwrap();
    assert_eq!(res.headers()["x-request-id"], "client-abc-123");
    let body = assert_error(res, 404, "/nope").await;
    assert_eq!(body["requestId"], "client-abc-123");

    // An unreasonable id (too long) is replaced, not echoed.
    let long = "a".repeat(300);
    let res = app.client.get(app.url("/health/live")).header("x-request-id", &long).send().await.unwrap();
    assert_ne!(res.headers()["x-request-id"], long.as_str());
}

#[tokio::test]
async fn security_headers_are_set_and_docs_csp_lets_the_ui_load() {
    let app = spawn_app().await;
    let res = app.get("/health/live").await;
    let h = res.headers();
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert!(h.contains_key("referrer-policy"));
    assert_eq!(h["content-security-policy"], "default-src 'none'; frame-ancestors 'none'");
    assert!(!h.contains_key("strict-transport-security"), "HSTS is off unless configured");

    let res = app.get("/docs/").await;
    assert_eq!(res.status(), 200);
    let csp = res.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let html = res.text().await.unwrap();
    // Every script the UI loads is served by us (CSP 'self'), none from a CDN.
    assert!(html.contains("swagger-ui-bundle.js"));
    assert!(!html.contains("http://") && !html.contains("https://"), "{html}");
    assert_eq!(app.get("/docs/swagger-ui-bundle.js").await.status(), 200);
    // The UI is pointed at the document the server serves.
    let init = app.get("/docs/swagger-initializer.js").await.text().await.unwrap();
    assert!(init.contains("/openapi.json"), "{init}");

    let app = spawn_app_with(&[("HSTS_MAX_AGE_SECS", "31536000")], Router::new()).await;
    let res = app.get("/health/live").await;
    assert_eq!(res.headers()["strict-transport-security"], "max-age=31536000; includeSubDomains");
}

#[tokio::test]
async fn cors_allows_listed_origins_with_credentials() {
    let app = spawn_app_with(&[("ALLOWED_ORIGINS", "https://shop.example,http://localhost:5173")], Router::new()).await;
    let res = app.client.get(app.url("/health/live")).header("origin", "https://shop.example").send().await.unwrap();
    assert_eq!(res.headers()["access-control-allow-origin"], "https://shop.example");
    assert_eq!(res.headers()["access-control-allow-credentials"], "true");

    let res = app.client.get(app.url("/health/live")).header("origin", "https://evil.example").send().await.unwrap();
    assert!(!res.headers().contains_key("access-control-allow-origin"));

    let res = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/api/v1/anything"))
        .header("origin", "http://localhost:5173")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization,content-type,idempotency-key")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(res.headers()["access-control-allow-origin"], "http://localhost:5173");
    let methods = res.headers()["access-control-allow-methods"].to_str().unwrap().to_ascii_uppercase();
    assert!(methods.contains("POST"), "{methods}");
    let headers = res.headers()["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
    assert!(headers.contains("idempotency-key"), "{headers}");
}

#[tokio::test]
async fn cors_wildcard_never_comes_with_credentials() {
    let app = spawn_app_with(&[("ALLOWED_ORIGINS", "*")], Router::new()).await;
    let res = app.client.get(app.url("/health/live")).header("origin", "https://any.example").send().await.unwrap();
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
    assert!(!res.headers().contains_key("access-control-allow-credentials"));

    // Without ALLOWED_ORIGINS, no cross-origin access at all.
    let app = spawn_app().await;
    let res = app.client.get(app.url("/health/live")).header("origin", "https://any.example").send().await.unwrap();
    assert!(!res.headers().contains_key("access-control-allow-origin"));
    assert!(!res.headers().contains_key("access-control-allow-credentials"));
}

#[tokio::test]
async fn bodies_over_1_kib_are_compressed() {
    let app = probe_app().await;
    for (encoding, expected) in [("gzip", "gzip"), ("br", "br")] {
        let res = app
            .client
            .get(app.url("/api/v1/probe/large-response"))
            .header("accept-encoding", encoding)
            .send()
            .await
            .unwrap();
        assert_eq!(res.headers()["content-encoding"], expected);
        let compressed = res.bytes().await.unwrap();
        assert!(compressed.len() < 4096, "{} bytes", compressed.len());
    }
    let res =
        app.client.get(app.url("/api/v1/probe/tiny-response")).header("accept-encoding", "gzip").send().await.unwrap();
    assert!(!res.headers().contains_key("content-encoding"));
    assert_eq!(res.text().await.unwrap(), "ok");
}

#[tokio::test]
async fn lists_page_and_cap_the_limit() {
    let app = probe_app().await;
    let body: Value = app.get("/api/v1/probe/list?page=3&limit=20&total=53").await.json().await.unwrap();
    assert_eq!(body["meta"], json!({"page": 3, "limit": 20, "total": 53, "totalPages": 3, "hasMore": false}));
    assert_eq!(body["data"].as_array().unwrap().len(), 13);
    assert_eq!(body["data"][0], 40);

    let body: Value = app.get("/api/v1/probe/list?limit=500&total=1000").await.json().await.unwrap();
    assert_eq!(body["meta"]["limit"], 100);
    assert_eq!(body["meta"]["hasMore"], true);
    assert_eq!(body["data"].as_array().unwrap().len(), 100);

    let body: Value = app.get("/api/v1/probe/list").await.json().await.unwrap();
    assert_eq!((body["meta"]["page"].clone(), body["meta"]["limit"].clone()), (json!(1), json!(20)));

    let res = app.get("/api/v1/probe/list?page=abc").await;
    let body = assert_error(res, 400, "/api/v1/probe/list").await;
    assert_eq!(body["details"][0]["field"], "page");
}

#[tokio::test]
async fn openapi_is_3_1_and_lists_every_route() {
    let app = spawn_app().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    for path in ["/health/live", "/health/ready", "/metrics", "/.well-known/jwks.json", "/api/v1/users/me"] {
        assert!(doc["paths"][path]["get"].is_object(), "GET {path} missing from the spec");
    }
    for path in [
        "/api/v1/auth/register",
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
        "/api/v1/auth/mfa/verify",
        "/api/v1/auth/password/forgot",
        "/api/v1/auth/oidc/exchange",
    ] {
        assert!(doc["paths"][path]["post"].is_object(), "POST {path} missing from the spec");
    }
    assert!(doc["paths"]["/api/v1/users/{id}"]["delete"].is_object());
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    // `mash openapi` prints the same document.
    assert_eq!(doc, serde_json::to_value(mash::http::router::openapi()).unwrap());
}

/// The server builds its routes without their documentation (the document is built at the
/// first `/openapi.json`); every operation the document lists must still be served.
#[tokio::test]
async fn every_documented_operation_is_served() {
    let app = spawn_app().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    let id = uuid::Uuid::now_v7().to_string();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        // Path parameters get a well-formed id: a handler may answer 404 for it, the
        // router must not.
        let concrete: String =
            path.split('/').map(|s| if s.starts_with('{') { id.as_str() } else { s }).collect::<Vec<_>>().join("/");
        for method in item.as_object().unwrap().keys() {
            let Ok(method) = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()) else { continue };
            let res = app.client.request(method.clone(), app.url(&concrete)).send().await.unwrap();
            let status = res.status().as_u16();
            let body = res.text().await.unwrap();
            assert_ne!(status, 405, "{method} {path}: {body}");
            assert!(!body.contains("no route matches"), "{method} {path} is documented but not routed: {body}");
            checked += 1;
        }
    }
    assert!(checked > 80, "only {checked} operations in the document");
}

#[tokio::test]
async fn graceful_shutdown_drains_requests_in_flight() {
    let mut app = spawn_app_with(&[("HTTP_REQUEST_TIMEOUT_SECS", "5")], probe::routes()).await;
    let url = app.url("/api/v1/probe/slow");
    let client = app.client.clone();
    let in_flight = tokio::spawn(async move { client.get(url).send().await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let server = app.begin_shutdown();
    let res = in_flight.await.unwrap().expect("the in-flight request completes");
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "done");
    server.await.unwrap().expect("server stops cleanly");
    // New connections are refused once stopped.
    assert!(app.client.get(app.url("/health/live")).send().await.is_err());
}
