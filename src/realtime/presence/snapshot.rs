//! The `/presence/{growerId}` snapshot: every member of the grower, whether they are online
//! (from the store) and when they were last seen (from `user_presence`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::{MemberPresence, PresenceError, entity};
use crate::{greenhouse::entity::member, ids::GrowerId, realtime::paths::Snapshot, state::AppState};

/// `{members:[{userId, online, lastSeenAt}]}`, members in the order they joined.
pub async fn snapshot(state: &AppState, grower: GrowerId) -> Result<Snapshot, PresenceError> {
    let users: Vec<Uuid> = member::Entity::find()
        .select_only()
        .column(member::Column::UserId)
        .filter(member::Column::GrowerId.eq(grower))
        .order_by_asc(member::Column::CreatedAt)
        .order_by_asc(member::Column::UserId)
        .into_tuple()
        .all(&state.db)
        .await?;
    let seen: HashMap<Uuid, DateTime<Utc>> = entity::Entity::find()
        .filter(entity::Column::UserId.is_in(users.iter().copied()))
        .all(&state.db)
        .await?
        .into_iter()
        .map(|p| (p.user_id, p.last_seen_at))
        .collect();
    let users: Vec<_> = users.into_iter().map(Into::into).collect();
    let online = state.realtime.presence.online(grower, &users).await?;
    let members: Vec<MemberPresence> = users
        .iter()
        .map(|u| MemberPresence { user_id: *u, online: online.contains(u), last_seen_at: seen.get(&u.0).copied() })
        .collect();
    Ok(Snapshot { data: serde_json::json!({ "members": members }), version: None, changed_at: None })
}
