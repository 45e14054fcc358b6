//! Notifications: FCM push against a fake FCM and OAuth2 token server, signed webhooks, alert
//! email, and push-token registration.
//!
//! The fakes run in the test on 127.0.0.1 and record every request. The fake FCM is also the
//! OAuth2 token endpoint: like Google's, it verifies the JWT-bearer grant (RS256 signature with
//! the public half of `tests/fixtures/fcm-test-key.pem`, `kid`, `iss`, `aud`, `scope`, `iat` and
//! `exp`) before it issues an access token, and it only accepts messages carrying a token it
//! issued. The webhook receiver checks `Mash-Signature` itself, with the secret the API showed.
//! Jobs are driven by the test (`JOB_CONCURRENCY=0`, `run_jobs`), so every call to a fake
//! happens inside `run_jobs`, and retries become due by moving the app's clock.

use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method as HttpMethod, StatusCode, Uri},
    response::Response,
    routing::post,
};
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use mash::{
    alerts::entity::{delivery, push_token, webhook},
    jobs::{entity as job, queue},
};
use reqwest::Method;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::net::TcpListener;
use uuid::Uuid;

use crate::helpers::{
    TestApp,
    accounts::{Account, authed, get_authed, json_of, register, user_with_role},
    alerts::{alerts_of, deliveries_by, new_rule},
    assert_error, detail_fields,
    greenhouse::{
        Device, Greenhouse, add_member, bearer, create_device, greenhouse, greenhouse_by, reading, send_readings,
    },
    header, reply, spawn_app_with,
};

// ---------------------------------------------------------------------------------------------
// The service account
// ---------------------------------------------------------------------------------------------

/// Test-only key pair (PKCS#8 private key, SPKI public key). Never use it anywhere else.
const FCM_PRIVATE_KEY: &str = include_str!("../fixtures/fcm-test-key.pem");
const FCM_PUBLIC_KEY: &str = include_str!("../fixtures/fcm-test-key.pub.pem");
const CLIENT_EMAIL: &str = "mash-push@mash-test-project.iam.gserviceaccount.com";
const KEY_ID: &str = "0123456789abcdef0123456789abcdef01234567";
const PROJECT: &str = "mash-test-project";
const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// A service-account key file as the Firebase console hands it out.
fn service_account(token_uri: &str) -> String {
    json!({
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": KEY_ID,
        "private_key": FCM_PRIVATE_KEY,
        "client_email": CLIENT_EMAIL,
        "client_id": "104729384756102938475",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "universe_domain": "googleapis.com",
    })
    .to_string()
}

// ---------------------------------------------------------------------------------------------
// A fake FCM (and OAuth2 token endpoint)
// ---------------------------------------------------------------------------------------------

/// A grant the fake token endpoint accepted.
#[derive(Debug, Clone)]
struct Grant {
    path: String,
    claims: Value,
}

/// A message the fake FCM received.
#[derive(Debug, Clone)]
struct Sent {
    path: String,
    authorization: Option<String>,
    content_type: Option<String>,
    body: Value,
}

impl Sent {
    fn token(&self) -> &str {
        self.body["message"]["token"].as_str().unwrap_or_default()
    }
}

#[derive(Default)]
struct FcmLedger {
    grants: Vec<Grant>,
    /// Why grants were refused (empty when every grant verified).
    refused: Vec<String>,
    /// Access tokens issued.
    issued: Vec<String>,
    sent: Vec<Sent>,
    /// Requests to any other path.
    other: Vec<String>,
    /// Answers given instead of success, per registration token, each once.
    scripted: HashMap<String, VecDeque<(u16, Value)>>,
}

#[derive(Clone)]
struct FakeFcm {
    addr: SocketAddr,
    ledger: Arc<Mutex<FcmLedger>>,
}

impl FakeFcm {
    async fn start() -> FakeFcm {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = FakeFcm { addr: listener.local_addr().unwrap(), ledger: Arc::default() };
        let app = Router::new().fallback(fcm_endpoint).with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        fake
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    fn grants(&self) -> Vec<Grant> {
        self.ledger.lock().unwrap().grants.clone()
    }

    fn refused(&self) -> Vec<String> {
        self.ledger.lock().unwrap().refused.clone()
    }

    fn issued(&self) -> Vec<String> {
        self.ledger.lock().unwrap().issued.clone()
    }

    fn sent(&self) -> Vec<Sent> {
        self.ledger.lock().unwrap().sent.clone()
    }

    fn other(&self) -> Vec<String> {
        self.ledger.lock().unwrap().other.clone()
    }

    /// The next message to `token` gets this answer.
    fn script(&self, token: &str, status: u16, body: Value) {
        self.ledger.lock().unwrap().scripted.entry(token.to_string()).or_default().push_back((status, body));
    }

    /// The OAuth2 token endpoint: verifies the JWT-bearer grant as Google does.
    fn grant(&self, path: &str, headers: &HeaderMap, body: &[u8]) -> Response {
        let mut l = self.ledger.lock().unwrap();
        let checked = verify_grant(&self.url(path), headers, body);
        match checked {
            Ok(claims) => {
                let token = format!("ya29.fake-access-token-{}", l.issued.len() + 1);
                l.issued.push(token.clone());
                l.grants.push(Grant { path: path.to_string(), claims });
                reply(200, json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}))
            }
            Err(why) => {
                l.refused.push(why.clone());
                reply(400, json!({"error": "invalid_grant", "error_description": why}))
            }
        }
    }

    /// `POST /v1/projects/{project}/messages:send`.
    fn send(&self, path: &str, headers: &HeaderMap, body: &[u8]) -> Response {
        let mut l = self.ledger.lock().unwrap();
        let sent = Sent {
            path: path.to_string(),
            authorization: header(headers, "authorization"),
            content_type: header(headers, "content-type"),
            body: serde_json::from_slice(body).unwrap_or(Value::Null),
        };
        l.sent.push(sent.clone());
        let authorized = sent
            .authorization
            .as_deref()
            .and_then(|a| a.strip_prefix("Bearer "))
            .is_some_and(|t| l.issued.iter().any(|i| i == t));
        if !authorized {
            let error = json!({"error": {"code": 401, "status": "UNAUTHENTICATED",
                "message": "Request had invalid authentication credentials."}});
            return reply(401, error);
        }
        if path != format!("/v1/projects/{PROJECT}/messages:send") {
            let error = json!({"error": {"code": 403, "status": "PERMISSION_DENIED", "message": "SenderId mismatch"}});
            return reply(403, error);
        }
        if let Some((status, answer)) = l.scripted.get_mut(sent.token()).and_then(VecDeque::pop_front) {
            return reply(status, answer);
        }
        let n = l.sent.len();
        reply(200, json!({"name": format!("projects/{PROJECT}/messages/0:{n}")}))
    }
}

