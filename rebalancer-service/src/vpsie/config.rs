//! Client configuration and base-URL validation.

use std::time::Duration;

use reqwest::Url;

use super::backoff::RetryPolicy;
use super::breaker::BreakerConfig;
use super::credentials::Credentials;
use super::error::VpsieError;

/// The real API.
pub const DEFAULT_BASE_URL: &str = "https://api.vpsie.com/apps/v2";

/// `vpsie-rebalancer/<crate version>`.
pub fn default_user_agent() -> String {
    format!("vpsie-rebalancer/{}", env!("CARGO_PKG_VERSION"))
}

/// How an add whose outcome is unclear is resolved (see
/// [`crate::vpsie::VpsieClient::add_worker`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddPolicy {
    /// POST requests in all for one add. A new POST is sent only when the previous one certainly
    /// did not reach the server, or failed ambiguously and the listing then found no new machine.
    pub max_post_attempts: u32,
    /// Cluster listings made to find the machine an ambiguous or data-less add created.
    pub listing_polls: u32,
    /// Wait between those listings.
    pub listing_interval: Duration,
}

impl Default for AddPolicy {
    fn default() -> Self {
        AddPolicy {
            max_post_attempts: 2,
            listing_polls: 5,
            listing_interval: Duration::from_secs(2),
        }
    }
}

/// Everything the client needs. `Debug` is safe to log: the credentials redact themselves.
#[derive(Debug, Clone)]
pub struct VpsieConfig {
    /// Default [`DEFAULT_BASE_URL`].
    pub base_url: String,
    /// Accept a plain `http://` base URL (local fakes only).
    pub allow_http: bool,
    /// The cluster the service manages (`{cluster}` in paths).
    pub cluster_id: String,
    pub credentials: Credentials,
    /// Per-attempt timeout, covering the reply body (default 30 s).
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Replies larger than this are refused (default 10 MiB).
    pub max_body_bytes: usize,
    pub retry: RetryPolicy,
    pub breaker: BreakerConfig,
    /// A Bearer token with less than this left is renewed before use (default 5 min).
    pub token_refresh_margin: Duration,
    pub add: AddPolicy,
    pub user_agent: String,
}

impl VpsieConfig {
    /// The defaults of `vpsie-api.md` for one cluster.
    pub fn new(cluster_id: impl Into<String>, credentials: Credentials) -> Self {
        VpsieConfig {
            base_url: DEFAULT_BASE_URL.to_string(),
            allow_http: false,
            cluster_id: cluster_id.into(),
            credentials,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_body_bytes: 10 * 1024 * 1024,
            retry: RetryPolicy::default(),
            breaker: BreakerConfig::default(),
            token_refresh_margin: Duration::from_secs(5 * 60),
            add: AddPolicy::default(),
            user_agent: default_user_agent(),
        }
    }
}

/// Parses and checks a base URL: `https://`, or `http://` only with `allow_http`; no credentials,
/// query or fragment in it. The result has no trailing slash in its path.
pub fn validate_base_url(raw: &str, allow_http: bool) -> Result<Url, VpsieError> {
    let url = Url::parse(raw.trim())
        .map_err(|e| VpsieError::Config(format!("base URL {raw:?} is not a URL: {e}")))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => {
            return Err(VpsieError::Config(format!(
                "base URL {raw:?} is plain http; refused unless --vpsie-allow-http (VPSIE_ALLOW_HTTP=true)"
            )));
        }
        other => {
            return Err(VpsieError::Config(format!(
                "base URL scheme {other:?} is not supported (https only)"
            )));
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(VpsieError::Config(format!("base URL {raw:?} has no host")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(VpsieError::Config(
            "base URL must not embed credentials".to_string(),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(VpsieError::Config(format!(
            "base URL {raw:?} must not have a query or fragment"
        )));
    }
    let mut url = url;
    let trimmed = url.path().trim_end_matches('/').to_string();
    url.set_path(&trimmed);
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_default_and_http_refused() {
        let u = validate_base_url(DEFAULT_BASE_URL, false).unwrap();
        assert_eq!(u.as_str(), "https://api.vpsie.com/apps/v2");
        assert_eq!(
            validate_base_url("https://x.test/apps/v2/", false)
                .unwrap()
                .path(),
            "/apps/v2"
        );
        let e = validate_base_url("http://127.0.0.1:8080/apps/v2", false).unwrap_err();
        assert_eq!(e.kind(), "config");
        assert!(e.to_string().contains("allow-http"));
        assert!(validate_base_url("http://127.0.0.1:8080/apps/v2", true).is_ok());
        assert!(validate_base_url("ftp://x.test", true).is_err());
        assert!(validate_base_url("https://u:p@x.test", false).is_err());
        assert!(validate_base_url("https://x.test/?a=b", false).is_err());
        assert!(validate_base_url("not a url", true).is_err());
    }

    #[test]
    fn defaults_follow_the_contract() {
        let c = VpsieConfig::new("c", Credentials::access_token("t"));
        assert_eq!(c.timeout, Duration::from_secs(30));
        assert_eq!(c.max_body_bytes, 10 * 1024 * 1024);
        assert_eq!(c.breaker.failure_threshold, 5);
        assert_eq!(c.breaker.open_for, Duration::from_secs(30));
        assert_eq!(c.token_refresh_margin, Duration::from_secs(300));
        assert!(c.user_agent.starts_with("vpsie-rebalancer/"));
        assert!(!format!("{c:?}").contains("\"t\""));
    }
}
