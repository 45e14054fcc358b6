//! `GET /products` as SQL: the filter, the sort, and the one condition that differs by backend.

use sea_orm::{ColumnTrait, Condition, DatabaseBackend, EntityTrait, QueryFilter, QueryOrder, Select, sea_query::Expr};

use super::{OrderBy, ProductFilter};
use crate::shop::entity::product;

/// Live products matching `f`, on `backend` (see [`search_condition`]).
pub(super) fn filtered(backend: DatabaseBackend, f: &ProductFilter) -> Select<product::Entity> {
    let mut q = product::Entity::find().filter(product::Column::DeletedAt.is_null());
    if let Some(term) = &f.search {
        q = q.filter(search_condition(backend, term));
    }
    if let Some(c) = f.category_id {
        q = q.filter(product::Column::CategoryId.eq(c));
    }
    if let Some(lo) = f.min_price {
        q = q.filter(product::Column::PriceMinor.gte(lo));
    }
    if let Some(hi) = f.max_price {
        q = q.filter(product::Column::PriceMinor.lte(hi));
    }
    match f.in_stock {
        Some(true) => q = q.filter(product::Column::Stock.gt(0)),
        Some(false) => q = q.filter(product::Column::Stock.eq(0)),
        None => {}
    }
    q
}

/// `q` in the order `f` asks for, ties broken by id in the same direction (so pages never
/// overlap or skip).
pub(super) fn sorted(q: Select<product::Entity>, f: &ProductFilter) -> Select<product::Entity> {
    let order = if f.desc { sea_orm::Order::Desc } else { sea_orm::Order::Asc };
    let q = match f.order_by {
        OrderBy::Id => q,
        OrderBy::Name => q.order_by(product::Column::Name, order.clone()),
        OrderBy::Price => q.order_by(product::Column::PriceMinor, order.clone()),
        OrderBy::CreatedAt => q.order_by(product::Column::CreatedAt, order.clone()),
    };
    q.order_by(product::Column::Id, order)
}

/// Escapes `%`, `_` and `\` for a `LIKE … ESCAPE '\'` pattern.
fn like_pattern(term: &str) -> String {
    let mut out = String::with_capacity(term.len() + 2);
    out.push('%');
    for c in term.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// The search condition: a case-insensitive substring of the name or the description.
///
/// The one backend branch of the catalogue, because the two backends index the search with
/// different schema objects (`m20261122_000004_shop`), and a plain `ILIKE`/`LIKE` that sea-query
/// could write once would use neither index:
/// - PostgreSQL: `LIKE` on the generated `search_text` (name and description, lower-cased by the
///   database), served by its `pg_trgm` GIN index; the pattern is lower-cased by the same
///   `lower()`, so case folding is the database's on both sides. Name and description are joined
///   by a newline, and a term cannot contain one, so a match never spans the two.
/// - SQLite: an FTS5 trigram phrase query on `products_fts` (a case-insensitive substring match
///   served by the index) for terms of 3 characters or more; shorter terms, which trigrams
///   cannot index, scan with `LIKE` (case-insensitive for ASCII letters).
pub fn search_condition(backend: DatabaseBackend, term: &str) -> Condition {
    let pattern = like_pattern(term);
    match backend {
        DatabaseBackend::Postgres => {
            Condition::all().add(Expr::cust_with_values(r"products.search_text LIKE lower($1) ESCAPE '\'", [pattern]))
        }
        _ if term.chars().count() >= 3 => {
            let phrase = format!("\"{}\"", term.replace('"', "\"\""));
            Condition::all().add(Expr::cust_with_values(
                "products.id IN (SELECT product_id FROM products_fts WHERE products_fts MATCH ?)",
                [phrase],
            ))
        }
        _ => Condition::all().add(Expr::cust_with_values(
            r"(products.name LIKE ? ESCAPE '\' OR products.description LIKE ? ESCAPE '\')",
            [pattern.clone(), pattern],
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("50%_off\\"), r"%50\%\_off\\%");
    }
}