/// The claims of a valid grant posted to `endpoint`, or why it is not valid.
fn verify_grant(endpoint: &str, headers: &HeaderMap, body: &[u8]) -> Result<Value, String> {
    let content_type = header(headers, "content-type").unwrap_or_default();
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return Err(format!("content type {content_type:?}"));
    }
    let form: HashMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
    if form.get("grant_type").map(String::as_str) != Some(JWT_BEARER) {
        return Err(format!("grant_type {:?}", form.get("grant_type")));
    }
    let assertion = form.get("assertion").ok_or("no assertion")?;
    let head = jsonwebtoken::decode_header(assertion).map_err(|e| format!("header: {e}"))?;
    if head.alg != Algorithm::RS256 || head.kid.as_deref() != Some(KEY_ID) {
        return Err(format!("alg {:?} kid {:?}", head.alg, head.kid));
    }
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[endpoint]);
    validation.set_issuer(&[CLIENT_EMAIL]);
    validation.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
    let key = DecodingKey::from_rsa_pem(FCM_PUBLIC_KEY.as_bytes()).expect("the test public key");
    let claims = jsonwebtoken::decode::<Value>(assertion, &key, &validation).map_err(|e| format!("JWT: {e}"))?.claims;
    if claims["scope"] != SCOPE {
        return Err(format!("scope {}", claims["scope"]));
    }
    let (iat, exp) = (claims["iat"].as_i64().unwrap_or(0), claims["exp"].as_i64().unwrap_or(0));
    if exp - iat != 3600 {
        return Err(format!("lifetime {} s", exp - iat));
    }
    // Google refuses grants issued too far from its own clock.
    if (iat - Utc::now().timestamp()).abs() > 300 {
        return Err(format!("iat {iat} is not now"));
    }
    Ok(claims)
}

async fn fcm_endpoint(
    State(fake): State<FakeFcm>,
    method: HttpMethod,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    if method == HttpMethod::POST && path.ends_with("/token") {
        return fake.grant(&path, &headers, &body);
    }
    if method == HttpMethod::POST && path.starts_with("/v1/projects/") {
        return fake.send(&path, &headers, &body);
    }
    fake.ledger.lock().unwrap().other.push(format!("{method} {path}"));
    reply(404, json!({"error": {"code": 404, "status": "NOT_FOUND", "message": "no such endpoint"}}))
}

/// FCM's answer for a registration token that is gone.
fn unregistered() -> Value {
    json!({"error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND",
        "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}]}})
}

/// The app, configured for FCM against `fake` (token endpoint at `/token`), plus `extra`.
async fn fcm_app(fake: &FakeFcm, extra: &[(&str, &str)]) -> TestApp {
    let account = service_account(&fake.url("/token"));
    let base = fake.base();
    let mut vars =
        vec![("JOB_CONCURRENCY", "0"), ("FCM_SERVICE_ACCOUNT_JSON", account.as_str()), ("FCM_API_BASE", base.as_str())];
    vars.extend_from_slice(extra);
    spawn_app_with(&vars, Router::new()).await
}

// ---------------------------------------------------------------------------------------------
// A webhook receiver
// ---------------------------------------------------------------------------------------------

/// One POST the receiver got.
#[derive(Debug, Clone)]
struct Hook {
    signature: Option<String>,
    event_id: Option<String>,
    content_type: Option<String>,
    body: String,
}

impl Hook {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("webhook body is not JSON ({e}): {}", self.body))
    }

    fn kind(&self) -> String {
        self.json()["type"].as_str().unwrap_or_default().to_string()
    }
}

#[derive(Default)]
struct HookLedger {
    hooks: Vec<Hook>,
    /// Statuses answered instead of 200, in order.
    scripted: VecDeque<u16>,
}

#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    ledger: Arc<Mutex<HookLedger>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Receiver { addr: listener.local_addr().unwrap(), ledger: Arc::default() };
        let app = Router::new().route("/hooks/alerts", post(receive_hook)).with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        receiver
    }

    fn url(&self) -> String {
        format!("http://{}/hooks/alerts", self.addr)
    }

    fn hooks(&self) -> Vec<Hook> {
        self.ledger.lock().unwrap().hooks.clone()
    }

    fn answer_next(&self, status: u16) {
        self.ledger.lock().unwrap().scripted.push_back(status);
    }
}

async fn receive_hook(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut l = receiver.ledger.lock().unwrap();
    l.hooks.push(Hook {
        signature: header(&headers, "mash-signature"),
        event_id: header(&headers, "mash-event-id"),
        content_type: header(&headers, "content-type"),
        body: String::from_utf8(body.to_vec()).expect("a UTF-8 body"),
    });
    StatusCode::from_u16(l.scripted.pop_front().unwrap_or(200)).unwrap()
}

