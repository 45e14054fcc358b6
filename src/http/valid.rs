//! `Valid<E>`: `garde` validation after extraction (`Valid<Json<T>>`, `Valid<Query<T>>`), every
//! failing field named in `details` in the API's (camelCase) spelling.

use axum::{
    extract::{FromRequest, FromRequestParts, Request},
    http::request::Parts,
};
use serde::de::DeserializeOwned;

use super::{
    error::{AppError, FieldError},
    extract::{Json, Query},
};

/// Runs `garde` validation after extraction: `Valid<Json<T>>`, `Valid<Query<T>>`.
/// Every failing field is listed in `details`.
#[derive(Debug, Clone, Copy)]
pub struct Valid<E>(pub E);

/// `items[3].unit_price` -> `items[3].unitPrice`: garde paths in the API's spelling.
pub fn camel_case_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut upper_next = false;
    for c in path.chars() {
        let at_segment_start = out.is_empty() || out.ends_with(['.', '[']);
        if c == '_' && !at_segment_start {
            upper_next = true;
            continue;
        }
        if upper_next && c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_uppercase());
        } else {
            if upper_next {
                out.push('_');
            }
            out.push(c);
        }
        upper_next = false;
    }
    if upper_next {
        out.push('_');
    }
    out
}

/// Converts a garde report into the contract's 400.
pub fn validation_error(report: garde::Report) -> AppError {
    let details: Vec<FieldError> = report
        .iter()
        .map(|(path, error)| {
            // garde reports Rust field names; clients know the JSON (camelCase) ones.
            let field = camel_case_path(&path.to_string());
            FieldError::new(if field.is_empty() { "body".to_string() } else { field }, error.message().to_string())
        })
        .collect();
    let message = match details.as_slice() {
        [one] => format!("invalid {}: {}", one.field, one.message),
        many => {
            let fields: std::collections::BTreeSet<&str> = many.iter().map(|d| d.field.as_str()).collect();
            match fields.len() {
                1 => format!("invalid {}: {}", many[0].field, many[0].message),
                n => format!("{n} fields are invalid"),
            }
        }
    };
    AppError::BadRequest { message, details }
}

impl<T, S> FromRequest<S> for Valid<Json<T>>
where
    T: DeserializeOwned + garde::Validate<Context = ()>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<T>::from_request(req, state).await?;
        value.validate().map_err(validation_error)?;
        Ok(Valid(Json(value)))
    }
}

impl<T, S> FromRequestParts<S> for Valid<Query<T>>
where
    T: DeserializeOwned + garde::Validate<Context = ()>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(value) = Query::<T>::from_request_parts(parts, state).await?;
        value.validate().map_err(validation_error)?;
        Ok(Valid(Query(value)))
    }
}

#[cfg(test)]
mod tests {
    use super::camel_case_path;

    #[test]
    fn paths_become_camel_case() {
        assert_eq!(camel_case_path("avatar_url"), "avatarUrl");
        assert_eq!(camel_case_path("current_password"), "currentPassword");
        assert_eq!(camel_case_path("items[3].unit_price"), "items[3].unitPrice");
        assert_eq!(camel_case_path("name"), "name");
        assert_eq!(camel_case_path("alreadyCamel"), "alreadyCamel");
        assert_eq!(camel_case_path("_private"), "_private");
        assert_eq!(camel_case_path("trailing_"), "trailing_");
    }
}
