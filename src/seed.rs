//! `mash seed`: idempotent initial data. The admin comes from `MASH_SEED_ADMIN_EMAIL` and
//! `MASH_SEED_ADMIN_PASSWORD` (created, or updated to that password and role); `--demo` adds
//! one demo user per role. Running it twice changes nothing the second time but passwords.

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::{
    auth::{Role, password},
    config::Config,
    users::{entity::user, normalize_email},
};

/// Demo accounts; their password is `MASH_SEED_DEMO_PASSWORD` or the default below.
pub const DEMO_USERS: &[(&str, &str, Role)] = &[
    ("grower@demo.mash.local", "Demo Grower", Role::Grower),
    ("customer@demo.mash.local", "Demo Customer", Role::Customer),
    ("vendor@demo.mash.local", "Demo Vendor", Role::Vendor),
];
pub const DEFAULT_DEMO_PASSWORD: &str = "greenhouse-demo-2026";

/// The size of the demo catalogue.
#[derive(Debug, Clone, Copy)]
pub struct DemoShop {
    pub products: usize,
    pub categories: usize,
}

/// Runs the seed; returns one line per account touched. `demo` adds the demo data.
pub async fn run(config: &Config, db: &crate::db::Db, demo: Option<DemoShop>) -> anyhow::Result<Vec<String>> {
    let passwords = password::Passwords::new();
    let mut report = Vec::new();
    match (&config.auth.seed_admin_email, &config.auth.seed_admin_password) {
        (Some(email), Some(pw)) => {
            passwords.check_policy("MASH_SEED_ADMIN_PASSWORD", pw.expose()).map_err(|e| anyhow::anyhow!("{e}"))?;
            report.push(upsert(db, email, "Administrator", Role::Admin, pw.expose()).await?);
        }
        (None, None) => report.push("admin: skipped (set MASH_SEED_ADMIN_EMAIL and MASH_SEED_ADMIN_PASSWORD)".into()),
        _ => anyhow::bail!("set both MASH_SEED_ADMIN_EMAIL and MASH_SEED_ADMIN_PASSWORD, or neither"),
    }
    if let Some(shop) = demo {
        let pw = std::env::var("MASH_SEED_DEMO_PASSWORD").unwrap_or_else(|_| DEFAULT_DEMO_PASSWORD.into());
        for (email, name, role) in DEMO_USERS {
            report.push(upsert(db, email, name, *role, &pw).await?);
        }
        report.extend(demo_greenhouse(db).await?);
        report.extend(demo_catalogue(db, shop).await?);
    }
    Ok(report)
}

