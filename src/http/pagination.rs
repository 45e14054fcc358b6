//! The list helper: `?page=&limit=` (limit capped at 100) or `?cursor=`, answering
//! `{data, meta}` as the contract says.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::error::AppError;

pub const DEFAULT_LIMIT: u64 = 20;
pub const MAX_LIMIT: u64 = 100;

/// Query parameters of every list. Embed it with `#[serde(flatten)]` next to a list's filters.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// 1-based page number (default 1).
    #[param(minimum = 1)]
    pub page: Option<String>,
    /// Items per page (default 20, at most 100; larger values are capped).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// Opaque cursor from a previous page's `meta.nextCursor` (lists that support it).
    pub cursor: Option<String>,
}

/// Validated paging: `offset`/`limit` for page lists, `after` for cursor lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub page: u64,
    pub limit: u64,
    pub cursor: Option<String>,
}

impl PageRequest {
    pub fn offset(&self) -> u64 {
        (self.page - 1) * self.limit
    }

    /// One page of `query`, sorted by `order`, and the number of rows `query` matches.
    pub async fn fetch<E, C>(
        &self,
        db: &C,
        query: sea_orm::Select<E>,
        order: impl FnOnce(sea_orm::Select<E>) -> sea_orm::Select<E>,
    ) -> Result<(Vec<E::Model>, u64), sea_orm::DbErr>
    where
        E: sea_orm::EntityTrait,
        E::Model: Send + Sync,
        C: sea_orm::ConnectionTrait,
    {
        use sea_orm::{PaginatorTrait, QuerySelect};
        let total = query.clone().count(db).await?;
        let rows = order(query).offset(self.offset()).limit(self.limit).all(db).await?;
        Ok((rows, total))
    }

    /// Decodes the cursor into the list's own key type.
    pub fn cursor<K: DeserializeOwned>(&self) -> Result<Option<K>, AppError> {
        self.cursor.as_deref().map(decode_cursor).transpose()
    }
}

impl ListParams {
    /// Numbers are parsed here (not by serde) so that `?page=abc` is a 400 naming `page`,
    /// even when these parameters are flattened into a larger query struct.
    pub fn validate(&self) -> Result<PageRequest, AppError> {
        let page = parse_positive("page", self.page.as_deref(), 1)?;
        let limit = parse_positive("limit", self.limit.as_deref(), DEFAULT_LIMIT)?.min(MAX_LIMIT);
        if page > 1_000_000 {
            return Err(AppError::invalid_field("page", "must be at most 1000000"));
        }
        Ok(PageRequest { page, limit, cursor: self.cursor.clone().filter(|c| !c.is_empty()) })
    }
}

/// A positive integer parameter (`default` when absent or empty); 400 naming `field` otherwise.
pub fn parse_positive(field: &str, raw: Option<&str>, default: u64) -> Result<u64, AppError> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(default),
        Some(s) => match s.parse::<u64>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(AppError::invalid_field(field, "must be a positive integer")),
        },
    }
}

/// An optional UUID query parameter; 400 naming `field` when it is not a UUID.
pub fn uuid_param(field: &str, raw: Option<&str>) -> Result<Option<uuid::Uuid>, AppError> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => uuid::Uuid::parse_str(s).map(Some).map_err(|_| AppError::invalid_field(field, "must be a UUID")),
    }
}

/// `meta` of a list response.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PageMeta {
    pub page: u64,
    pub limit: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_pages: Option<u64>,
    pub has_more: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `{data, meta}`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub meta: PageMeta,
}

impl<T> Page<T> {
    /// A page of an offset list whose total is known.
    pub fn new(data: Vec<T>, req: &PageRequest, total: u64) -> Self {
        let total_pages = total.div_ceil(req.limit);
        let meta = PageMeta {
            page: req.page,
            limit: req.limit,
            total: Some(total),
            total_pages: Some(total_pages),
            has_more: req.page < total_pages,
            next_cursor: None,
        };
        Self { data, meta }
    }

    /// A page of a cursor list. Fetch `limit + 1` rows; the extra row only tells whether
    /// there is more, and `key` makes the cursor from the last row kept.
    pub fn from_cursor_rows<K: Serialize>(mut rows: Vec<T>, req: &PageRequest, key: impl Fn(&T) -> K) -> Self {
        let has_more = rows.len() as u64 > req.limit;
        rows.truncate(req.limit as usize);
        let next_cursor = if has_more { rows.last().map(|last| encode_cursor(&key(last))) } else { None };
        let meta = PageMeta { page: req.page, limit: req.limit, total: None, total_pages: None, has_more, next_cursor };
        Self { data: rows, meta }
    }
}

/// Cursors are opaque to clients: URL-safe base64 of the JSON key of the last row.
pub fn encode_cursor<K: Serialize>(key: &K) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(key).unwrap_or_default())
}

pub fn decode_cursor<K: DeserializeOwned>(raw: &str) -> Result<K, AppError> {
    let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| AppError::invalid_field("cursor", "is not a valid cursor"))?;
    serde_json::from_slice(&bytes).map_err(|_| AppError::invalid_field("cursor", "is not a valid cursor"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(page: Option<&str>, limit: Option<&str>) -> ListParams {
        ListParams { page: page.map(Into::into), limit: limit.map(Into::into), cursor: None }
    }

    #[test]
    fn defaults_and_cap() {
        assert_eq!(params(None, None).validate().unwrap(), PageRequest { page: 1, limit: 20, cursor: None });
        assert_eq!(params(Some("3"), Some("500")).validate().unwrap().limit, 100);
        assert_eq!(params(Some("3"), Some("10")).validate().unwrap().offset(), 20);
    }

    #[test]
    fn bad_numbers_name_the_field() {
        for (p, l, field) in [(Some("0"), None, "page"), (Some("x"), None, "page"), (None, Some("-1"), "limit")] {
            match params(p, l).validate() {
                Err(AppError::BadRequest { details, .. }) => assert_eq!(details[0].field, field),
                other => panic!("expected 400, got {other:?}"),
            }
        }
    }

    #[test]
    fn meta_is_exact() {
        let req = params(Some("7"), Some("20")).validate().unwrap();
        let page = Page::new(vec![1, 2, 3], &req, 123);
        assert_eq!(page.meta.total_pages, Some(7));
        assert!(!page.meta.has_more);
        let req = params(Some("6"), Some("20")).validate().unwrap();
        assert!(Page::new(vec![0; 20], &req, 123).meta.has_more);
        let empty = Page::<u8>::new(vec![], &req, 0);
        assert_eq!((empty.meta.total_pages, empty.meta.has_more), (Some(0), false));
    }

    #[test]
    fn cursor_round_trip() {
        let req = params(None, Some("2")).validate().unwrap();
        let page = Page::from_cursor_rows(vec![10, 20, 30], &req, |v| (*v, "k"));
        assert_eq!(page.data, vec![10, 20]);
        assert!(page.meta.has_more);
        let cursor = page.meta.next_cursor.unwrap();
        let back: (i32, String) = decode_cursor(&cursor).unwrap();
        assert_eq!(back, (20, "k".to_string()));
        assert!(decode_cursor::<(i32, String)>("!!!").is_err());
        let last = Page::from_cursor_rows(vec![1], &req, |v| *v);
        assert_eq!((last.meta.has_more, last.meta.next_cursor), (false, None));
    }
}
