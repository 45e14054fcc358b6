//! `/alert-rules`: create, list, change and delete a grower's rules. Members of the grower
//! (and ADMIN) may; everyone else gets 404 for a grower they do not belong to.
//!
//! A rule is checked as a whole before it is stored ([`spec`]). A change to what a rule
//! watches (kind, metric, device, comparison, thresholds, timing) starts its evaluation state
//! afresh ([`update`]). Disabling or deleting a rule resolves its open alerts ([`delete`]).
//! Every write refreshes the rule index of every instance ([`crate::alerts::rules_changed`]).

use utoipa_axum::router::OpenApiRouter;

pub mod create;
pub mod delete;
mod handlers;
pub mod list;
pub mod spec;
mod types;
pub mod update;

pub use spec::RuleSpec;
pub use types::{RuleIn, RuleOut, RulePatch, RuleQuery};

use crate::{routes, state::AppState};

pub fn router() -> OpenApiRouter<AppState> {
    use handlers::*;
    OpenApiRouter::new().routes(routes!(create_rule, list_rules)).routes(routes!(update_rule, delete_rule))
}
