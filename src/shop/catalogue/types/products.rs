//! The wire types of `/products`, and the query of `GET /products` checked into a
//! [`ProductFilter`].

use chrono::{DateTime, Utc};
use garde::Validate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    http::{AppError, ListParams, PageRequest},
    money::Money,
    shop::entity::product,
    users::not_blank,
};

/// The largest stock a product can hold.
pub const MAX_STOCK: i64 = 1_000_000_000;

/// `{id, name}` of a product's category.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CategoryRef {
    pub id: Uuid,
    pub name: String,
}

/// A product. `price` is a decimal string in `currency`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductOut {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub description: Option<String>,
    pub price: Money,
    pub currency: String,
    pub stock: i64,
    pub in_stock: bool,
    pub category_id: Uuid,
    pub category: CategoryRef,
    /// The vendor who owns it (absent for products an admin created).
    pub vendor_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl ProductOut {
    /// The product in the shop's `currency`, in its category named `category_name`.
    pub fn new(p: &product::Model, category_name: &str, currency: &str) -> Self {
        Self {
            id: p.id,
            sku: p.sku.clone(),
            name: p.name.clone(),
            description: p.description.clone(),
            price: Money(p.price_minor),
            currency: currency.to_string(),
            stock: p.stock,
            in_stock: p.stock > 0,
            category_id: p.category_id,
            category: CategoryRef { id: p.category_id, name: category_name.to_string() },
            vendor_id: p.vendor_id,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

fn valid_sku(value: &str, _: &()) -> garde::Result {
    if value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/')) {
        Ok(())
    } else {
        Err(garde::Error::new("may contain only letters, digits and - _ . /"))
    }
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProductIn {
    /// Unique among products that are not deleted.
    #[garde(length(min = 1, max = 64), custom(valid_sku))]
    pub sku: String,
    #[garde(length(chars, min = 1, max = 200), custom(not_blank))]
    pub name: String,
    #[garde(inner(length(chars, max = 5000)))]
    pub description: Option<String>,
    #[garde(skip)]
    pub price: Money,
    #[garde(range(min = 0, max = MAX_STOCK))]
    pub stock: i64,
    #[garde(skip)]
    pub category_id: Uuid,
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProductPatch {
    #[garde(inner(length(min = 1, max = 64), custom(valid_sku)))]
    pub sku: Option<String>,
    #[garde(inner(length(chars, min = 1, max = 200), custom(not_blank)))]
    pub name: Option<String>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "crate::util::present")]
    #[schema(value_type = Option<String>)]
    #[garde(inner(inner(length(chars, max = 5000))))]
    pub description: Option<Option<String>>,
    #[garde(skip)]
    pub price: Option<Money>,
    /// Sets the stock to this value.
    #[garde(inner(range(min = 0, max = MAX_STOCK)))]
    pub stock: Option<i64>,
    /// Adds to (or, negative, takes from) the current stock atomically, without racing orders
    /// placed meanwhile. 409 when it would go below zero. Not together with `stock`.
    #[garde(inner(range(min = -MAX_STOCK, max = MAX_STOCK)))]
    pub stock_adjustment: Option<i64>,
    #[garde(skip)]
    pub category_id: Option<Uuid>,
}

/// The parameters of `GET /products`, as sent (each is checked and named in a 400).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ProductQuery {
    /// Case-insensitive substring of the name or the description (at most 100 characters).
    pub search: Option<String>,
    pub category_id: Option<String>,
    /// Inclusive lower bound of the price, a decimal string.
    pub min_price: Option<String>,
    /// Inclusive upper bound of the price, a decimal string.
    pub max_price: Option<String>,
    /// `true` keeps products with stock > 0, `false` those with stock = 0.
    pub in_stock: Option<String>,
    /// `id`, `name`, `price` or `createdAt`. Without `orderBy` and `order`, newest first.
    pub order_by: Option<String>,
    /// `asc` (the default once `orderBy` is given) or `desc`.
    pub order: Option<String>,
    /// 1-based page (default 1).
    pub page: Option<String>,
    /// Items per page (default 20, at most 100).
    pub limit: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum OrderBy {
    Id,
    Name,
    Price,
    CreatedAt,
}

/// `GET /products` after validation; also the cache key.
#[derive(Debug, Serialize)]
pub struct ProductFilter {
    pub search: Option<String>,
    pub category_id: Option<Uuid>,
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    pub in_stock: Option<bool>,
    pub order_by: OrderBy,
    pub desc: bool,
    pub page: u64,
    pub limit: u64,
}

impl ProductQuery {
    /// The filter and the page asked for; the first bad parameter is a 400 naming it.
    pub fn validate(&self) -> Result<(ProductFilter, PageRequest), AppError> {
        let page = ListParams { page: self.page.clone(), limit: self.limit.clone(), cursor: None }.validate()?;
        let given = |v: &Option<String>| v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
        let search = given(&self.search);
        if let Some(s) = &search
            && s.chars().count() > 100
        {
            return Err(AppError::invalid_field("search", "must be at most 100 characters"));
        }
        if let Some(s) = &search
            && s.chars().any(char::is_control)
        {
            return Err(AppError::invalid_field("search", "must not contain control characters"));
        }
        let category_id = crate::http::uuid_param("categoryId", self.category_id.as_deref())?;
        let price = |name: &str, v: &Option<String>| {
            given(v)
                .map(|s| Money::parse(&s).map(Money::minor).map_err(|m| AppError::invalid_field(name, m)))
                .transpose()
        };
        let (min_price, max_price) = (price("minPrice", &self.min_price)?, price("maxPrice", &self.max_price)?);
        if let (Some(lo), Some(hi)) = (min_price, max_price)
            && lo > hi
        {
            return Err(AppError::invalid_field("minPrice", "must not exceed maxPrice"));
        }
        let in_stock = match given(&self.in_stock).as_deref() {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(_) => return Err(AppError::invalid_field("inStock", "must be true or false")),
        };
        let order_by = match given(&self.order_by).as_deref() {
            None => None,
            Some("id") => Some(OrderBy::Id),
            Some("name") => Some(OrderBy::Name),
            Some("price") => Some(OrderBy::Price),
            Some("createdAt") => Some(OrderBy::CreatedAt),
            Some(_) => return Err(AppError::invalid_field("orderBy", "must be one of id, name, price, createdAt")),
        };
        let desc = match given(&self.order).as_deref() {
            None => order_by.is_none(),
            Some("asc") => false,
            Some("desc") => true,
            Some(_) => return Err(AppError::invalid_field("order", "must be asc or desc")),
        };
        let filter = ProductFilter {
            search,
            category_id,
            min_price,
            max_price,
            in_stock,
            order_by: order_by.unwrap_or(OrderBy::CreatedAt),
            desc,
            page: page.page,
            limit: page.limit,
        };
        Ok((filter, page))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_validation_names_the_parameter() {
        let bad = |q: ProductQuery, field: &str| match q.validate() {
            Err(AppError::BadRequest { details, .. }) => assert_eq!(details[0].field, field),
            other => panic!("expected 400 for {field}, got {other:?}"),
        };
        bad(ProductQuery { min_price: Some("1.234".into()), ..Default::default() }, "minPrice");
        bad(
            ProductQuery { min_price: Some("5".into()), max_price: Some("4".into()), ..Default::default() },
            "minPrice",
        );
        bad(ProductQuery { in_stock: Some("yes".into()), ..Default::default() }, "inStock");
        bad(ProductQuery { order_by: Some("stock".into()), ..Default::default() }, "orderBy");
        bad(ProductQuery { order: Some("up".into()), ..Default::default() }, "order");
        bad(ProductQuery { category_id: Some("x".into()), ..Default::default() }, "categoryId");
        let (f, _) = ProductQuery::default().validate().unwrap();
        assert_eq!((f.order_by, f.desc), (OrderBy::CreatedAt, true), "newest first by default");
        let (f, _) = ProductQuery { order_by: Some("price".into()), ..Default::default() }.validate().unwrap();
        assert_eq!((f.order_by, f.desc), (OrderBy::Price, false));
    }
}
