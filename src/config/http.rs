//! The HTTP server: where it listens, which browser origins may call it (CORS), its limits
//! and timeouts.

use std::{net::IpAddr, time::Duration};

use super::env::{ConfigError, Env, bad};

/// CORS: which browser origins may call the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// `*`: any origin, and therefore never with credentials.
    Any,
    /// An explicit list; credentials are allowed for these.
    List(Vec<String>),
}

/// HTTP server settings.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub host: IpAddr,
    pub port: u16,
    pub allowed_origins: AllowedOrigins,
    pub request_timeout: Duration,
    pub body_limit: usize,
    /// `Strict-Transport-Security` max-age; `None` leaves the header off (plain-HTTP deployments).
    pub hsts_max_age: Option<u64>,
    /// How long a graceful shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
}

impl HttpConfig {
    pub(super) fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let host = env.parse("HOST", IpAddr::from([0, 0, 0, 0]), "an IP address such as 0.0.0.0 or 127.0.0.1")?;
        let port = env.parse("PORT", 3000u16, "a port number 0..=65535")?;
        let allowed_origins = parse_origins(env.get("ALLOWED_ORIGINS"))?;
        let body_limit: usize = env.parse("HTTP_BODY_LIMIT_BYTES", 1024 * 1024, "a number of bytes")?;
        if body_limit < 1024 {
            return Err(bad("HTTP_BODY_LIMIT_BYTES", "must be at least 1024"));
        }
        let hsts_max_age = match env.get("HSTS_MAX_AGE_SECS") {
            None => None,
            Some(raw) => Some(
                raw.parse::<u64>()
                    .map_err(|_| bad("HSTS_MAX_AGE_SECS", format!("expected a number of seconds, got {raw:?}")))?,
            ),
        };
        Ok(Self {
            host,
            port,
            allowed_origins,
            request_timeout: env.seconds("HTTP_REQUEST_TIMEOUT_SECS", 30)?,
            body_limit,
            hsts_max_age,
            shutdown_grace: env.seconds("SHUTDOWN_GRACE_SECS", 20)?,
        })
    }
}

/// `ALLOWED_ORIGINS`: `*`, or a comma-separated list of bare origins (`scheme://host[:port]`).
fn parse_origins(raw: Option<&str>) -> Result<AllowedOrigins, ConfigError> {
    let Some(raw) = raw else {
        return Ok(AllowedOrigins::List(Vec::new()));
    };
    let items: Vec<&str> = raw.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    if items.contains(&"*") {
        if items.len() > 1 {
            return Err(bad("ALLOWED_ORIGINS", "`*` cannot be combined with explicit origins"));
        }
        return Ok(AllowedOrigins::Any);
    }
    let mut origins = Vec::with_capacity(items.len());
    for item in items {
        let parsed = url::Url::parse(item).map_err(|_| bad("ALLOWED_ORIGINS", format!("{item:?} is not an origin")))?;
        let is_bare_origin = matches!(parsed.scheme(), "http" | "https")
            && parsed.host().is_some()
            && parsed.path() == "/"
            && parsed.query().is_none()
            && !item.ends_with('/');
        if !is_bare_origin {
            return Err(bad("ALLOWED_ORIGINS", format!("{item:?} is not an origin (expected scheme://host[:port])")));
        }
        origins.push(item.to_string());
    }
    Ok(AllowedOrigins::List(origins))
}

#[cfg(test)]
mod tests {
    use super::AllowedOrigins;
    use crate::config::tests::cfg;

    #[test]
    fn origins_parse() {
        assert_eq!(cfg(&[("ALLOWED_ORIGINS", "*")]).unwrap().http.allowed_origins, AllowedOrigins::Any);
        assert_eq!(
            cfg(&[("ALLOWED_ORIGINS", "https://a.example, http://localhost:5173")]).unwrap().http.allowed_origins,
            AllowedOrigins::List(vec!["https://a.example".into(), "http://localhost:5173".into()])
        );
        assert_eq!(cfg(&[("ALLOWED_ORIGINS", "*,https://a.example")]).unwrap_err().var, "ALLOWED_ORIGINS");
        assert_eq!(cfg(&[("ALLOWED_ORIGINS", "https://a.example/path")]).unwrap_err().var, "ALLOWED_ORIGINS");
    }
}
