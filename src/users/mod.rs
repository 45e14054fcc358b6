//! Users: the account's own view (`/users/me`, profile, password) and admin management.
//!
//! The rules, each in the file named for it:
//! - an account is live until soft-deleted; its email is stored trimmed and lower-cased
//!   (`account.rs`);
//! - a user is shown only as a `UserOut`, never with a hash or secret (`types.rs`), and read
//!   in batches on the hot path (`views.rs`);
//! - a password change ends every other session, a reset every session (`password.rs`);
//! - a role change, disable or delete ends the user's sessions at once, and an admin cannot
//!   demote, disable or delete themselves (`admin.rs`).

use utoipa_axum::router::OpenApiRouter;

use crate::{routes, state::AppState};

mod account;
mod admin;
pub mod entity;
mod error;
mod handlers;
mod password;
mod profile;
pub mod types;
mod views;

pub use account::{NewUser, find_live, load_signed_in, normalize_email};
pub use error::UserError;
pub use password::replace_password;
pub use types::{UserOut, not_blank};
pub use views::{Views, views};

/// Every `/users/*` route.
pub fn router() -> OpenApiRouter<AppState> {
    use handlers::*;
    OpenApiRouter::new()
        .routes(routes!(get_me, patch_me))
        .routes(routes!(get_profile, put_profile))
        .routes(routes!(change_password))
        .routes(routes!(list_users))
        .routes(routes!(get_user, patch_user, delete_user))
}
