//! Presence in process, without Redis: a count of open connections per (grower, user). A dead
//! connection is closed by its transport after the idle timeout, and leaves then.

use std::{
    collections::{HashMap, HashSet},
    sync::{Mutex, MutexGuard},
};

use futures_util::future::{BoxFuture, FutureExt, ready};

use super::{Change, Changed, Member, PresenceError, PresenceStore};
use crate::ids::{GrowerId, UserId};

/// Connections per (grower, user) in this process.
#[derive(Default)]
pub struct Memory {
    counts: Mutex<HashMap<(GrowerId, UserId), u32>>,
}

impl Memory {
    fn counts(&self) -> MutexGuard<'_, HashMap<(GrowerId, UserId), u32>> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl PresenceStore for Memory {
    fn join<'a>(&'a self, m: &'a Member, first: Changed<'a>) -> BoxFuture<'a, Result<(), PresenceError>> {
        let mut counts = self.counts();
        for g in &m.growers {
            let n = counts.entry((*g, m.user_id)).or_insert(0);
            *n += 1;
            if *n == 1 {
                first(*g);
            }
        }
        ready(Ok(())).boxed()
    }

    fn leave<'a>(&'a self, m: &'a Member, last: Changed<'a>) -> BoxFuture<'a, ()> {
        let mut counts = self.counts();
        for g in &m.growers {
            let key = (*g, m.user_id);
            if let Some(n) = counts.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(&key);
                    last(*g);
                }
            }
        }
        ready(()).boxed()
    }

    fn online<'a>(
        &'a self,
        grower: GrowerId,
        users: &'a [UserId],
    ) -> BoxFuture<'a, Result<HashSet<UserId>, PresenceError>> {
        let counts = self.counts();
        ready(Ok(users.iter().copied().filter(|u| counts.contains_key(&(grower, *u))).collect())).boxed()
    }

    /// Nothing to keep alive: a connection is counted until it leaves.
    fn upkeep(&self) -> BoxFuture<'_, Result<Vec<Change>, PresenceError>> {
        ready(Ok(Vec::new())).boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use uuid::Uuid;

    use super::*;

    fn member(conn: &str, user: UserId, growers: &[GrowerId]) -> Member {
        Member { conn: conn.into(), user_id: user, growers: growers.to_vec() }
    }

    #[tokio::test]
    async fn a_user_is_online_from_their_first_connection_to_their_last() {
        let store = Memory::default();
        let (g, h) = (GrowerId(Uuid::now_v7()), GrowerId(Uuid::now_v7()));
        let user = UserId(Uuid::now_v7());
        let changed = Mutex::new(Vec::new());
        let record = |g: GrowerId| changed.lock().unwrap().push(g);
        let (tab1, tab2) = (member("1", user, &[g, h]), member("2", user, &[g]));
        store.join(&tab1, &record).await.unwrap();
        store.join(&tab2, &record).await.unwrap();
        assert_eq!(std::mem::take(&mut *changed.lock().unwrap()), vec![g, h], "the second tab changes nothing");
        assert_eq!(store.online(g, &[user]).await.unwrap(), HashSet::from([user]));
        store.leave(&tab1, &record).await;
        assert_eq!(std::mem::take(&mut *changed.lock().unwrap()), vec![h], "still online in g through tab 2");
        store.leave(&tab2, &record).await;
        assert_eq!(std::mem::take(&mut *changed.lock().unwrap()), vec![g]);
        assert!(store.online(g, &[user]).await.unwrap().is_empty());
    }
}
