//! Retry timing: exponential backoff with jitter, and `Retry-After`. Pure.

use std::time::Duration;

/// How often and how patiently a call is repeated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (the first one included) for GET and DELETE, and for 429 answers.
    pub max_attempts: u32,
    /// The first backoff's upper bound.
    pub base_delay: Duration,
    /// No backoff is longer than this.
    pub max_delay: Duration,
    /// A `Retry-After` longer than this is cut to it.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

/// The wait before retry number `retry` (1 for the first retry), "equal jitter": the exponential
/// ceiling `min(max_delay, base_delay * 2^(retry-1))`, half of it fixed and the other half scaled
/// by `unit` (a random number in `[0, 1]`; values outside are clamped).
pub fn backoff_delay(policy: &RetryPolicy, retry: u32, unit: f64) -> Duration {
    let exp = retry.saturating_sub(1).min(62);
    let ceiling = policy
        .base_delay
        .checked_mul(1u32.checked_shl(exp.min(31)).unwrap_or(u32::MAX))
        .unwrap_or(policy.max_delay)
        .min(policy.max_delay);
    let unit = if unit.is_nan() {
        0.0
    } else {
        unit.clamp(0.0, 1.0)
    };
    let half = ceiling / 2;
    half + (ceiling - half).mul_f64(unit)
}

/// Parses a `Retry-After` header given in seconds (the contract's form); anything else is `None`.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse::<u64>().ok().map(Duration::from_secs)
}

/// The wait after a 429: the server's `Retry-After` (at most `max_retry_after`), else a backoff.
pub fn rate_limit_delay(
    policy: &RetryPolicy,
    retry_after: Option<Duration>,
    retry: u32,
    unit: f64,
) -> Duration {
    match retry_after {
        Some(d) => d.min(policy.max_retry_after),
        None => backoff_delay(policy, retry, unit),
    }
}

/// A random number in `[0, 1)` for jitter.
pub(crate) fn jitter_unit() -> f64 {
    rand::random::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn grows_exponentially_up_to_the_cap() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(5),
        };
        assert_eq!(backoff_delay(&p, 1, 1.0), Duration::from_millis(100));
        assert_eq!(backoff_delay(&p, 2, 1.0), Duration::from_millis(200));
        assert_eq!(backoff_delay(&p, 3, 0.0), Duration::from_millis(200));
        assert_eq!(backoff_delay(&p, 5, 1.0), Duration::from_secs(1));
        assert_eq!(backoff_delay(&p, 500, 1.0), Duration::from_secs(1));
    }

    #[test]
    fn retry_after_seconds() {
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("0"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("99999999999999999999999"), None);
        let p = RetryPolicy::default();
        assert_eq!(
            rate_limit_delay(&p, Some(Duration::from_secs(3600)), 1, 0.5),
            p.max_retry_after
        );
    }

    proptest! {
        #[test]
        fn backoff_stays_in_bounds(
            base_ms in 0u64..100_000,
            max_ms in 0u64..1_000_000,
            retry in any::<u32>(),
            unit in any::<f64>(),
        ) {
            let p = RetryPolicy {
                max_attempts: 3,
                base_delay: Duration::from_millis(base_ms),
                max_delay: Duration::from_millis(max_ms),
                max_retry_after: Duration::from_secs(1),
            };
            let d = backoff_delay(&p, retry, unit);
            prop_assert!(d <= p.max_delay);
            let ceiling = p.base_delay.saturating_mul(1u32 << retry.saturating_sub(1).min(31)).min(p.max_delay);
            prop_assert!(d >= ceiling / 2);
        }

        #[test]
        fn retry_after_never_panics(s in "\\PC*") {
            let _ = parse_retry_after(&s);
        }
    }
}
