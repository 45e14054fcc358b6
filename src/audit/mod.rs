//! The audit trail: who did what to which resource, from where, and when.
//! Rows are append-only (the migration installs triggers that refuse UPDATE and DELETE).

use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait};
use uuid::Uuid;

pub mod entity;

pub use entity::Model as AuditLog;

/// One event to record. Build it with [`Entry::new`] and the `with_*` methods.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    pub user_id: Option<Uuid>,
    pub action: String,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub details: Option<serde_json::Value>,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
}

impl Entry {
    pub fn new(action: impl Into<String>) -> Self {
        Self { action: action.into(), ..Self::default() }
    }
    pub fn by(mut self, user_id: Option<Uuid>) -> Self {
        self.user_id = user_id;
        self
    }
    pub fn on(mut self, resource_type: &str, resource_id: impl ToString) -> Self {
        self.resource_type = Some(resource_type.to_string());
        self.resource_id = Some(resource_id.to_string());
        self
    }
    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }
    /// Where the request came from (client IP and user agent).
    pub fn client(self, client: &crate::auth::ClientMeta) -> Self {
        self.from_client(client.ip_string(), client.user_agent.clone())
    }

    pub fn from_client(mut self, ip: Option<String>, user_agent: Option<String>) -> Self {
        self.ip_address = ip;
        // A header is attacker-controlled: keep it bounded.
        self.user_agent = user_agent.map(|ua| ua.chars().take(512).collect());
        self
    }
}

/// Writes one audit row. Takes any connection, so callers record inside their own transaction
/// and the audit row commits (or rolls back) with the change it describes.
pub async fn record<C: ConnectionTrait>(db: &C, entry: Entry) -> Result<Uuid, sea_orm::DbErr> {
    let (id, row) = insert(entry);
    db.execute(&row).await?;
    Ok(id)
}

/// The insert that [`record`] runs, for writing the entry together with other rows
/// ([`crate::db::Db::insert_together`]); with the new entry's id.
pub fn insert(entry: Entry) -> (Uuid, sea_orm::sea_query::InsertStatement) {
    use sea_orm::QueryTrait;
    let id = Uuid::now_v7();
    let row = entity::ActiveModel {
        id: Set(id),
        user_id: Set(entry.user_id),
        action: Set(entry.action),
        resource_type: Set(entry.resource_type),
        resource_id: Set(entry.resource_id),
        details: Set(entry.details),
        ip_address: Set(entry.ip_address),
        user_agent: Set(entry.user_agent),
        created_at: Set(chrono::Utc::now()),
    };
    (id, entity::Entity::insert(row).into_query())
}
