//! A session's live stream: each delivery becomes what the client needs, so that every path
//! stays in id order with none missing and none repeated.

use super::Session;
use crate::realtime::{hub::Delivery, messages::Out};

impl Session {
    /// The next live delivery (waiting for one).
    pub async fn next_delivery(&mut self) -> Option<Delivery> {
        if let Some(d) = self.pending.pop_front() {
            return Some(d);
        }
        self.rx.recv().await
    }

    /// What `first` and the deliveries already queued behind it (up to 64) become for the
    /// client, so a transport writes them in one flush.
    pub async fn outs_from(&mut self, first: Delivery) -> Vec<Out> {
        let mut outs = self.on_delivery(first).await;
        for _ in 0..64 {
            let Some(more) = self.pending.pop_front().or_else(|| self.rx.try_recv().ok()) else { break };
            outs.extend(self.on_delivery(more).await);
        }
        outs
    }

    /// What a live delivery becomes for the client: nothing (not subscribed, or already
    /// covered), the event, or, after a gap, the missed events first (from the replay store)
    /// or a `reset` and a new snapshot.
    async fn on_delivery(&mut self, d: Delivery) -> Vec<Out> {
        let Some(sub) = self.subs.get_mut(&d.path) else { return Vec::new() };
        if d.id <= sub.last {
            return Vec::new();
        }
        if d.id == sub.last + 1 {
            sub.last = d.id;
            return vec![Out::event(&d)];
        }
        let after = sub.last;
        if let Some(missed) = self.state.realtime.hub.held(&d.path, after, d.id - 1).await {
            if let Some(sub) = self.subs.get_mut(&d.path) {
                sub.last = d.id;
            }
            return missed.iter().chain(std::iter::once(&d)).map(Out::event).collect();
        }
        // The snapshot is read after `d` was published, so it covers `d`.
        self.snapshot(d.path.clone(), d.id, true).await
    }
}
