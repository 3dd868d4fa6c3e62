//! The client's error type. Messages carry what the server said (truncated) and never a credential.

use std::time::Duration;

/// Everything a VPSie call can fail with. [`VpsieError::kind`] is a stable, low-cardinality label
/// for metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VpsieError {
    /// The client is misconfigured (bad base URL, `http://` without `allow_http`, …).
    #[error("invalid VPSie client configuration: {0}")]
    Config(String),
    /// Credentials could not be loaded (missing or empty files or variables). Names the source,
    /// never the value.
    #[error("VPSie credentials unavailable: {0}")]
    Credentials(String),
    /// A quota or plan limit: terminal, never retried.
    #[error("VPSie quota or plan limit reached: {message}")]
    Quota { message: String },
    /// 401 (after the one refresh-and-retry the client-credentials mode allows).
    #[error("VPSie rejected the credentials: {message}")]
    Unauthorized { message: String },
    /// 404 (a delete's 404 is a success and never surfaces as this).
    #[error("not found on VPSie: {what}")]
    NotFound { what: String },
    /// A definite refusal: another 4xx, or a 2xx envelope with `"error": true`. Not retried.
    #[error("VPSie refused the request (HTTP {status}{}): {message}", code.map(|c| format!(", code {c}")).unwrap_or_default())]
    Rejected {
        status: u16,
        code: Option<i64>,
        message: String,
    },
    /// 429, still answered after the retries.
    #[error("VPSie rate limit (HTTP 429){}", retry_after.map(|d| format!(", retry after {}s", d.as_secs())).unwrap_or_default())]
    RateLimited { retry_after: Option<Duration> },
    /// 5xx (retried for GET and DELETE; ambiguous for the add).
    #[error("VPSie server error (HTTP {status}): {message}")]
    Server { status: u16, message: String },
    /// The connection failed or broke. `maybe_sent` is false only when the request certainly never
    /// reached the server (the connection could not be opened).
    #[error("VPSie transport error: {message}")]
    Transport { message: String, maybe_sent: bool },
    /// The per-call timeout elapsed.
    #[error("VPSie call timed out after {}ms", after.as_millis())]
    Timeout { after: Duration },
    /// The circuit breaker is open: the call was not sent.
    #[error("VPSie circuit breaker open (retry in {}ms)", retry_in.as_millis())]
    CircuitOpen { retry_in: Duration },
    /// The reply could not be understood (not JSON, missing fields, over the size cap).
    #[error("unexpected VPSie reply: {0}")]
    Protocol(String),
    /// An add whose outcome could not be established: the POST failed ambiguously (or was
    /// accepted without `data`) and listing the cluster did not identify exactly one new machine.
    /// Never retried further; the caller must reconcile by listing later.
    #[error("VPSie add unconfirmed: {message}")]
    AddUnconfirmed { message: String },
}

impl VpsieError {
    /// A stable label for metrics: `config`, `credentials`, `quota`, `unauthorized`, `not_found`,
    /// `rejected`, `rate_limited`, `transient`, `timeout`, `circuit_open`, `protocol`,
    /// `ambiguous`.
    pub fn kind(&self) -> &'static str {
        match self {
            VpsieError::Config(_) => "config",
            VpsieError::Credentials(_) => "credentials",
            VpsieError::Quota { .. } => "quota",
            VpsieError::Unauthorized { .. } => "unauthorized",
            VpsieError::NotFound { .. } => "not_found",
            VpsieError::Rejected { .. } => "rejected",
            VpsieError::RateLimited { .. } => "rate_limited",
            VpsieError::Server { .. } | VpsieError::Transport { .. } => "transient",
            VpsieError::Timeout { .. } => "timeout",
            VpsieError::CircuitOpen { .. } => "circuit_open",
            VpsieError::Protocol(_) => "protocol",
            VpsieError::AddUnconfirmed { .. } => "ambiguous",
        }
    }

    /// Terminal errors must not be retried by anyone (quota and plan limits, bad credentials,
    /// misconfiguration, definite refusals).
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            VpsieError::Config(_)
                | VpsieError::Credentials(_)
                | VpsieError::Quota { .. }
                | VpsieError::Unauthorized { .. }
                | VpsieError::Rejected { .. }
        )
    }

    /// Whether a later, idempotent retry could succeed (5xx, transport, timeout, 429, open circuit).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            VpsieError::Server { .. }
                | VpsieError::Transport { .. }
                | VpsieError::Timeout { .. }
                | VpsieError::RateLimited { .. }
                | VpsieError::CircuitOpen { .. }
        )
    }

    /// Whether a non-idempotent request may have taken effect although it failed (5xx, timeout,
    /// a connection broken after the request may have been sent).
    pub fn is_ambiguous(&self) -> bool {
        match self {
            VpsieError::Server { .. } | VpsieError::Timeout { .. } => true,
            VpsieError::Transport { maybe_sent, .. } => *maybe_sent,
            _ => false,
        }
    }

    /// Whether the circuit breaker counts this as a failure (transport errors, timeouts, 5xx).
    pub(crate) fn counts_for_breaker(&self) -> bool {
        matches!(
            self,
            VpsieError::Server { .. } | VpsieError::Transport { .. } | VpsieError::Timeout { .. }
        )
    }
}

/// Cuts server-provided text to a bounded length for error messages and logs.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_stable() {
        let cases = [
            (
                VpsieError::Quota {
                    message: "q".into(),
                },
                "quota",
            ),
            (
                VpsieError::Unauthorized {
                    message: "u".into(),
                },
                "unauthorized",
            ),
            (VpsieError::NotFound { what: "x".into() }, "not_found"),
            (
                VpsieError::Server {
                    status: 503,
                    message: String::new(),
                },
                "transient",
            ),
            (
                VpsieError::Transport {
                    message: String::new(),
                    maybe_sent: true,
                },
                "transient",
            ),
            (
                VpsieError::CircuitOpen {
                    retry_in: Duration::ZERO,
                },
                "circuit_open",
            ),
            (
                VpsieError::Timeout {
                    after: Duration::from_secs(1),
                },
                "timeout",
            ),
            (VpsieError::Protocol("p".into()), "protocol"),
        ];
        for (e, k) in cases {
            assert_eq!(e.kind(), k, "{e}");
        }
    }

    #[test]
    fn classification() {
        assert!(VpsieError::Quota { message: "".into() }.is_terminal());
        assert!(!VpsieError::Quota { message: "".into() }.is_transient());
        let connect = VpsieError::Transport {
            message: "refused".into(),
            maybe_sent: false,
        };
        assert!(connect.is_transient() && !connect.is_ambiguous());
        assert!(
            VpsieError::Timeout {
                after: Duration::from_secs(1)
            }
            .is_ambiguous()
        );
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h…");
        assert_eq!(truncate("abc", 5), "abc");
    }
}
