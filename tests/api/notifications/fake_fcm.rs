//! The service account the app signs its grants with, and a fake FCM that is also the OAuth2
//! token endpoint: it verifies each JWT-bearer grant as Google does, issues access tokens, and
//! records every message (with answers scripted per registration token).

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method as HttpMethod, Uri},
    response::Response,
};
use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::helpers::{TestApp, header, reply, spawn_app_with};

// ---------------------------------------------------------------------------------------------
// The service account
// ---------------------------------------------------------------------------------------------

/// Test-only key pair (PKCS#8 private key, SPKI public key). Never use it anywhere else.
const FCM_PRIVATE_KEY: &str = include_str!("../../fixtures/fcm-test-key.pem");
const FCM_PUBLIC_KEY: &str = include_str!("../../fixtures/fcm-test-key.pub.pem");
pub(super) const CLIENT_EMAIL: &str = "mash-push@mash-test-project.iam.gserviceaccount.com";
const KEY_ID: &str = "0123456789abcdef0123456789abcdef01234567";
pub(super) const PROJECT: &str = "mash-test-project";
pub(super) const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// A service-account key file as the Firebase console hands it out.
pub(super) fn service_account(token_uri: &str) -> String {
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
pub(super) struct Grant {
    pub(super) path: String,
    pub(super) claims: Value,
}

/// A message the fake FCM received.
#[derive(Debug, Clone)]
pub(super) struct Sent {
    pub(super) path: String,
    pub(super) authorization: Option<String>,
    pub(super) content_type: Option<String>,
    pub(super) body: Value,
}

impl Sent {
    pub(super) fn token(&self) -> &str {
        self.body["message"]["token"].as_str().unwrap_or_default()
    }
}

#[derive(Default)]
struct FcmLedger {
    pub(super) grants: Vec<Grant>,
    /// Why grants were refused (empty when every grant verified).
    pub(super) refused: Vec<String>,
    /// Access tokens issued.
    pub(super) issued: Vec<String>,
    pub(super) sent: Vec<Sent>,
    /// Requests to any other path.
    pub(super) other: Vec<String>,
    /// Answers given instead of success, per registration token, each once.
    scripted: HashMap<String, VecDeque<(u16, Value)>>,
}

#[derive(Clone)]
pub(super) struct FakeFcm {
    addr: SocketAddr,
    ledger: Arc<Mutex<FcmLedger>>,
}

impl FakeFcm {
    pub(super) async fn start() -> FakeFcm {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = FakeFcm { addr: listener.local_addr().unwrap(), ledger: Arc::default() };
        let app = Router::new().fallback(fcm_endpoint).with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        fake
    }

    pub(super) fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(super) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    pub(super) fn grants(&self) -> Vec<Grant> {
        self.ledger.lock().unwrap().grants.clone()
    }

    pub(super) fn refused(&self) -> Vec<String> {
        self.ledger.lock().unwrap().refused.clone()
    }

    pub(super) fn issued(&self) -> Vec<String> {
        self.ledger.lock().unwrap().issued.clone()
    }

    pub(super) fn sent(&self) -> Vec<Sent> {
        self.ledger.lock().unwrap().sent.clone()
    }

    pub(super) fn other(&self) -> Vec<String> {
        self.ledger.lock().unwrap().other.clone()
    }

    /// The next message to `token` gets this answer.
    pub(super) fn script(&self, token: &str, status: u16, body: Value) {
        self.ledger.lock().unwrap().scripted.entry(token.to_string()).or_default().push_back((status, body));
    }

    /// The OAuth2 token endpoint: verifies the JWT-bearer grant as Google does.
    pub(super) fn grant(&self, path: &str, headers: &HeaderMap, body: &[u8]) -> Response {
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
    pub(super) fn send(&self, path: &str, headers: &HeaderMap, body: &[u8]) -> Response {
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
pub(super) fn unregistered() -> Value {
    json!({"error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND",
        "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}]}})
}

/// The app, configured for FCM against `fake` (token endpoint at `/token`), plus `extra`.
pub(super) async fn fcm_app(fake: &FakeFcm, extra: &[(&str, &str)]) -> TestApp {
    let account = service_account(&fake.url("/token"));
    let base = fake.base();
    let mut vars =
        vec![("JOB_CONCURRENCY", "0"), ("FCM_SERVICE_ACCOUNT_JSON", account.as_str()), ("FCM_API_BASE", base.as_str())];
    vars.extend_from_slice(extra);
    spawn_app_with(&vars, Router::new()).await
}