/// Checks `Mash-Signature: t=<unix>,v1=<hex>` over `"<t>.<body>"` as a receiver would (in
/// constant time); returns `t`.
fn verify_signature(signature: &str, secret: &str, body: &str) -> Result<i64, String> {
    let mut t = None;
    let mut candidates = Vec::new();
    for part in signature.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = Some(v.parse::<i64>().map_err(|e| format!("t={v}: {e}"))?),
            Some(("v1", v)) => candidates.push(hex::decode(v).map_err(|e| format!("v1={v}: {e}"))?),
            _ => {}
        }
    }
    let t = t.ok_or_else(|| format!("no t in {signature:?}"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body.as_bytes());
    if candidates.iter().any(|c| mac.clone().verify_slice(c).is_ok()) {
        Ok(t)
    } else {
        Err(format!("no v1 in {signature:?} matches"))
    }
}

// ---------------------------------------------------------------------------------------------
// Shared steps
// ---------------------------------------------------------------------------------------------

/// `POST /push-tokens` as `who`.
async fn post_push_token(app: &TestApp, who: &Account, body: Value) -> reqwest::Response {
    authed(app, Method::POST, "/api/v1/push-tokens", &who.access).json(&body).send().await.unwrap()
}

/// Registers a new push token for `who` (201 asserted); its id.
async fn new_push_token(app: &TestApp, who: &Account, token: &str, platform: &str) -> Uuid {
    let res = post_push_token(app, who, json!({"token": token, "platform": platform})).await;
    json_of(res, 201).await["id"].as_str().unwrap().parse().unwrap()
}

/// A threshold rule `metric > 30` of `severity` (201 asserted).
async fn create_rule(app: &TestApp, by: &Account, grower_id: Uuid, metric: &str, severity: &str) -> Value {
    let body = json!({"growerId": grower_id, "metric": metric, "kind": "threshold", "op": "gt",
        "threshold": 30.0, "severity": severity});
    new_rule(app, by, body).await
}

/// Posts readings of one device and metric (202 asserted).
async fn post_readings(app: &TestApp, by: &Account, device: &Device, metric: &str, values: &[(f64, DateTime<Utc>)]) {
    let batch: Vec<Value> = values.iter().map(|(v, ts)| reading(device.id, metric, *v, *ts)).collect();
    send_readings(app, &bearer(by), &batch).await;
}

/// The one alert of `gh` on `metric`.
async fn alert_on(app: &TestApp, gh: &Greenhouse, device: &Device, metric: &str) -> Value {
    let all = alerts_of(app, gh).await;
    let mine: Vec<&Value> =
        all.iter().filter(|a| a["metric"] == metric && a["deviceId"] == device.id.to_string()).collect();
    assert_eq!(mine.len(), 1, "one alert on {metric}: {all:?}");
    mine[0].clone()
}

/// Delivery attempts on `channel`, oldest first.
async fn deliveries(app: &TestApp, channel: &str) -> Vec<delivery::Model> {
    deliveries_by(app, delivery::Column::Channel, channel).await
}

/// Jobs of `job_type` still in the table (queued, running or dead).
async fn jobs_of(app: &TestApp, job_type: &str) -> Vec<job::Model> {
    job::Entity::find()
        .filter(job::Column::JobType.eq(job_type))
        .order_by_asc(job::Column::CreatedAt)
        .all(&app.state.db)
        .await
        .unwrap()
}

