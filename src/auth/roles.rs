//! Roles and what each may do. The table is code, reviewed like code; handlers ask for a
//! permission through the `Authorized<P>` extractor, never for a role.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Role {
    Admin,
    Grower,
    Customer,
    Vendor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "ADMIN",
            Role::Grower => "GROWER",
            Role::Customer => "CUSTOMER",
            Role::Vendor => "VENDOR",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "ADMIN" => Some(Role::Admin),
            "GROWER" => Some(Role::Grower),
            "CUSTOMER" => Some(Role::Customer),
            "VENDOR" => Some(Role::Vendor),
            _ => None,
        }
    }

    /// Whether this role holds `permission`.
    pub fn can(self, permission: Permission) -> bool {
        permissions(self).contains(&permission)
    }
}

/// Everything a route can require beyond being signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
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
        Role::Admin => &[
            ManageUsers,
            ReadAudit,
            ManageConfig,
            ReadJobs,
            ManageGrowers,
            UseGreenhouses,
            WriteCatalog,
            ManageCategories,
            ManageAllOrders,
            PlaceOrders,
        ],
        Role::Grower => &[UseGreenhouses, PlaceOrders],
        Role::Vendor => &[WriteCatalog, PlaceOrders],
        Role::Customer => &[PlaceOrders],
    }
}

/// Type-level permissions for the `Authorized<P>` extractor.
pub mod perm {
    use super::Permission;

    /// A permission known at compile time.
    pub trait Required: Send + Sync + 'static {
        const PERMISSION: Permission;
    }

    macro_rules! marker {
        ($($name:ident),* $(,)?) => {$(
            #[derive(Debug, Clone, Copy)]
            pub struct $name;
            impl Required for $name {
                const PERMISSION: Permission = Permission::$name;
            }
        )*};
    }

    marker!(
        ManageUsers,
        ReadAudit,
        ManageConfig,
        ReadJobs,
        ManageGrowers,
        UseGreenhouses,
        WriteCatalog,
        ManageCategories,
        ManageAllOrders,
        PlaceOrders
    );
}

#[cfg(test)]
mod tests {
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
    }

    #[test]
    fn names_round_trip() {
        for r in [Role::Admin, Role::Grower, Role::Customer, Role::Vendor] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("admin"), None);
    }
}
