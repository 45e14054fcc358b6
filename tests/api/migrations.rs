//! Every migration goes up, down and up again on the test database (SQLite or PostgreSQL),
//! and the cross-cutting tables behave as the rest of the system relies on.

use mash::{
    admin::config as system_config,
    audit::{self, Entry},
    migration::Migrator,
};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use sea_orm_migration::{MigrationStatus, MigratorTrait};
use serde_json::json;

use crate::helpers::TestDb;

async fn table_exists(db: &DatabaseConnection, table: &str) -> bool {
    let backend = db.get_database_backend();
    let sql = match backend {
        sea_orm::DatabaseBackend::Postgres => {
            "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1"
        }
        _ => "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = ?",
    };
    let row = db.query_one_raw(Statement::from_sql_and_values(backend, sql, [table.into()])).await.unwrap().unwrap();
    row.try_get::<i64>("", "n").unwrap() == 1
}

#[tokio::test]
async fn migrations_go_up_down_and_up_again() {
    let test_db = TestDb::new().await;
    let db = Database::connect(&test_db.url).await.unwrap();

    Migrator::up(&db, None).await.unwrap();
    assert!(table_exists(&db, "audit_logs").await);
    assert!(table_exists(&db, "system_config").await);
    assert!(
        Migrator::get_migration_with_status(&db).await.unwrap().iter().all(|m| m.status() == MigrationStatus::Applied)
    );

    Migrator::down(&db, None).await.unwrap();
    assert!(!table_exists(&db, "audit_logs").await);
    assert!(!table_exists(&db, "system_config").await);
    assert!(
        Migrator::get_migration_with_status(&db).await.unwrap().iter().all(|m| m.status() == MigrationStatus::Pending)
    );

    Migrator::up(&db, None).await.unwrap();
    assert!(table_exists(&db, "audit_logs").await);
    // Up is idempotent: nothing pending, nothing re-applied.
    Migrator::up(&db, None).await.unwrap();
    db.close().await.unwrap();
}

#[tokio::test]
async fn audit_logs_are_append_only() {
    let test_db = TestDb::new().await;
    let db = Database::connect(&test_db.url).await.unwrap();
    Migrator::up(&db, None).await.unwrap();

    let user = uuid::Uuid::now_v7();
    let id = audit::record(
        &db,
        Entry::new("user.login")
            .by(Some(user))
            .on("session", "s-1")
            .details(json!({"method": "password"}))
            .from_client(Some("127.0.0.1".into()), Some("tests".into())),
    )
    .await
    .unwrap();
    use sea_orm::EntityTrait;
    let row = audit::entity::Entity::find_by_id(id).one(&db).await.unwrap().expect("row written");
    assert_eq!(row.user_id, Some(user));
    assert_eq!(row.action, "user.login");
    assert_eq!(row.details, Some(json!({"method": "password"})));

    let update = db.execute_unprepared("UPDATE audit_logs SET action = 'tampered'").await;
    assert!(update.is_err(), "UPDATE must be refused");
    let delete = db.execute_unprepared("DELETE FROM audit_logs").await;
    assert!(delete.is_err(), "DELETE must be refused");
    let row = audit::entity::Entity::find_by_id(id).one(&db).await.unwrap().expect("row still there");
    assert_eq!(row.action, "user.login");
    db.close().await.unwrap();
}

#[tokio::test]
async fn system_config_round_trips_json_and_upserts() {
    let test_db = TestDb::new().await;
    let db = Database::connect(&test_db.url).await.unwrap();
    Migrator::up(&db, None).await.unwrap();

    assert!(system_config::get(&db, "shop.currency").await.unwrap().is_none());
    system_config::put(&db, "shop.currency", json!({"code": "EUR", "places": 2}), None).await.unwrap();
    let admin = uuid::Uuid::now_v7();
    system_config::put(&db, "shop.currency", json!({"code": "USD", "places": 2}), Some(admin)).await.unwrap();
    let entry = system_config::get(&db, "shop.currency").await.unwrap().unwrap();
    assert_eq!(entry.value, json!({"code": "USD", "places": 2}));
    assert_eq!(entry.updated_by, Some(admin));
    db.close().await.unwrap();
}