/// The demo grower: two chambers, four devices and a day of readings at one per minute, so
/// history and live state show something at once. Skipped when it exists already.
async fn demo_greenhouse(db: &crate::db::Db) -> anyhow::Result<Vec<String>> {
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
        role: Set("OWNER".into()),
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

const DEMO_CATEGORIES: &[&str] = &[
    "Seeds",
    "Seedlings",
    "Substrates",
    "Fertilisers",
    "Irrigation",
    "Sensors",
    "Lighting",
    "Climate control",
    "Tools",
    "Pots and trays",
    "Plant protection",
    "Hydroponics",
];
const DEMO_WORDS: &[&str] = &[
    "Tomato",
    "Basil",
    "Cucumber",
    "Pepper",
    "Lettuce",
    "Strawberry",
    "Coco coir",
    "Perlite",
    "LED panel",
    "Drip line",
    "Humidity sensor",
    "Thermostat",
    "Pruning shears",
    "Seed tray",
    "Neem oil",
    "Nutrient mix",
];
const DEMO_ADJECTIVES: &[&str] =
    &["Organic", "Heirloom", "Compact", "Professional", "Budget", "Premium", "Dwarf", "Giant"];

/// The demo catalogue: `shop.categories` categories and `shop.products` products with varied
/// prices and stock (a tenth of them sold out), a third owned by the demo vendor. Skipped when
/// products exist already. Inserted in chunks, so 100k products take seconds.
async fn demo_catalogue(db: &crate::db::Db, shop: DemoShop) -> anyhow::Result<Vec<String>> {
    use sea_orm::PaginatorTrait;

    use crate::shop::entity::{category, product};
    if product::Entity::find().count(db).await? > 0 {
        return Ok(vec!["catalogue: products exist, left as they are".into()]);
    }
    let vendor = user::Entity::find().filter(user::Column::Email.eq(DEMO_USERS[2].0)).one(db).await?.map(|u| u.id);
    let now = Utc::now();
    let categories: Vec<category::ActiveModel> = (0..shop.categories)
        .map(|i| {
            let base = DEMO_CATEGORIES[i % DEMO_CATEGORIES.len()];
            let name = if i < DEMO_CATEGORIES.len() {
                base.to_string()
            } else {
                format!("{base} {}", i / DEMO_CATEGORIES.len() + 1)
            };
            category::ActiveModel {
                id: Set(Uuid::now_v7()),
                name: Set(name),
                description: Set(Some(format!("Everything for the greenhouse: {}", base.to_lowercase()))),
                deleted_at: Set(None),
                created_at: Set(now),
                updated_at: Set(now),
            }
        })
        .collect();
    let category_ids: Vec<Uuid> = categories.iter().map(|c| *c.id.as_ref()).collect();
    for chunk in categories.chunks(500) {
        category::Entity::insert_many(chunk.to_vec()).exec_without_returning(db).await?;
    }
    let products = (0..shop.products).map(|i| {
        // A cheap deterministic spread (no RNG, so every seed gives the same catalogue).
        let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        let word = DEMO_WORDS[i % DEMO_WORDS.len()];
        let adjective = DEMO_ADJECTIVES[(h as usize) % DEMO_ADJECTIVES.len()];
        product::ActiveModel {
            id: Set(Uuid::now_v7()),
            sku: Set(format!("DEMO-{i:06}")),
            name: Set(format!("{adjective} {word} #{i}")),
            description: Set(Some(format!("{adjective} {} for growers, lot {}", word.to_lowercase(), h % 1000))),
            price_minor: Set(99 + (h % 20_000) as i64),
            stock: Set(if i % 10 == 0 { 0 } else { (h % 500) as i64 + 1 }),
            category_id: Set(category_ids[i % category_ids.len()]),
            vendor_id: Set(if i % 3 == 0 { vendor } else { None }),
            deleted_at: Set(None),
            created_at: Set(now + chrono::Duration::milliseconds(i as i64)),
            updated_at: Set(now),
        }
    });
    let products: Vec<product::ActiveModel> = products.collect();
    for chunk in products.chunks(1000) {
        product::Entity::insert_many(chunk.to_vec()).exec_without_returning(db).await?;
    }
    Ok(vec![format!("catalogue: {} categories, {} products", shop.categories, shop.products)])
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

async fn upsert(db: &crate::db::Db, email: &str, name: &str, role: Role, pw: &str) -> anyhow::Result<String> {
    let email = normalize_email(email);
    let hash = tokio::task::spawn_blocking({
        let pw = pw.to_owned();
        move || password::hash_blocking(&pw)
    })
    .await?
    .map_err(|e| anyhow::anyhow!("hashing: {e}"))?;
    let now = Utc::now();
    match user::Entity::find().filter(user::Column::Email.eq(email.as_str())).one(db).await? {
        Some(existing) => {
            let mut active: user::ActiveModel = existing.into();
            active.password_hash = Set(Some(hash));
            active.role = Set(role);
            active.disabled_at = Set(None);
            active.deleted_at = Set(None);
            active.email_verified = Set(true);
            active.updated_at = Set(now);
            active.update(db).await?;
            Ok(format!("{}: {email} updated", role.name()))
        }
        None => {
            crate::users::NewUser {
                email: email.clone(),
                name,
                role,
                password_hash: Some(hash),
                email_verified: true,
                external: None,
            }
            .into_active(Uuid::now_v7())
            .insert(db)
            .await?;
            Ok(format!("{}: {email} created", role.name()))
        }
    }
}
