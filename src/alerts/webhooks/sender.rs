//! The HTTP client of webhook deliveries ([`Sender`]) and their signature ([`sign`]). Targets
//! are checked against server-side request forgery: unless `WEBHOOK_ALLOW_PRIVATE_NETWORKS=true`,
//! a URL whose host is (or resolves to) a loopback, private, link-local or otherwise non-public
//! address is refused, at configuration time and again at every connection (the resolver
//! itself filters, so DNS rebinding does not help).

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The hex signature of `t.body`.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    hex::encode(crate::util::timestamped_mac(secret, t, body))
}

/// Whether an address is one the public internet can reach.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.octets()[0] == 0
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
                || v4.octets()[0] >= 224)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// A resolver that drops non-public addresses.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.filter(|a| is_public(a.ip())).collect();
            if addrs.is_empty() {
                return Err(format!("{host} does not resolve to a public address").into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The HTTP client of webhook deliveries.
pub struct Sender {
    http: reqwest::Client,
    allow_private: bool,
}

impl Sender {
    pub fn new(allow_private: bool) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mash-webhooks/", env!("CARGO_PKG_VERSION")));
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        Ok(Self { http: builder.build()?, allow_private })
    }

    /// Checks a URL a grower wants to use.
    pub fn check_url(&self, raw: &str) -> Result<url::Url, String> {
        let url = url::Url::parse(raw).map_err(|e| format!("not a URL: {e}"))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err("must be an http:// or https:// URL".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not carry credentials".into());
        }
        match url.host() {
            None => return Err("has no host".into()),
            Some(url::Host::Ipv4(ip)) if !self.allow_private && !is_public(IpAddr::V4(ip)) => {
                return Err("must not point at a private or loopback address".into());
            }
            Some(url::Host::Ipv6(ip)) if !self.allow_private && !is_public(IpAddr::V6(ip)) => {
                return Err("must not point at a private or loopback address".into());
            }
            Some(url::Host::Domain(d)) if !self.allow_private && (d == "localhost" || d.ends_with(".localhost")) => {
                return Err("must not point at a private or loopback address".into());
            }
            _ => {}
        }
        Ok(url)
    }

    /// Posts a signed event. `Err` carries a readable reason (status or transport error).
    pub async fn post(
        &self,
        url: &str,
        secret: &str,
        event_id: Uuid,
        body: &str,
        now: DateTime<Utc>,
    ) -> Result<(), String> {
        // IP-literal hosts do not go through the resolver: check them here too.
        self.check_url(url)?;
        let t = now.timestamp();
        let res = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Mash-Signature", format!("t={t},v1={}", sign(secret, t, body.as_bytes())))
            .header("Mash-Event-Id", event_id.to_string())
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| format!("could not deliver: {e}"))?;
        if res.status().is_success() { Ok(()) } else { Err(format!("the endpoint answered {}", res.status())) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.5.4",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn urls_are_checked() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let strict = Sender::new(false).unwrap();
        assert!(strict.check_url("https://hooks.example.com/x").is_ok());
        for bad in [
            "ftp://x.example",
            "http://127.0.0.1:8080/",
            "http://localhost/",
            "https://user:pw@x.example/",
            "http://[::1]/",
        ] {
            assert!(strict.check_url(bad).is_err(), "{bad}");
        }
        assert!(Sender::new(true).unwrap().check_url("http://127.0.0.1:8080/").is_ok());
    }
}
