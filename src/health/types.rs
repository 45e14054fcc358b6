//! Wire types of the service endpoints.

use serde::Serialize;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LiveOut {
    #[schema(example = "ok")]
    pub status: &'static str,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReadyOut {
    #[schema(example = "ok")]
    pub status: &'static str,
    /// Each dependency checked, with `ok`.
    pub checks: std::collections::BTreeMap<&'static str, &'static str>,
}
