//! Every realtime path in one table: its pattern, who may subscribe, and how its snapshot is
//! read. A new path is one entry in [`PATHS`] plus a test.

use std::{collections::BTreeMap, future::Future, pin::Pin};

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    alerts::{AlertOut, entity::alert},
    auth::AuthUser,
    greenhouse::{
        access::{self, Need},
        devices::{LatestValue, in_sync},
        entity::device,
    },
    http::AppError,
    shop::{entity::order, orders},
    state::AppState,
};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a subscription was refused, as the `error` message says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `invalid`, `not_found`, `forbidden` or `unavailable`.
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

/// A snapshot: the path's current state, and for versioned paths its version and when it
/// changed (an event for a very recent change may still be on its way).
pub struct Snapshot {
    pub data: Value,
    pub version: Option<i64>,
    pub changed_at: Option<chrono::DateTime<chrono::Utc>>,
}

type Authorize = for<'a> fn(&'a AppState, &'a AuthUser, Uuid) -> BoxFuture<'a, Result<(), AppError>>;
type Read = for<'a> fn(&'a AppState, Uuid) -> BoxFuture<'a, Result<Snapshot, AppError>>;

/// One kind of path.
pub struct PathKind {
    /// Segments, `{id}` standing for a UUID.
    pub pattern: &'static str,
    pub authorize: Authorize,
    pub snapshot: Read,
}

/// The table.
pub static PATHS: &[PathKind] = &[
    PathKind {
        pattern: "/live/sensors/{id}",
        authorize: |s, u, id| Box::pin(device_reader(s, u, id)),
        snapshot: |s, id| Box::pin(live_sensors(s, id)),
    },
    PathKind {
        pattern: "/controls/{id}/desired",
        authorize: |s, u, id| Box::pin(device_reader(s, u, id)),
        snapshot: |s, id| Box::pin(desired(s, id)),
    },
    PathKind {
        pattern: "/controls/{id}/reported",
        authorize: |s, u, id| Box::pin(device_reader(s, u, id)),
        snapshot: |s, id| Box::pin(reported(s, id)),
    },
    PathKind {
        pattern: "/alerts/{id}",
        authorize: |s, u, id| Box::pin(grower_reader(s, u, id)),
        snapshot: |s, id| Box::pin(open_alerts(s, id)),
    },
    PathKind {
        pattern: "/presence/{id}",
        authorize: |s, u, id| Box::pin(grower_reader(s, u, id)),
        snapshot: |s, id| Box::pin(super::presence::snapshot(s, id)),
    },
    PathKind {
        pattern: "/orders/{id}",
        authorize: |s, u, id| Box::pin(own_orders(s, u, id)),
        snapshot: |s, id| Box::pin(open_orders(s, id)),
    },
];

/// The kind of `path` and its id, or why it is not a path.
pub fn parse(path: &str) -> Result<(&'static PathKind, Uuid), Refusal> {
    let segments: Vec<&str> = path.split('/').collect();
    for kind in PATHS {
        let pattern: Vec<&str> = kind.pattern.split('/').collect();
        if pattern.len() != segments.len() {
            continue;
        }
        let mut id = None;
        let mut matched = true;
        for (p, s) in pattern.iter().zip(&segments) {
            if *p == "{id}" {
                match Uuid::parse_str(s) {
                    Ok(u) => id = Some(u),
                    Err(_) => return Err(Refusal::new("invalid", format!("{path}: `{s}` is not a UUID"))),
                }
            } else if p != s {
                matched = false;
                break;
            }
        }
        if let (true, Some(id)) = (matched, id) {
            // One spelling per path: events are published under the lowercase hyphenated id,
            // so `/alerts/6F96…` would get its snapshot and then never an event.
            let canonical = kind.pattern.replace("{id}", &id.hyphenated().to_string());
            if canonical != path {
                return Err(Refusal::new(
                    "invalid",
                    format!("{path}: write the id in lowercase with hyphens: {canonical}"),
                ));
            }
            return Ok((kind, id));
        }
    }
    Err(Refusal::new("invalid", format!("{path}: not a realtime path")))
}

