//! The wire types of `/orders`: `OrderIn` as clients send it, `OrderOut` as they read it, the
//! query of `GET /orders`.

use chrono::{DateTime, Utc};
use garde::Validate;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::OrderStatus;
use crate::{
    auth::AuthUser,
    http::{AppError, ListParams, PageRequest},
    ids::UserId,
    money::Money,
    shop::entity::{order, order_item},
};

#[derive(Debug, Clone, Deserialize, Serialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderItemIn {
    #[garde(skip)]
    pub product_id: Uuid,
    #[garde(range(min = 1, max = 10_000))]
    pub quantity: i32,
}

/// A new order. Prices are never read from the request: fields such as `unitPrice` or `total`
/// are ignored, and the catalogue price at the time of the order is used.
#[derive(Debug, Clone, Deserialize, Serialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderIn {
    /// 1 to 100 items, each product at most once.
    #[garde(length(min = 1, max = 100), dive)]
    pub items: Vec<OrderItemIn>,
    /// Free-form address object (at most 4 KiB of JSON).
    #[garde(inner(custom(valid_address)))]
    #[schema(value_type = Option<Object>)]
    pub shipping_address: Option<Value>,
}

fn valid_address(value: &Value, _: &()) -> garde::Result {
    if !value.is_object() {
        return Err(garde::Error::new("must be an object"));
    }
    if serde_json::to_vec(value).map_or(usize::MAX, |b| b.len()) > 4096 {
        return Err(garde::Error::new("must be at most 4 KiB of JSON"));
    }
    Ok(())
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderItemOut {
    pub product_id: Uuid,
    /// The product's name when the order was placed.
    pub product_name: String,
    pub quantity: i32,
    /// The catalogue price when the order was placed.
    pub unit_price: Money,
    pub line_total: Money,
}

impl From<&order_item::Model> for OrderItemOut {
    fn from(i: &order_item::Model) -> Self {
        Self {
            product_id: i.product_id,
            product_name: i.product_name.clone(),
            quantity: i.quantity,
            unit_price: Money(i.unit_price_minor),
            line_total: Money(i.unit_price_minor * i64::from(i.quantity)),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderOut {
    pub id: Uuid,
    pub user_id: Uuid,
    pub status: OrderStatus,
    /// By product id.
    pub items: Vec<OrderItemOut>,
    pub total: Money,
    pub currency: String,
    #[schema(value_type = Option<Object>)]
    pub shipping_address: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An order and its items (by product id), as clients see it.
pub fn order_out(o: &order::Model, items: &[order_item::Model]) -> OrderOut {
    OrderOut {
        id: o.id,
        user_id: o.user_id,
        status: o.status,
        items: items.iter().map(OrderItemOut::from).collect(),
        total: Money(o.total_minor),
        currency: o.currency.clone(),
        shipping_address: o.shipping_address.clone(),
        created_at: o.created_at,
        updated_at: o.updated_at,
    }
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct OrderQuery {
    /// Only orders in this status.
    pub status: Option<String>,
    /// ADMIN only: only this user's orders.
    pub user_id: Option<String>,
    /// 1-based page (default 1).
    pub page: Option<String>,
    /// Items per page (default 20, at most 100).
    pub limit: Option<String>,
}

/// `GET /orders` after validation.
#[derive(Debug)]
pub struct OrderFilter {
    /// Whose orders: `None` is everyone's (ADMIN only).
    pub user_id: Option<UserId>,
    pub status: Option<OrderStatus>,
    pub page: PageRequest,
}

impl OrderQuery {
    /// The filter `me` asked for; each bad parameter is a 400 naming it, and another user's
    /// orders are a 403 unless `me` is ADMIN (see [`super::whose`]).
    pub fn filter(&self, me: &AuthUser) -> Result<OrderFilter, AppError> {
        let page = ListParams { page: self.page.clone(), limit: self.limit.clone(), cursor: None }.validate()?;
        let asked = crate::http::uuid_param("userId", self.user_id.as_deref())?.map(UserId::from);
        let user_id = super::whose(me, asked)?;
        let status = match self.status.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(raw) => Some(sea_orm::ActiveEnum::try_from_value(&raw.to_string()).map_err(|_| {
                AppError::invalid_field("status", "must be one of pending, paid, fulfilled, cancelled, refunded")
            })?),
        };
        Ok(OrderFilter { user_id, status, page })
    }
}
