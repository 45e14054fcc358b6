//! Typed ids for the signatures where two kinds of id meet: a function that takes a grower and
//! a device, a user and an order, cannot be called with them swapped. On the wire and in the
//! database each is the plain UUID it wraps (`serde(transparent)`); `Uuid::from(id)` and
//! `Id::from(uuid)` convert at the edges (extractors, rows).

use std::fmt;

use uuid::Uuid;

macro_rules! ids {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<$name> for sea_orm::Value {
            fn from(id: $name) -> sea_orm::Value {
                id.0.into()
            }
        }
    )*};
}

ids! {
    /// A person's account (`users.id`).
    UserId,
    /// A grower (tenant) of greenhouses (`growers.id`).
    GrowerId,
    /// A chamber of a grower (`chambers.id`).
    ChamberId,
    /// A device or gateway (`devices.id`).
    DeviceId,
    /// An order (`orders.id`).
    OrderId,
    /// A product of the catalogue (`products.id`).
    ProductId,
    /// A payment of an order (`payments.id`).
    PaymentId,
    /// An alert rule (`alert_rules.id`).
    RuleId,
    /// An alert (`alerts.id`).
    AlertId,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_its_uuid_on_the_wire() {
        let raw = Uuid::now_v7();
        let id = DeviceId::from(raw);
        assert_eq!(serde_json::to_value(id).unwrap(), serde_json::json!(raw.to_string()));
        assert_eq!(serde_json::from_value::<DeviceId>(serde_json::json!(raw)).unwrap(), id);
        assert_eq!(Uuid::from(id), raw);
        assert_eq!(id.to_string(), raw.to_string());
    }
}
