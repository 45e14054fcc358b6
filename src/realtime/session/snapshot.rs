//! A subscription's snapshot: the path's state read now, with the id of the last event it
//! covers. For versioned paths, live events the snapshot already shows are folded into it.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use serde_json::json;

use super::{Session, Sub};
use crate::{
    http::AppError,
    realtime::{
        messages::{Out, error},
        paths,
    },
};

impl Session {
    /// Reads the snapshot and builds its message (after a `reset` when `reset`). For versioned
    /// paths, live events the snapshot already covers are folded into it: its id moves past them.
    pub(super) async fn snapshot(&mut self, key: Arc<str>, mut id: u64, reset: bool) -> Vec<Out> {
        let (kind, path_id) = match paths::parse(&key) {
            Ok(parsed) => parsed,
            Err(r) => return vec![error(Some(&key), r.code, &r.message)],
        };
        let snap = match (kind.snapshot)(&self.state, path_id).await {
            Ok(s) => s,
            Err(e) => {
                self.state.realtime.hub.detach(&key, self.conn);
                let (code, message) = match e {
                    AppError::NotFound(_) => ("not_found", format!("{key}: no longer exists")),
                    e => {
                        tracing::warn!(error = %e, path = %key, "realtime: snapshot failed");
                        ("unavailable", format!("{key}: could not be read now; try again"))
                    }
                };
                return vec![error(Some(&key), code, &message)];
            }
        };
        if let Some(version) = snap.version {
            id = self.fold(&key, id, version, snap.changed_at).await;
        }
        let mut out = Vec::with_capacity(2);
        if reset {
            out.push(Out::plain(json!({ "type": "reset", "path": &*key })));
        }
        // Written by hand so `type` leads, as in every other message.
        let text = format!(r#"{{"type":"snapshot","path":{},"id":"{id}","data":{}}}"#, json!(&*key), snap.data);
        out.push(Out { text: text.into(), at: Some((key.clone(), id)) });
        self.subs.insert(key, Sub { last: id });
        out
    }

    /// The id a snapshot of `version` covers, from `id` on: past the leading queued events of
    /// `key` that it already shows (they are dropped).
    async fn fold(
        &mut self,
        key: &Arc<str>,
        mut id: u64,
        version: i64,
        changed_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> u64 {
        // A change committed just before the read may not be published yet: its event would
        // follow the snapshot that already shows it. Wait (briefly) until it is here.
        let recent = changed_at.is_some_and(|at| chrono::Utc::now() - at < chrono::Duration::seconds(2));
        let hub = &self.state.realtime.hub;
        let until = tokio::time::Instant::now() + Duration::from_millis(250);
        while recent && hub.version(key).is_none_or(|v| v < version) && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        while let Ok(d) = self.rx.try_recv() {
            self.pending.push_back(d);
        }
        let mut keep = VecDeque::with_capacity(self.pending.len());
        let mut folding = true;
        for d in self.pending.drain(..) {
            if d.path == *key && d.id <= id {
                continue;
            }
            if folding && d.path == *key && d.id == id + 1 && d.version.is_some_and(|v| v <= version) {
                id = d.id;
                continue;
            }
            if d.path == *key {
                folding = false;
            }
            keep.push_back(d);
        }
        self.pending = keep;
        id
    }
}
