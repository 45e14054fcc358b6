//! `mash seed`: idempotent initial data. The admin comes from `MASH_SEED_ADMIN_EMAIL` and
//! `MASH_SEED_ADMIN_PASSWORD` (created, or updated to that password and role); `--demo` adds
//! one demo user per role. Running it twice changes nothing the second time but passwords.
//!
//! The demo data is in `greenhouse.rs` (a grower, chambers, devices and a day of readings) and
//! `catalogue.rs` (categories and products).

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::{
    auth::{Role, password},
    config::Config,
    users::{entity::user, normalize_email},
};

mod catalogue;
mod greenhouse;

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
        report.extend(greenhouse::demo_greenhouse(db).await?);
        report.extend(catalogue::demo_catalogue(db, shop).await?);
    }
    Ok(report)
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
