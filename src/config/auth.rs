//! Identity: token lifetimes and keys, lockout and rate limits, the external identity provider,
//! and the seed admin. Production refuses to start without its signing and encryption keys.

use std::time::Duration;

use super::{
    Environment,
    env::{ConfigError, Env, Secret, bad},
};

/// Identity settings.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    /// Ed25519 PKCS#8 PEM; required in production.
    pub jwt_private_key: Option<Secret>,
    /// The previous key (public or private PEM), still accepted for verification.
    pub jwt_previous_key: Option<Secret>,
    /// 32 bytes, base64: encrypts TOTP secrets at rest. Required in production.
    pub mfa_encryption_key: Option<Secret>,
    /// Base of links in emails, e.g. `https://app.example.com`.
    pub public_url: String,
    /// Failed password logins per account within `lockout_window` that lock it.
    pub lockout_threshold: u32,
    pub lockout_window: Duration,
    pub lockout_duration: Duration,
    /// Requests per minute per client IP on the sign-in routes.
    pub ip_rate_per_minute: u32,
    /// Take the client IP from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_proxy: bool,
    /// How often revocations are re-read from the database (a safety net beside Redis).
    pub revocation_sync: Duration,
    /// External identity provider whose ID tokens `/auth/oidc/exchange` accepts.
    pub oidc: Option<OidcConfig>,
    /// Seed admin (read by `mash seed`).
    pub seed_admin_email: Option<String>,
    pub seed_admin_password: Option<Secret>,
}

/// An OpenID Connect provider (Firebase Auth, Google, Auth0, Keycloak…).
#[derive(Debug, Clone)]
pub struct OidcConfig {
    pub issuer: String,
    pub audience: String,
    pub jwks_url: String,
}

impl AuthConfig {
    pub(super) fn from_env(env: &Env, environment: Environment) -> Result<Self, ConfigError> {
        let jwt_private_key = env.secret("JWT_PRIVATE_KEY", "JWT_PRIVATE_KEY_FILE")?;
        let mfa_encryption_key = env.secret("MFA_ENCRYPTION_KEY", "MFA_ENCRYPTION_KEY_FILE")?;
        if environment == Environment::Production {
            if jwt_private_key.is_none() {
                return Err(bad("JWT_PRIVATE_KEY", "required when MASH_ENV=production (or set JWT_PRIVATE_KEY_FILE)"));
            }
            if mfa_encryption_key.is_none() {
                return Err(bad("MFA_ENCRYPTION_KEY", "required when MASH_ENV=production (32 bytes, base64)"));
            }
        }
        let access_ttl = env.seconds("ACCESS_TOKEN_TTL_SECS", 900)?;
        let refresh_days: u64 = env.ranged("REFRESH_TOKEN_TTL_DAYS", 30, 1..=365, "a number of days")?;
        let lockout_threshold: u32 = env.ranged("LOGIN_LOCKOUT_THRESHOLD", 5, 2..=100, "a whole number")?;
        let ip_rate_per_minute: u32 = env.parse("AUTH_RATE_LIMIT_PER_MINUTE", 60, "a whole number")?;
        if ip_rate_per_minute == 0 {
            return Err(bad("AUTH_RATE_LIMIT_PER_MINUTE", "must be at least 1"));
        }
        let public_url = env.get("PUBLIC_URL").unwrap_or("http://localhost:3000").trim_end_matches('/').to_string();
        url::Url::parse(&public_url).map_err(|e| bad("PUBLIC_URL", format!("not a URL: {e}")))?;
        Ok(Self {
            access_ttl,
            refresh_ttl: Duration::from_secs(refresh_days * 86_400),
            jwt_private_key,
            jwt_previous_key: env.secret("JWT_PREVIOUS_KEY", "JWT_PREVIOUS_KEY_FILE")?,
            mfa_encryption_key,
            public_url,
            lockout_threshold,
            lockout_window: env.seconds("LOGIN_LOCKOUT_WINDOW_SECS", 900)?,
            lockout_duration: env.seconds("LOGIN_LOCKOUT_SECS", 900)?,
            ip_rate_per_minute,
            trust_proxy: env.bool("TRUST_PROXY_HEADERS", false)?,
            revocation_sync: env.seconds("REVOCATION_SYNC_SECS", 10)?,
            oidc: OidcConfig::from_env(env)?,
            seed_admin_email: env.get("MASH_SEED_ADMIN_EMAIL").map(str::to_owned),
            seed_admin_password: env.opt_secret("MASH_SEED_ADMIN_PASSWORD"),
        })
    }
}

impl OidcConfig {
    /// All three of `OIDC_ISSUER`, `OIDC_AUDIENCE` and `OIDC_JWKS_URL`, or none.
    fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        match (env.get("OIDC_ISSUER"), env.get("OIDC_AUDIENCE"), env.get("OIDC_JWKS_URL")) {
            (None, None, None) => Ok(None),
            (Some(issuer), Some(audience), Some(jwks_url)) => {
                let parsed = url::Url::parse(jwks_url).map_err(|e| bad("OIDC_JWKS_URL", format!("not a URL: {e}")))?;
                if !matches!(parsed.scheme(), "https" | "http") {
                    return Err(bad("OIDC_JWKS_URL", "expected an https:// URL"));
                }
                Ok(Some(Self { issuer: issuer.into(), audience: audience.into(), jwks_url: jwks_url.into() }))
            }
            (None, _, _) => Err(bad("OIDC_ISSUER", "required with OIDC_AUDIENCE and OIDC_JWKS_URL")),
            (_, None, _) => Err(bad("OIDC_AUDIENCE", "required with OIDC_ISSUER and OIDC_JWKS_URL")),
            (_, _, None) => Err(bad("OIDC_JWKS_URL", "required with OIDC_ISSUER and OIDC_AUDIENCE")),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::cfg;

    #[test]
    fn production_requires_keys() {
        assert_eq!(cfg(&[("MASH_ENV", "production")]).unwrap_err().var, "JWT_PRIVATE_KEY");
        assert_eq!(
            cfg(&[("MASH_ENV", "production"), ("JWT_PRIVATE_KEY", "pem")]).unwrap_err().var,
            "MFA_ENCRYPTION_KEY"
        );
        assert!(cfg(&[("MASH_ENV", "production"), ("JWT_PRIVATE_KEY", "pem"), ("MFA_ENCRYPTION_KEY", "k")]).is_ok());
        let c = cfg(&[("JWT_PRIVATE_KEY", "very-secret-pem")]).unwrap();
        assert!(!format!("{c:?}").contains("very-secret-pem"));
    }
}