/// Runs the due jobs of these types only (as a worker that knows no other type would), leaving
/// the rest queued for the test to look at; returns the number of runs.
async fn run_only(app: &TestApp, types: &[&'static str]) -> usize {
    let mut runs = 0;
    loop {
        let now = app.state.clock.now();
        let lease = std::time::Duration::from_secs(300);
        let claimed = queue::claim(&app.state.db, types, "notifications-test", now, lease, 1).await.unwrap();
        let Some(j) = claimed.into_iter().next() else { return runs };
        let kind = app.state.jobs.registry.get(&j.job_type).expect("a registered job type");
        if let Err(e) = kind.run(j.payload.clone(), &app.state, mash::jobs::Run { id: j.id, attempt: j.attempts }).await
        {
            panic!("{} failed: {e:#}", j.job_type);
        }
        queue::complete(&app.state.db, j.id, j.attempts).await.unwrap();
        runs += 1;
    }
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
}

fn set<const N: usize>(items: [&str; N]) -> BTreeSet<String> {
    items.into_iter().map(str::to_string).collect()
}

/// A moment well inside the telemetry window, from which each test's readings count up.
fn start_of_readings() -> DateTime<Utc> {
    Utc::now() - Duration::minutes(30)
}

// ---------------------------------------------------------------------------------------------
// FCM push
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn critical_alerts_are_pushed_to_each_members_token_with_one_verified_and_cached_grant() {
    let fake = FakeFcm::start().await;
    let app = fcm_app(&fake, &[]).await;
    let gh = greenhouse(&app).await;
    let member = user_with_role(&app, "member", "GROWER").await;
    json_of(add_member(&app, &gh.admin, gh.grower_id, member.id, "MEMBER").await, 201).await;
    let outsider = user_with_role(&app, "outsider", "GROWER").await;
    let owner_token = new_push_token(&app, &gh.owner, "owner-phone-registration-token", "ios").await;
    let member_token = new_push_token(&app, &member, "member-phone-registration-token", "android").await;
    new_push_token(&app, &outsider, "outsider-phone-registration-token", "android").await;
    let sensor = create_device(&app, &gh.owner, gh.grower_id, "sensor").await;
    let other_sensor = create_device(&app, &gh.owner, gh.grower_id, "other sensor").await;
    let rule = create_rule(&app, &gh.owner, gh.grower_id, "temp", "critical").await;
    let t0 = start_of_readings();

    post_readings(&app, &gh.owner, &sensor, "temp", &[(40.0, t0)]).await;
    app.run_jobs().await;

    // One grant, verified by the fake (signature, kid, iss, aud, scope, lifetime).
    assert_eq!(fake.refused(), Vec::<String>::new(), "the fake token endpoint refused the grant");
    let grants = fake.grants();
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!(grants[0].path, "/token");
    assert_eq!(grants[0].claims["iss"], CLIENT_EMAIL);
    assert_eq!(grants[0].claims["aud"], fake.url("/token"));
    assert_eq!(grants[0].claims["scope"], SCOPE);
    let issued = fake.issued();
    assert_eq!(fake.other(), Vec::<String>::new());

    // One message per member token, none to the outsider, each exactly as FCM v1 wants it.
    let alert = alert_on(&app, &gh, &sensor, "temp").await;
    assert_eq!(alert["ruleId"], rule["id"]);
    let sent = fake.sent();
    let tokens: BTreeSet<String> = sent.iter().map(|s| s.token().to_string()).collect();
    assert_eq!(tokens, set(["member-phone-registration-token", "owner-phone-registration-token"]), "{sent:?}");
    for s in &sent {
        assert_eq!(s.path, format!("/v1/projects/{PROJECT}/messages:send"));
        assert_eq!(s.authorization.as_deref(), Some(format!("Bearer {}", issued[0]).as_str()));
        assert!(s.content_type.as_deref().is_some_and(|c| c.starts_with("application/json")), "{s:?}");
        assert_eq!(keys(&s.body), set(["message"]), "{}", s.body);
        let m = &s.body["message"];
        assert_eq!(keys(m), set(["android", "apns", "data", "notification", "token"]), "{m}");
        assert_eq!(keys(&m["notification"]), set(["body", "title"]), "{m}");
        let title = m["notification"]["title"].as_str().unwrap();
        assert!(title.contains("temp") && title.to_lowercase().contains("critical"), "{title}");
        assert_eq!(m["notification"]["body"], alert["message"], "{m}");
        let data = &m["data"];
        assert!(data.as_object().unwrap().values().all(Value::is_string), "FCM data values are strings: {data}");
        let expected = json!({
            "type": "alert",
            "alertId": alert["id"],
            "growerId": gh.grower_id.to_string(),
            "deviceId": sensor.id.to_string(),
            "ruleId": rule["id"],
            "metric": "temp",
            "severity": "critical",
            "status": "active",
            "value": data["value"],
        });
        assert_eq!(data, &expected, "{m}");
        assert_eq!(data["value"].as_str().unwrap().parse::<f64>().unwrap(), 40.0, "{data}");
        assert_eq!(m["android"], json!({"priority": "high"}));
        assert_eq!(m["apns"], json!({"headers": {"apns-priority": "10"}}));
    }

    // Each attempt is recorded against the alert.
    let pushes = deliveries(&app, "push").await;
    assert_eq!(pushes.len(), 2, "{pushes:?}");
    let alert_id: Uuid = alert["id"].as_str().unwrap().parse().unwrap();
    for d in &pushes {
        assert_eq!(d.status, "sent", "{d:?}");
        assert_eq!(d.alert_id, Some(alert_id));
        assert_eq!(d.attempt, 1);
        assert_eq!(d.error, None);
    }
    let targets: Vec<&str> = pushes.iter().map(|d| d.target.as_str()).collect();
    for id in [owner_token, member_token] {
        assert!(targets.iter().any(|t| t.contains(&id.to_string())), "{id} in {targets:?}");
    }
    assert!(jobs_of(&app, "send_push").await.is_empty());

    // A second alert, in a later run: the access token comes from the cache.
    post_readings(&app, &gh.owner, &other_sensor, "temp", &[(41.0, t0 + Duration::seconds(1))]).await;
    app.run_jobs().await;
    let second = alert_on(&app, &gh, &other_sensor, "temp").await;
    assert_eq!(fake.grants().len(), 1, "the token endpoint was asked again: {:?}", fake.grants());
    assert_eq!(fake.refused(), Vec::<String>::new());
    let sent = fake.sent();
    assert_eq!(sent.len(), 4, "{sent:?}");
    for s in &sent[2..] {
        assert_eq!(s.body["message"]["data"]["alertId"], second["id"]);
        assert_eq!(s.authorization.as_deref(), Some(format!("Bearer {}", issued[0]).as_str()));
    }
    let pushes = deliveries(&app, "push").await;
    assert_eq!(pushes.len(), 4);
    assert!(pushes.iter().all(|d| d.status == "sent"), "{pushes:?}");
}

#[tokio::test]
async fn an_unregistered_token_is_forgotten_and_a_refused_message_is_dead_lettered() {
    let fake = FakeFcm::start().await;
    let app = fcm_app(&fake, &[]).await;
    let gh = greenhouse(&app).await;
    let gone = new_push_token(&app, &gh.owner, "uninstalled-app-token", "android").await;
    let refused = new_push_token(&app, &gh.owner, "refused-message-token", "web").await;
    let good = new_push_token(&app, &gh.owner, "good-token", "ios").await;
    fake.script("uninstalled-app-token", 404, unregistered());
    let invalid = json!({"error": {"code": 400, "status": "INVALID_ARGUMENT",
        "message": "Invalid value at 'message.data[0].value'",
        "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "INVALID_ARGUMENT"}]}});
    fake.script("refused-message-token", 400, invalid);
    let sensor = create_device(&app, &gh.owner, gh.grower_id, "sensor").await;
    create_rule(&app, &gh.owner, gh.grower_id, "temp", "critical").await;

    post_readings(&app, &gh.owner, &sensor, "temp", &[(40.0, start_of_readings())]).await;
    app.run_jobs().await;
    assert_eq!(fake.refused(), Vec::<String>::new());
    assert_eq!(fake.sent().len(), 3, "{:?}", fake.sent());
    let alert = alert_on(&app, &gh, &sensor, "temp").await;
    let alert_id: Uuid = alert["id"].as_str().unwrap().parse().unwrap();

    // UNREGISTERED: the token row is gone; the others stay.
    let left: BTreeSet<Uuid> =
        push_token::Entity::find().all(&app.state.db).await.unwrap().into_iter().map(|t| t.id).collect();
    assert_eq!(left, BTreeSet::from([refused, good]));
    let listed = json_of(get_authed(&app, "/api/v1/push-tokens", &gh.owner.access).await, 200).await;
    let listed: BTreeSet<&str> = listed.as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(listed, BTreeSet::from([refused.to_string().as_str(), good.to_string().as_str()]));

    let pushes = deliveries(&app, "push").await;
    assert_eq!(pushes.len(), 3, "{pushes:?}");
    assert!(pushes.iter().all(|d| d.alert_id == Some(alert_id) && d.attempt == 1), "{pushes:?}");
    let of = |id: Uuid| pushes.iter().find(|d| d.target.contains(&id.to_string())).unwrap_or_else(|| panic!("{id}"));
    assert_eq!(of(gone).status, "unregistered");
    assert!(
        of(gone).error.as_deref().is_some_and(|e| e.contains("UNREGISTERED") || e.contains("404")),
        "{:?}",
        of(gone)
    );
    assert_eq!(of(good).status, "sent");
    assert_eq!(of(refused).status, "failed");
    assert!(of(refused).error.is_some());

    // The unregistered token's job is done; the refused message is dead-lettered, not retried.
    let jobs = jobs_of(&app, "send_push").await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].status, job::DEAD, "{jobs:?}");
    assert_eq!(jobs[0].attempts, 1);
    app.state.clock.advance(Duration::hours(2));
    app.run_jobs().await;
    assert_eq!(fake.sent().len(), 3, "nothing is sent again");
}

#[tokio::test]
async fn an_fcm_outage_is_retried_later_and_lower_severities_are_not_pushed() {
    let fake = FakeFcm::start().await;
    // The key file names another token endpoint; FCM_TOKEN_URI wins, and is the grant's audience.
    let account = service_account(&fake.url("/key-file/token"));
    let base = fake.base();
    let token_uri = fake.url("/oauth2/v4/token");
    let app = spawn_app_with(
        &[
            ("JOB_CONCURRENCY", "0"),
            ("FCM_SERVICE_ACCOUNT_JSON", &account),
            ("FCM_API_BASE", &base),
            ("FCM_TOKEN_URI", &token_uri),
        ],
        Router::new(),
    )
    .await;
    let gh = greenhouse(&app).await;
    let token_id = new_push_token(&app, &gh.owner, "flaky-token", "android").await;
    let sensor = create_device(&app, &gh.owner, gh.grower_id, "sensor").await;
    create_rule(&app, &gh.owner, gh.grower_id, "temp", "critical").await;
    create_rule(&app, &gh.owner, gh.grower_id, "humidity", "warning").await;
    create_rule(&app, &gh.owner, gh.grower_id, "co2", "info").await;
    // An outage page from the front end, then a quota refusal: both are worth a retry by their
    // status alone.
    fake.script("flaky-token", 503, json!("<html><title>503 Service Unavailable</title></html>"));
    fake.script(
        "flaky-token",
        429,
        json!({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "Quota exceeded for the project."}}),
    );
    let t0 = start_of_readings();

    post_readings(&app, &gh.owner, &sensor, "temp", &[(40.0, t0)]).await;
    app.run_jobs().await;
    assert_eq!(fake.refused(), Vec::<String>::new());
    let grants = fake.grants();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].path, "/oauth2/v4/token");
    assert_eq!(grants[0].claims["aud"], token_uri);
    assert_eq!(fake.sent().len(), 1);
    let alert = alert_on(&app, &gh, &sensor, "temp").await;
    let alert_id: Uuid = alert["id"].as_str().unwrap().parse().unwrap();

    // Still queued, one attempt used, due later; the failed attempt is recorded.
    let jobs = jobs_of(&app, "send_push").await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].status, job::QUEUED, "{jobs:?}");
    assert_eq!(jobs[0].attempts, 1);
    assert!(jobs[0].run_at > app.state.clock.now(), "{jobs:?}");
    assert!(jobs[0].last_error.as_deref().is_some_and(|e| e.contains("503")), "{jobs:?}");
    let pushes = deliveries(&app, "push").await;
    assert_eq!(pushes.len(), 1);
    assert_eq!((pushes[0].status.as_str(), pushes[0].attempt), ("failed", 1), "{pushes:?}");
    assert_eq!(pushes[0].alert_id, Some(alert_id));

    // Not before it is due.
    app.run_jobs().await;
    assert_eq!(fake.sent().len(), 1);

    // Due later: the 429, and again queued.
    app.state.clock.advance(Duration::hours(2));
    app.run_jobs().await;
    assert_eq!(fake.sent().len(), 2);
    let jobs = jobs_of(&app, "send_push").await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!((jobs[0].status.as_str(), jobs[0].attempts), (job::QUEUED, 2), "{jobs:?}");
    assert!(jobs[0].last_error.as_deref().is_some_and(|e| e.contains("429")), "{jobs:?}");

    // Then it goes through.
    app.state.clock.advance(Duration::hours(2));
    app.run_jobs().await;
    let sent = fake.sent();
    assert_eq!(sent.len(), 3, "{sent:?}");
    for s in &sent {
        assert_eq!(s.token(), "flaky-token");
        assert_eq!(s.body, sent[0].body, "every attempt sends the same message");
    }
    assert_eq!(sent[2].body["message"]["data"]["alertId"], alert["id"]);
    assert!(jobs_of(&app, "send_push").await.is_empty());
    let pushes = deliveries(&app, "push").await;
    let attempts: Vec<(&str, i32)> = pushes.iter().map(|d| (d.status.as_str(), d.attempt)).collect();
    assert_eq!(attempts, vec![("failed", 1), ("failed", 2), ("sent", 3)]);
    assert!(pushes.iter().all(|d| d.target.contains(&token_id.to_string())), "{pushes:?}");
    assert_eq!(fake.grants().len(), 1, "the access token was cached across the retries");

    // Warning and info alerts open, but are not pushed.
    post_readings(&app, &gh.owner, &sensor, "humidity", &[(90.0, t0 + Duration::seconds(1))]).await;
    post_readings(&app, &gh.owner, &sensor, "co2", &[(900.0, t0 + Duration::seconds(2))]).await;
    app.run_jobs().await;
    alert_on(&app, &gh, &sensor, "humidity").await;
    alert_on(&app, &gh, &sensor, "co2").await;
    assert_eq!(fake.sent().len(), 3, "{:?}", fake.sent());
    assert!(jobs_of(&app, "send_push").await.is_empty());
    assert_eq!(deliveries(&app, "push").await.len(), 3);
}

