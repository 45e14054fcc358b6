//! The telemetry routes: `POST /telemetry/batch` and `GET /devices/{id}/telemetry`. Every
//! refused batch is counted in `telemetry_rejected_total` by the status it is answered with.

use axum::{extract::State, http::StatusCode};
use uuid::Uuid;

use super::{
    TelemetryError,
    extract::{BatchBody, Caller},
    history, ingest,
    types::{BatchOut, ItemIn, TelemetryOut, TelemetryQuery},
};
use crate::{
    auth::AuthUser,
    http::{AppError, Json, Path, Query},
    state::AppState,
};

/// Stores a batch of readings. The whole batch is validated first: one bad item refuses it
/// with 400 naming the item (`items[3].ts`), and nothing is stored. A reading already stored
/// (same device, metric and ts) is counted in `duplicates` and not stored twice, so resending
/// a batch after a lost answer is safe. 202 comes only after the readings are committed.
///
/// A device (`Authorization: Device <token>`) may only write its own readings; a person needs
/// write access to each device's grower.
#[utoipa::path(post, path = "/telemetry/batch", tag = "telemetry", security(("bearer" = []), ("device" = [])),
    request_body(content = Vec<ItemIn>, description = "1 to 5000 readings"),
    responses((status = 202, body = BatchOut), (status = 400), (status = 401), (status = 403), (status = 413), (status = 415)))]
#[tracing::instrument(skip_all)]
pub async fn post_batch(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<BatchBody, TelemetryError>,
) -> Result<(StatusCode, Json<BatchOut>), AppError> {
    let result = match body {
        Ok(BatchBody(items)) => ingest::accept(&state, &caller, items).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(out) => Ok((StatusCode::ACCEPTED, Json(out))),
        Err(e) => {
            let e = AppError::from(e);
            ingest::rejected(&state, "http", reject_reason(e.status()));
            Err(e)
        }
    }
}

fn reject_reason(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "invalid",
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => "forbidden",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "content_type",
        s if s.is_server_error() => "unavailable",
        _ => "other",
    }
}

/// History of one metric of a device. With `bucket`, one point per UTC-aligned bucket that has
/// readings, aggregated in SQL (`ts` is the bucket's start); without it, raw readings in time
/// order, paged by `cursor`.
#[utoipa::path(get, path = "/devices/{id}/telemetry", tag = "telemetry", security(("bearer" = [])),
    params(("id" = Uuid, Path), TelemetryQuery),
    responses((status = 200, body = TelemetryOut), (status = 400), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all, fields(device_id = %id))]
pub async fn get_telemetry(
    State(state): State<AppState>,
    me: AuthUser,
    Path(id): Path<Uuid>,
    Query(q): Query<TelemetryQuery>,
) -> Result<Json<TelemetryOut>, AppError> {
    Ok(Json(history::read(&state.db, &me, id, &q).await?))
}
