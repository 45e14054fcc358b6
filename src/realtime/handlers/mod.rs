//! The realtime endpoints, one file per transport. They only carry messages: subscriptions,
//! resume and the live stream are the session's (`super::session`), the same for both.

pub mod sse;
pub mod ws;