// ---------------------------------------------------------------------------------------------
// Webhooks
// ---------------------------------------------------------------------------------------------

fn webhook_path(gh: &Greenhouse) -> String {
    format!("/api/v1/growers/{}/alert-webhook", gh.grower_id)
}

async fn put_webhook(app: &TestApp, gh: &Greenhouse, by: &Account, body: Value) -> reqwest::Response {
    authed(app, Method::PUT, &webhook_path(gh), &by.access).json(&body).send().await.unwrap()
}

#[tokio::test]
async fn webhook_settings_are_for_owners_and_show_the_secret_only_when_issued() {
    let app =
        spawn_app_with(&[("JOB_CONCURRENCY", "0"), ("WEBHOOK_ALLOW_PRIVATE_NETWORKS", "true")], Router::new()).await;
    let gh = greenhouse(&app).await;
    let path = webhook_path(&gh);
    let member = user_with_role(&app, "member", "GROWER").await;
    json_of(add_member(&app, &gh.admin, gh.grower_id, member.id, "MEMBER").await, 201).await;
    let stranger = greenhouse_by(&app, &gh.admin).await.owner;
    let url = "http://127.0.0.1:9/hooks/alerts";

    assert_error(get_authed(&app, &path, &gh.owner.access).await, 404, &path).await;
    // A member may not set it; a user of another grower does not see this grower at all.
    assert_error(put_webhook(&app, &gh, &member, json!({"url": url})).await, 403, &path).await;
    assert_error(put_webhook(&app, &gh, &stranger, json!({"url": url})).await, 404, &path).await;
    assert!(webhook::Entity::find_by_id(gh.grower_id).one(&app.state.db).await.unwrap().is_none());

    let created = json_of(put_webhook(&app, &gh, &gh.owner, json!({"url": url})).await, 200).await;
    assert_eq!(created["growerId"], gh.grower_id.to_string());
    assert_eq!(created["url"], url);
    assert_eq!(created["enabled"], true);
    let first = created["secret"].as_str().expect("the secret, on create").to_string();
    assert!(first.len() >= 16, "{first}");
    let row = webhook::Entity::find_by_id(gh.grower_id).one(&app.state.db).await.unwrap().unwrap();
    assert!(!row.secret_sealed.contains(&first), "the secret is stored sealed");

    // Members read it, without the secret; strangers still get 404.
    let shown = json_of(get_authed(&app, &path, &member.access).await, 200).await;
    assert_eq!(shown["url"], url);
    assert_eq!(shown["enabled"], true);
    assert!(shown.get("secret").is_none(), "{shown}");
    assert!(!shown.to_string().contains(&first), "{shown}");
    assert_error(get_authed(&app, &path, &stranger.access).await, 404, &path).await;

    // Changing it without rotating keeps the secret and does not show it.
    let changed = json_of(put_webhook(&app, &gh, &gh.owner, json!({"url": url, "enabled": false})).await, 200).await;
    assert!(changed.get("secret").is_none(), "{changed}");
    assert_eq!(changed["enabled"], false);
    assert_eq!(json_of(get_authed(&app, &path, &gh.owner.access).await, 200).await["enabled"], false);

    // An admin may rotate it: a new secret, shown once.
    let rotated =
        json_of(put_webhook(&app, &gh, &gh.admin, json!({"url": url, "rotateSecret": true})).await, 200).await;
    let second = rotated["secret"].as_str().expect("the new secret").to_string();
    assert_ne!(second, first);
    assert_eq!(rotated["enabled"], true, "enabled defaults to true");
    let again = json_of(put_webhook(&app, &gh, &gh.owner, json!({"url": url, "rotateSecret": false})).await, 200).await;
    assert!(again.get("secret").is_none(), "{again}");

    // Not a URL we would call.
    let res = put_webhook(&app, &gh, &gh.owner, json!({"url": "ftp://hooks.example.com/x"})).await;
    assert_eq!(detail_fields(&assert_error(res, 400, &path).await), vec!["url"]);

    // Deleting: owners only, then it is gone.
    let del = |who: &Account| authed(&app, Method::DELETE, &path, &who.access).send();
    assert_error(del(&member).await.unwrap(), 403, &path).await;
    assert_eq!(del(&gh.owner).await.unwrap().status(), 204);
    assert_error(get_authed(&app, &path, &gh.owner.access).await, 404, &path).await;
    assert_error(del(&gh.owner).await.unwrap(), 404, &path).await;
}

