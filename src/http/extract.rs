//! Extractors that refuse bad input in the contract's error shape, naming the bad field
//! (`Valid<…>`, which adds `garde` validation on top, is in `valid.rs`).
//!
//! Use these instead of axum's own `Json`, `Path` and `Query`: the rejections are the same
//! status codes (400, 413, 415) but come with `details` a client can show next to a form field.

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request, rejection::PathRejection},
    http::{header, request::Parts},
    response::{IntoResponse, Response},
};
use serde::{Serialize, de::DeserializeOwned};

use super::error::{AppError, FieldError};

/// JSON in (with field-level errors) and JSON out.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

fn is_json_content_type(parts_or_req: &axum::http::HeaderMap) -> bool {
    let Some(ct) = parts_or_req.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// Deserializes JSON, reporting the path of the first field that does not fit.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    // `\u0000` is valid JSON but no database text can hold it (PostgreSQL refuses it).
    if bytes.windows(6).any(|w| w.eq_ignore_ascii_case(b"\\u0000"))
        && let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes)
    {
        let mut path = String::new();
        if crate::util::find_nul(&value, &mut path) {
            let field = if path.is_empty() { "body".to_string() } else { path };
            return Err(AppError::BadRequest {
                message: format!("invalid {field}: must not contain NUL characters"),
                details: vec![FieldError::new(field, "must not contain NUL characters")],
            });
        }
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(v) => Ok(v),
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            // serde_json calls an out-of-range number (`1e999`) a syntax error, but it is a
            // bad value in a well-formed document: name its field like any other bad value.
            let out_of_range = inner.to_string().starts_with("number out of range");
            if inner.is_data() || out_of_range {
                let field = if path == "." { "body".to_string() } else { path };
                Err(AppError::BadRequest {
                    message: format!("invalid request body: {field}: {}", strip_position(&inner)),
                    details: vec![FieldError::new(field, strip_position(&inner))],
                })
            } else {
                Err(AppError::bad_request(format!("malformed JSON: {inner}")))
            }
        }
    }
}

/// serde_json appends " at line 1 column 17" to data errors; the field path says more.
fn strip_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json_content_type(req.headers()) {
            return Err(AppError::UnsupportedMediaType("expected `Content-Type: application/json`".into()));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                AppError::PayloadTooLarge("request body is too large".into())
            } else {
                AppError::bad_request("could not read the request body")
            }
        })?;
        parse_json(&bytes).map(Json)
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Path parameters; a value that does not parse (a non-UUID id) is a 400 naming the parameter.
#[derive(Debug, Clone, Copy)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::path::ErrorKind;
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                let (field, message) = match e.kind() {
                    ErrorKind::ParseErrorAtKey { key, expected_type, .. } => {
                        (key.clone(), format!("expected {}", friendly_type(expected_type)))
                    }
                    ErrorKind::InvalidUtf8InPathParam { key } => (key.clone(), "invalid UTF-8".to_string()),
                    ErrorKind::DeserializeError { key, message, .. } => (key.clone(), message.clone()),
                    ErrorKind::ParseError { expected_type, .. }
                    | ErrorKind::ParseErrorAtIndex { expected_type, .. } => {
                        ("path".to_string(), format!("expected {}", friendly_type(expected_type)))
                    }
                    other => ("path".to_string(), other.to_string()),
                };
                Err(AppError::invalid_field(field, message))
            }
            Err(other) => Err(AppError::Internal(anyhow::anyhow!("path extraction failed: {other}"))),
        }
    }
}

fn friendly_type(rust_type: &str) -> &str {
    match rust_type {
        t if t.ends_with("Uuid") => "a UUID",
        t if t.starts_with('u') || t.starts_with('i') => "an integer",
        t => t,
    }
}

/// Query string parameters, with the offending parameter named on error.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let raw = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(raw.as_bytes()));
        serde_path_to_error::deserialize::<_, T>(de).map(Query).map_err(|err| {
            let path = err.path().to_string();
            let field = if path == "." { "query".to_string() } else { path };
            AppError::invalid_field(field, err.into_inner().to_string())
        })
    }
}
