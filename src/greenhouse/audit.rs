//! The audit trail of greenhouse changes: every change a person makes to a grower, its members
//! or its devices is recorded in the transaction that makes it, so both commit or neither does.

use sea_orm::DbErr;
use serde_json::Value;
use uuid::Uuid;

use crate::{
    audit::Entry,
    auth::{AuthUser, ClientMeta},
    db::WriteTxn,
};

/// Records `action` by `me` (from `client`) on `resource` (`("grower", id)`, `("device", id)`).
pub async fn record(
    txn: &WriteTxn,
    me: &AuthUser,
    client: &ClientMeta,
    action: &str,
    resource: (&str, Uuid),
    details: Option<Value>,
) -> Result<(), DbErr> {
    let mut entry = Entry::new(action).by(Some(me.user_id)).on(resource.0, resource.1).client(client);
    if let Some(details) = details {
        entry = entry.details(details);
    }
    crate::audit::record(txn, entry).await.map(|_| ())
}