#[tokio::test]
async fn webhook_events_are_signed_retried_with_a_stable_id_and_skip_updates() {
    let receiver = Receiver::start().await;
    let app =
        spawn_app_with(&[("JOB_CONCURRENCY", "0"), ("WEBHOOK_ALLOW_PRIVATE_NETWORKS", "true")], Router::new()).await;
    let gh = greenhouse(&app).await;
    let sensor = create_device(&app, &gh.owner, gh.grower_id, "sensor").await;
    create_rule(&app, &gh.owner, gh.grower_id, "temp", "critical").await;
    let put = json_of(put_webhook(&app, &gh, &gh.owner, json!({"url": receiver.url()})).await, 200).await;
    let old_secret = put["secret"].as_str().unwrap().to_string();
    let put =
        json_of(put_webhook(&app, &gh, &gh.owner, json!({"url": receiver.url(), "rotateSecret": true})).await, 200)
            .await;
    let secret = put["secret"].as_str().unwrap().to_string();
    let t0 = start_of_readings();

    // Checks one received event: signature (with the current secret only), headers, shape.
    let check = |h: &Hook, not_before: i64, not_after: i64| -> Value {
        let signature = h.signature.as_deref().expect("Mash-Signature");
        let t = verify_signature(signature, &secret, &h.body).unwrap_or_else(|e| panic!("{e}; body {}", h.body));
        assert!((not_before..=not_after).contains(&t), "t={t} outside {not_before}..={not_after}");
        assert!(verify_signature(signature, &old_secret, &h.body).is_err(), "the rotated-out secret still verifies");
        assert!(h.content_type.as_deref().is_some_and(|c| c.starts_with("application/json")), "{h:?}");
        let body = h.json();
        assert_eq!(keys(&body), set(["createdAt", "data", "id", "type"]), "{body}");
        assert_eq!(h.event_id.as_deref(), body["id"].as_str(), "Mash-Event-Id is the event id");
        DateTime::parse_from_rfc3339(body["createdAt"].as_str().unwrap()).expect("createdAt is RFC 3339");
        assert_eq!(keys(&body["data"]), set(["alert"]), "{body}");
        body
    };

    // Created, then repeated in the same batch (an update): the receiver fails the first try.
    receiver.answer_next(500);
    post_readings(&app, &gh.owner, &sensor, "temp", &[(40.0, t0), (45.0, t0 + Duration::seconds(1))]).await;
    let before = app.state.clock.now().timestamp();
    app.run_jobs().await;
    let after = app.state.clock.now().timestamp();
    let alert = alert_on(&app, &gh, &sensor, "temp").await;
    assert_eq!(alert["count"], 2, "the repeat was folded in: {alert}");
    let hooks = receiver.hooks();
    assert_eq!(hooks.len(), 1, "only the creation is sent: {hooks:?}");
    let first = check(&hooks[0], before, after);
    assert_eq!(first["type"], "alert.created");
    let sent_alert = &first["data"]["alert"];
    for field in ["id", "growerId", "deviceId", "ruleId", "metric", "severity"] {
        assert_eq!(sent_alert[field], alert[field], "{field}: {sent_alert}");
    }
    assert_eq!(sent_alert["status"], "active");
    let hooked = deliveries(&app, "webhook").await;
    let tries: Vec<(&str, i32)> = hooked.iter().map(|d| (d.status.as_str(), d.attempt)).collect();
    assert_eq!(tries, vec![("failed", 1)]);
    let alert_id: Uuid = alert["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(hooked[0].alert_id, Some(alert_id));
    let jobs = jobs_of(&app, "deliver_webhook").await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!((jobs[0].status.as_str(), jobs[0].attempts), (job::QUEUED, 1));
    app.run_jobs().await;
    assert_eq!(receiver.hooks().len(), 1, "the retry waits for its backoff");

    // The retry: same event id, same bytes, signed again.
    app.state.clock.advance(Duration::hours(2));
    let before = app.state.clock.now().timestamp();
    app.run_jobs().await;
    let after = app.state.clock.now().timestamp();
    let hooks = receiver.hooks();
    assert_eq!(hooks.len(), 2, "{hooks:?}");
    check(&hooks[1], before, after);
    assert_eq!(hooks[1].event_id, hooks[0].event_id);
    assert_eq!(hooks[1].body, hooks[0].body);
    let hooked = deliveries(&app, "webhook").await;
    let tries: Vec<(&str, i32)> = hooked.iter().map(|d| (d.status.as_str(), d.attempt)).collect();
    assert_eq!(tries, vec![("failed", 1), ("sent", 2)]);
    assert!(jobs_of(&app, "deliver_webhook").await.is_empty());

    // A normal reading resolves the alert: alert.resolved, a new event id.
    post_readings(&app, &gh.owner, &sensor, "temp", &[(20.0, t0 + Duration::seconds(2))]).await;
    let before = app.state.clock.now().timestamp();
    app.run_jobs().await;
    let after = app.state.clock.now().timestamp();
    let hooks = receiver.hooks();
    assert_eq!(hooks.len(), 3, "{hooks:?}");
    let resolved = check(&hooks[2], before, after);
    assert_eq!(resolved["type"], "alert.resolved");
    assert_eq!(resolved["data"]["alert"]["id"], alert["id"]);
    assert_eq!(resolved["data"]["alert"]["status"], "resolved");
    assert_ne!(hooks[2].event_id, hooks[0].event_id);

    // A new alert, acknowledged by a person: alert.created, then alert.acknowledged.
    post_readings(&app, &gh.owner, &sensor, "temp", &[(50.0, t0 + Duration::seconds(3))]).await;
    app.run_jobs().await;
    let open = alerts_of(&app, &gh).await.into_iter().find(|a| a["status"] == "active").expect("a new alert");
    let res =
        authed(&app, Method::POST, &format!("/api/v1/alerts/{}/ack", open["id"].as_str().unwrap()), &gh.owner.access)
            .send()
            .await
            .unwrap();
    json_of(res, 200).await;
    let before = app.state.clock.now().timestamp();
    app.run_jobs().await;
    let after = app.state.clock.now().timestamp();
    let hooks = receiver.hooks();
    let kinds: Vec<String> = hooks.iter().map(Hook::kind).collect();
    assert_eq!(kinds, ["alert.created", "alert.created", "alert.resolved", "alert.created", "alert.acknowledged"]);
    let acked = check(&hooks[4], before, after);
    assert_eq!(acked["data"]["alert"]["id"], open["id"]);
    assert_eq!(acked["data"]["alert"]["status"], "acknowledged");
    let ids: BTreeSet<&str> = hooks.iter().map(|h| h.event_id.as_deref().unwrap()).collect();
    assert_eq!(ids.len(), 4, "one id per event, the retry reusing its own: {hooks:?}");

    // Without a webhook, nothing more is sent.
    let res = authed(&app, Method::DELETE, &webhook_path(&gh), &gh.owner.access).send().await.unwrap();
    assert_eq!(res.status(), 204);
    let res = authed(
        &app,
        Method::POST,
        &format!("/api/v1/alerts/{}/resolve", open["id"].as_str().unwrap()),
        &gh.owner.access,
    )
    .send()
    .await
    .unwrap();
    json_of(res, 200).await;
    app.run_jobs().await;
    assert_eq!(receiver.hooks().len(), 5);
    let hooked = deliveries(&app, "webhook").await;
    let tries: Vec<(&str, i32)> = hooked.iter().map(|d| (d.status.as_str(), d.attempt)).collect();
    assert_eq!(tries, vec![("failed", 1), ("sent", 2), ("sent", 1), ("sent", 1), ("sent", 1)]);

    // The alert in an event is the alert as the API shows it: same fields, same instants.
    let shown = json_of(get_authed(&app, &format!("/api/v1/alerts/{alert_id}"), &gh.owner.access).await, 200).await;
    assert_eq!(first["data"]["alert"]["createdAt"], shown["createdAt"], "alert.created vs GET /alerts/{alert_id}");
    assert_eq!(resolved["data"]["alert"], shown, "alert.resolved vs GET /alerts/{alert_id}");
}

#[tokio::test]
async fn webhooks_to_private_networks_are_refused_by_default() {
    let app = spawn_app_with(&[("JOB_CONCURRENCY", "0")], Router::new()).await;
    let gh = greenhouse(&app).await;
    let path = webhook_path(&gh);
    for url in [
        "http://127.0.0.1:9/x",
        "http://localhost:8080/hooks",
        "http://[::1]/hooks",
        "http://10.1.2.3/hooks",
        "http://192.168.1.10/hooks",
        "http://169.254.169.254/latest/meta-data",
    ] {
        let res = put_webhook(&app, &gh, &gh.owner, json!({"url": url})).await;
        let err = assert_error(res, 400, &path).await;
        assert_eq!(detail_fields(&err), vec!["url"], "{url}: {err}");
    }
    assert!(webhook::Entity::find_by_id(gh.grower_id).one(&app.state.db).await.unwrap().is_none());
    assert_error(get_authed(&app, &path, &gh.owner.access).await, 404, &path).await;
    // A public address is fine (nothing is called when it is set).
    let ok = json_of(put_webhook(&app, &gh, &gh.owner, json!({"url": "https://93.184.216.34/hooks"})).await, 200).await;
    assert!(ok["secret"].is_string(), "{ok}");
}

// ---------------------------------------------------------------------------------------------
// Email
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn critical_alerts_are_mailed_to_each_member() {
    let app = spawn_app_with(&[("JOB_CONCURRENCY", "0")], Router::new()).await;
    let gh = greenhouse(&app).await;
    let member = user_with_role(&app, "member", "GROWER").await;
    json_of(add_member(&app, &gh.admin, gh.grower_id, member.id, "MEMBER").await, 201).await;
    user_with_role(&app, "outsider", "GROWER").await;
    let sensor = create_device(&app, &gh.owner, gh.grower_id, "sensor").await;
    create_rule(&app, &gh.owner, gh.grower_id, "temp", "critical").await;
    create_rule(&app, &gh.owner, gh.grower_id, "humidity", "warning").await;
    let t0 = start_of_readings();
    // The sign-up mail goes first, out of the way.
    app.run_jobs().await;
    assert!(jobs_of(&app, "send_email").await.is_empty());
    let sign_up_mails = deliveries(&app, "email").await.len();

    post_readings(&app, &gh.owner, &sensor, "temp", &[(40.0, t0)]).await;
    assert_eq!(run_only(&app, &["evaluate_readings"]).await, 1);
    let alert = alert_on(&app, &gh, &sensor, "temp").await;
    let alert_id: Uuid = alert["id"].as_str().unwrap().parse().unwrap();

    // One send_email job per member, about this alert.
    let mails = jobs_of(&app, "send_email").await;
    let to: BTreeSet<String> = mails.iter().map(|j| j.payload["to"].as_str().unwrap().to_string()).collect();
    assert_eq!(to, BTreeSet::from([gh.owner.email.clone(), member.email.clone()]), "{mails:?}");
    for j in &mails {
        assert_eq!(j.status, job::QUEUED);
        assert_eq!(j.payload["alert_id"], alert["id"], "{:?}", j.payload);
        assert!(j.payload["subject"].as_str().is_some_and(|s| s.contains("temp")), "{:?}", j.payload);
        assert!(j.payload["body"].as_str().is_some_and(|b| b.contains(&alert_id.to_string())), "{:?}", j.payload);
    }

    // Without SMTP_URL the mail is logged, and each one recorded against the alert.
    app.run_jobs().await;
    assert!(jobs_of(&app, "send_email").await.is_empty());
    let emails = deliveries(&app, "email").await.split_off(sign_up_mails);
    let targets: BTreeSet<String> = emails.iter().map(|d| d.target.clone()).collect();
    assert_eq!(targets, to, "{emails:?}");
    for d in &emails {
        assert_eq!(d.status, "logged", "{d:?}");
        assert_eq!(d.alert_id, Some(alert_id));
        assert_eq!(d.attempt, 1);
    }

    // A warning alert is not mailed.
    post_readings(&app, &gh.owner, &sensor, "humidity", &[(90.0, t0 + Duration::seconds(1))]).await;
    app.run_jobs().await;
    alert_on(&app, &gh, &sensor, "humidity").await;
    assert_eq!(deliveries(&app, "email").await.len(), sign_up_mails + 2);
}

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