/// Whether `user` may read `path`, or the refusal to send.
///
/// A thing that does not exist and a thing the caller may not see are refused alike
/// (`forbidden`), as the HTTP API answers both with the same 404, so ids cannot be probed. An
/// ADMIN, who may see everything, is told `not_found`.
pub async fn authorize(state: &AppState, user: &AuthUser, path: &str) -> Result<(), Refusal> {
    let (kind, id) = parse(path)?;
    match (kind.authorize)(state, user, id).await {
        Ok(()) => Ok(()),
        Err(AppError::NotFound(m)) if user.is_admin() => Err(Refusal::new("not_found", format!("{path}: {m}"))),
        Err(AppError::NotFound(_) | AppError::Forbidden(_) | AppError::ForbiddenWith { .. }) => {
            Err(Refusal::new("forbidden", format!("{path}: not a path you may read")))
        }
        Err(e) => {
            tracing::warn!(error = %e, path, "could not check a realtime subscription");
            Err(Refusal::new("unavailable", format!("{path}: could not be checked now; try again")))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Who may read
// ---------------------------------------------------------------------------------------------

async fn device_reader(state: &AppState, user: &AuthUser, id: Uuid) -> Result<(), AppError> {
    access::device(&state.db, user, id, Need::Read).await.map(|_| ())
}

async fn grower_reader(state: &AppState, user: &AuthUser, id: Uuid) -> Result<(), AppError> {
    access::grower(&state.db, user, id, Need::Read).await.map(|_| ())
}

async fn own_orders(_: &AppState, user: &AuthUser, id: Uuid) -> Result<(), AppError> {
    if user.is_admin() || user.user_id == id { Ok(()) } else { Err(AppError::Forbidden("not your orders".into())) }
}

// ---------------------------------------------------------------------------------------------
// Snapshots
// ---------------------------------------------------------------------------------------------

fn plain(data: Value) -> Snapshot {
    Snapshot { data, version: None, changed_at: None }
}

async fn live_device(state: &AppState, id: Uuid) -> Result<device::Model, AppError> {
    access::find_live_device(&state.db, id).await?.ok_or_else(|| AppError::NotFound("device not found".into()))
}

async fn live_sensors(state: &AppState, id: Uuid) -> Result<Snapshot, AppError> {
    let latest = crate::telemetry::store::latest(&state.db, id).await?;
    let reported: BTreeMap<String, LatestValue> =
        latest.into_iter().map(|(metric, value, ts)| (metric, LatestValue { value, ts })).collect();
    Ok(plain(json!({ "deviceId": id, "reported": reported })))
}

/// `{deviceId, desired, desiredVersion}`: the snapshot and every event of `/controls/{id}/desired`.
pub fn desired_data(id: Uuid, desired: &Value, version: i64) -> Value {
    json!({ "deviceId": id, "desired": desired, "desiredVersion": version })
}

async fn desired(state: &AppState, id: Uuid) -> Result<Snapshot, AppError> {
    let d = live_device(state, id).await?;
    Ok(Snapshot {
        data: desired_data(id, &d.desired, d.desired_version),
        version: Some(d.desired_version),
        changed_at: d.desired_updated_at,
    })
}

/// The snapshot and every event of `/controls/{id}/reported`.
pub fn reported_data(d: &device::Model) -> Value {
    json!({
        "deviceId": d.id,
        "reported": d.reported_state,
        "reportedVersion": d.reported_version,
        "reportedAt": d.reported_at,
        "inSync": in_sync(d),
    })
}

async fn reported(state: &AppState, id: Uuid) -> Result<Snapshot, AppError> {
    Ok(plain(reported_data(&live_device(state, id).await?)))
}

async fn open_alerts(state: &AppState, grower_id: Uuid) -> Result<Snapshot, AppError> {
    let alerts: Vec<AlertOut> = alert::Entity::find()
        .filter(alert::Column::GrowerId.eq(grower_id))
        .filter(alert::Column::Status.ne(alert::AlertStatus::Resolved))
        .order_by_asc(alert::Column::CreatedAt)
        .order_by_asc(alert::Column::Id)
        .all(&state.db)
        .await?
        .iter()
        .map(AlertOut::from)
        .collect();
    Ok(plain(json!({ "alerts": alerts })))
}

async fn open_orders(state: &AppState, user_id: Uuid) -> Result<Snapshot, AppError> {
    let open = [orders::OrderStatus::Pending.as_str(), orders::OrderStatus::Paid.as_str()];
    let rows = order::Entity::find()
        .filter(order::Column::UserId.eq(user_id))
        .filter(order::Column::Status.is_in(open))
        .order_by_asc(order::Column::CreatedAt)
        .order_by_asc(order::Column::Id)
        .all(&state.db)
        .await?;
    let orders = orders::orders_out(&state.db, &rows).await?;
    Ok(plain(json!({ "orders": orders })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_to_their_kind_and_id() {
        let id = Uuid::now_v7();
        for (path, pattern) in [
            (format!("/live/sensors/{id}"), "/live/sensors/{id}"),
            (format!("/controls/{id}/desired"), "/controls/{id}/desired"),
            (format!("/controls/{id}/reported"), "/controls/{id}/reported"),
            (format!("/alerts/{id}"), "/alerts/{id}"),
            (format!("/presence/{id}"), "/presence/{id}"),
            (format!("/orders/{id}"), "/orders/{id}"),
        ] {
            let (kind, got) = parse(&path).unwrap();
            assert_eq!((kind.pattern, got), (pattern, id));
        }
    }

    #[test]
    fn anything_else_is_invalid() {
        let id = Uuid::now_v7();
        for path in [
            "".to_string(),
            "/".into(),
            "/alerts".into(),
            "/alerts/not-a-uuid".into(),
            format!("/alerts/{id}/extra"),
            format!("/controls/{id}"),
            format!("/controls/{id}/other"),
            format!("alerts/{id}"),
            format!("/Alerts/{id}"),
            format!("/alerts/{}", id.to_string().to_uppercase()),
            format!("/alerts/{}", id.simple()),
            format!("/alerts/{}", id.braced()),
        ] {
            assert_eq!(parse(&path).err().map(|r| r.code), Some("invalid"), "{path}");
        }
    }
}
