//! Roles and what each may do. The table is code, reviewed like code; handlers ask for a
//! permission through the `Authorized<P>` extractor, never for a role.
//!
//! A role is stored in `users.role` as its name (`ADMIN`, …), the same name it has on the wire;
//! a CHECK (triggers on SQLite) keeps any other value out of the column.

use sea_orm::{ActiveEnum, DeriveActiveEnum, EnumIter, sea_query::StringLen};
use serde::{Deserialize, Serialize};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema, EnumIter, DeriveActiveEnum,
)]
#[serde(rename_all = "UPPERCASE")]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum Role {
    #[sea_orm(string_value = "ADMIN")]
    Admin,
    #[sea_orm(string_value = "GROWER")]
    Grower,
    #[sea_orm(string_value = "CUSTOMER")]
    Customer,
    #[sea_orm(string_value = "VENDOR")]
    Vendor,
}

impl Role {
    /// The role's name, as stored and as on the wire (`ADMIN`).
    pub fn name(self) -> String {
        self.to_value()
    }

    /// The role of this name; `None` for anything else (names are case-sensitive).
    pub fn from_name(name: &str) -> Option<Role> {
        Role::try_from_value(&name.to_owned()).ok()
    }

    /// Whether this role holds `permission`.
    pub fn can(self, permission: Permission) -> bool {
        permissions(self).contains(&permission)
    }
}

/// A role equals its stored name: `row.role == "ADMIN"`.
impl PartialEq<&str> for Role {
    fn eq(&self, other: &&str) -> bool {
        self.to_value() == *other
    }
}

/// Declares the permissions once: the enum, the list of all of them, and a type-level marker
/// of each for `Authorized<perm::X>`.
macro_rules! permissions {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Everything a route can require beyond being signed in.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Permission {
            $($(#[$doc])* $name,)*
        }

        impl Permission {
            /// Every permission.
            pub const ALL: &'static [Permission] = &[$(Permission::$name),*];
        }

        /// Type-level permissions for the `Authorized<P>` extractor.
        pub mod perm {
            use super::Permission;

            /// A permission known at compile time.
            pub trait Required: Send + Sync + 'static {
                const PERMISSION: Permission;
            }

            $(
                #[derive(Debug, Clone, Copy)]
                pub struct $name;
                impl Required for $name {
                    const PERMISSION: Permission = Permission::$name;
                }
            )*
        }
    };
}

permissions! {
    /// List, read, change, disable and delete any user.
    ManageUsers,
    /// Read the audit log.
    ReadAudit,
    /// Read and change runtime configuration.
    ManageConfig,
    /// Read job queue state.
    ReadJobs,
    /// Create growers and manage any grower's members.
    ManageGrowers,
    /// Work with the greenhouses of growers one belongs to.
    UseGreenhouses,
    /// Create products and categories, edit products (vendors: only their own).
    WriteCatalog,
    /// Rename and delete categories, which every vendor shares.
    ManageCategories,
    /// See and change every order, not only one's own.
    ManageAllOrders,
    /// Place orders.
    PlaceOrders,
}

/// The role -> permissions table.
pub fn permissions(role: Role) -> &'static [Permission] {
    use Permission::*;
    match role {
        Role::Admin => Permission::ALL,
        Role::Grower => &[UseGreenhouses, PlaceOrders],
        Role::Vendor => &[WriteCatalog, PlaceOrders],
        Role::Customer => &[PlaceOrders],
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::Iterable;

    use super::*;

    #[test]
    fn only_admins_manage_users() {
        assert!(Role::Admin.can(Permission::ManageUsers));
        for r in [Role::Grower, Role::Customer, Role::Vendor] {
            assert!(!r.can(Permission::ManageUsers), "{r:?}");
            assert!(!r.can(Permission::ReadAudit), "{r:?}");
        }
        assert!(Role::Vendor.can(Permission::WriteCatalog));
        assert!(!Role::Customer.can(Permission::WriteCatalog));
        assert_eq!(permissions(Role::Admin).len(), 10, "admins hold every permission");
    }

    #[test]
    fn names_round_trip_and_match_the_wire() {
        for r in Role::iter() {
            assert_eq!(Role::from_name(&r.name()), Some(r));
            assert_eq!(serde_json::to_value(r).unwrap(), serde_json::json!(r.name()));
            assert!(r == r.name().as_str());
        }
        assert_eq!(Role::iter().map(Role::name).collect::<Vec<_>>(), ["ADMIN", "GROWER", "CUSTOMER", "VENDOR"]);
        assert_eq!(Role::from_name("admin"), None);
    }
}
