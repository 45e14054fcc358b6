//! The demo greenhouse: a grower owned by the demo grower user, two chambers, four devices and
//! a day of plausible readings.

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::DEMO_USERS;
use crate::users::entity::user;

/// The demo grower: two chambers, four devices and a day of readings at one per minute, so
/// history and live state show something at once. Skipped when it exists already.
pub(super) async fn demo_greenhouse(db: &crate::db::Db) -> anyhow::Result<Vec<String>> {
    use crate::greenhouse::entity::{chamber, grower, member};
    const NAME: &str = "Demo Greenhouse";
    if grower::Entity::find().filter(grower::Column::Name.eq(NAME)).one(db).await?.is_some() {
        return Ok(vec![format!("grower: {NAME:?} exists, left as it is")]);
    }
    let owner = user::Entity::find()
        .filter(user::Column::Email.eq(DEMO_USERS[0].0))
        .one(db)
        .await?
        .ok_or_else(|| anyhow::anyhow!("demo grower user missing"))?;
    let now = Utc::now();
    let grower_id = Uuid::now_v7();
    grower::ActiveModel { id: Set(grower_id), name: Set(NAME.into()), created_at: Set(now), updated_at: Set(now) }
        .insert(db)
        .await?;
    member::ActiveModel {
        grower_id: Set(grower_id),
        user_id: Set(owner.id),
        role: Set(crate::greenhouse::MemberRole::Owner),
        created_at: Set(now),
    }
    .insert(db)
    .await?;
    let mut report = vec![format!("grower: {NAME:?} created, owned by {}", owner.email)];
    let mut readings = Vec::new();
    for (c, chamber_name) in ["Chamber A", "Chamber B"].iter().enumerate() {
        let chamber_id = Uuid::now_v7();
        chamber::ActiveModel {
            id: Set(chamber_id),
            grower_id: Set(grower_id),
            name: Set((*chamber_name).into()),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(db)
        .await?;
        for d in 0..2 {
            let token = crate::greenhouse::device_auth::issue();
            let name = format!("Climate sensor {}{}", (b'A' + c as u8) as char, d + 1);
            let mut row = crate::greenhouse::new_device(
                crate::greenhouse::NewDevice {
                    grower_id,
                    chamber_id: Some(chamber_id),
                    name: name.clone(),
                    kind: Some("sensor".into()),
                    metadata: Some(serde_json::json!({ "model": "demo-th-1", "firmware": "1.0.0" })),
                    desired: serde_json::json!({ "targetTemp": 22.0, "targetHumidity": 65 }),
                },
                &token,
            );
            row.last_seen_at = Set(Some(now));
            let id = row.insert(db).await?.id;
            report.push(format!("device: {name} ({id}) token {}", token.token));
            readings.extend(demo_day(id, now, (c * 2 + d) as f64));
        }
    }
    let partitions = crate::telemetry::store::Partitions::default();
    let total = readings.len();
    for chunk in readings.chunks_mut(crate::telemetry::batch::MAX_BATCH) {
        crate::telemetry::store::insert(db, &partitions, chunk, &[]).await?;
    }
    report.push(format!("telemetry: {total} readings over the last 24 hours"));
    Ok(report)
}

/// A plausible day: temperature and humidity following the sun, one reading a minute.
fn demo_day(device_id: Uuid, now: chrono::DateTime<Utc>, phase: f64) -> Vec<crate::telemetry::store::Reading> {
    use crate::telemetry::store::Reading;
    let start = now - chrono::Duration::hours(24);
    let start = chrono::DateTime::from_timestamp(start.timestamp() - start.timestamp() % 60, 0).unwrap_or(start);
    (0..1440)
        .flat_map(|m| {
            let ts = start + chrono::Duration::minutes(m);
            let day = (m as f64 / 1440.0 * std::f64::consts::TAU + phase * 0.3).sin();
            let jitter = ((m as f64 * 12.9898 + phase).sin() * 43758.5453).fract() * 0.4;
            let round = |v: f64| (v * 100.0).round() / 100.0;
            [
                Reading { device_id, metric: "temperature".into(), ts, value: round(21.0 + 4.0 * day + jitter) },
                Reading { device_id, metric: "humidity".into(), ts, value: round(65.0 - 10.0 * day + jitter * 5.0) },
            ]
        })
        .collect()
}
