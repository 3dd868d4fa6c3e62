//! Client-credentials login: the reply of `POST /auth/from/api` (not wrapped in `data`), token
//! expiry, and RFC 3339 parsing. Pure.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::credentials::Secret;
use super::envelope;
use super::error::VpsieError;

/// Lifetime assumed when the login reply has no `expires`.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// A Bearer token and when it expires (on the local monotonic clock).
#[derive(Clone)]
pub struct BearerToken {
    pub token: Secret,
    pub expires_at: Instant,
    /// Distinguishes tokens so that a 401 invalidates only the token that earned it.
    pub generation: u64,
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerToken")
            .field("token", &self.token)
            .field("expires_at", &self.expires_at)
            .field("generation", &self.generation)
            .finish()
    }
}

impl BearerToken {
    /// Whether the token must be renewed before use: less than `margin` remains.
    pub fn needs_refresh(&self, now: Instant, margin: Duration) -> bool {
        self.expires_at.saturating_duration_since(now) < margin
    }
}

/// Reads a login reply. `wall` and `now` are the current wall-clock and monotonic times, used to
/// turn the RFC 3339 `expires` into a local deadline.
pub fn parse_login_reply(
    status: u16,
    body: &[u8],
    wall: SystemTime,
    now: Instant,
    generation: u64,
) -> Result<BearerToken, VpsieError> {
    // Failures (non-2xx, or "error": true) are classified like any other reply.
    let failed = !(200..300).contains(&status)
        || serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("error").cloned())
            .is_some_and(|e| matches!(e, Value::Bool(true)) || e.as_str() == Some("true"));
    if failed {
        return match envelope::interpret(status, body, None, "login") {
            Err(e) => Err(e),
            Ok(_) => Err(VpsieError::Protocol(format!(
                "login: HTTP {status} reply is a failure without an error"
            ))),
        };
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| VpsieError::Protocol("login: reply is not JSON".to_string()))?;
    let access = value
        .get("accessToken")
        .ok_or_else(|| VpsieError::Protocol("login: reply has no accessToken".to_string()))?;
    let (token, expires) = match access {
        Value::String(s) => (s.as_str(), None),
        Value::Object(o) => (
            o.get("token").and_then(Value::as_str).unwrap_or_default(),
            o.get("expires"),
        ),
        _ => ("", None),
    };
    if token.is_empty() {
        return Err(VpsieError::Protocol(
            "login: accessToken has no token".to_string(),
        ));
    }
    let lifetime = match expires {
        None | Some(Value::Null) => DEFAULT_TOKEN_LIFETIME,
        Some(Value::String(s)) if s.trim().is_empty() => DEFAULT_TOKEN_LIFETIME,
        Some(Value::String(s)) => match parse_rfc3339(s) {
            Some(at) => at.duration_since(wall).unwrap_or(Duration::ZERO),
            None => {
                tracing::warn!(
                    "VPSie login reply has an unreadable expiry; assuming {}s",
                    DEFAULT_TOKEN_LIFETIME.as_secs()
                );
                DEFAULT_TOKEN_LIFETIME
            }
        },
        Some(Value::Number(n)) => match n.as_u64() {
            Some(secs) => (UNIX_EPOCH + Duration::from_secs(secs))
                .duration_since(wall)
                .unwrap_or(Duration::ZERO),
            None => DEFAULT_TOKEN_LIFETIME,
        },
        Some(_) => DEFAULT_TOKEN_LIFETIME,
    };
    // A lifetime beyond a year is nonsense; also keeps `Instant` arithmetic in range.
    let lifetime = lifetime.min(Duration::from_secs(366 * 86_400));
    Ok(BearerToken {
        token: Secret::new(token),
        expires_at: now + lifetime,
        generation,
    })
}

/// Parses an RFC 3339 timestamp (`2024-05-01T12:00:00Z`, `…+02:00`, fractional seconds). A space
/// may stand for the `T`, and a missing offset is read as UTC.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 19 || !s.is_char_boundary(19) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = &b[r];
        if part.iter().all(u8::is_ascii_digit) {
            std::str::from_utf8(part).ok()?.parse().ok()
        } else {
            None
        }
    };
    if b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &s[19..];
    let mut nanos: u32 = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        for (i, d) in frac.bytes().take(digits.min(9)).enumerate() {
            nanos += u32::from(d - b'0') * 10u32.pow(8 - i as u32);
        }
        rest = &frac[digits..];
    }
    let offset_secs: i64 = match rest {
        "" | "Z" | "z" => 0,
        _ => {
            let rb = rest.as_bytes();
            let sign = match rb[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let body = &rest[1..];
            let (h, m) = match body.len() {
                5 if body.as_bytes()[2] == b':' => (body.get(0..2)?, body.get(3..5)?),
                4 => (body.get(0..2)?, body.get(2..4)?),
                _ => return None,
            };
            if !h.bytes().chain(m.bytes()).all(|c| c.is_ascii_digit()) {
                return None;
            }
            let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
            if h > 23 || m > 59 {
                return None;
            }
            sign * (h * 3600 + m * 60)
        }
    };
    let second = second.min(59);
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    if secs >= 0 {
        Some(UNIX_EPOCH + Duration::new(secs as u64, nanos))
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::new(secs.unsigned_abs(), 0))?
            .checked_add(Duration::from_nanos(u64::from(nanos)))
    }
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// Howard Hinnant's `days_from_civil`: days since 1970-01-01.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn civil_from_days(z: i64) -> (i64, i64, i64) {
        let z = z + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        (
            if m <= 2 {
                yoe + era * 400 + 1
            } else {
                yoe + era * 400
            },
            m,
            d,
        )
    }

    #[test]
    fn rfc3339_examples() {
        let t = |s| parse_rfc3339(s).map(|t| t.duration_since(UNIX_EPOCH).unwrap());
        assert_eq!(t("1970-01-01T00:00:00Z"), Some(Duration::ZERO));
        assert_eq!(
            t("2024-02-29T23:59:59Z"),
            Some(Duration::from_secs(1_709_251_199))
        );
        assert_eq!(
            t("2024-03-01T01:59:59+02:00"),
            Some(Duration::from_secs(1_709_251_199))
        );
        assert_eq!(
            t("2024-02-29 23:59:59"),
            Some(Duration::from_secs(1_709_251_199))
        );
        assert_eq!(
            t("2024-02-29T23:59:59.25Z"),
            Some(Duration::new(1_709_251_199, 250_000_000))
        );
        assert_eq!(t("2023-02-29T00:00:00Z"), None);
        assert_eq!(t("2024-13-01T00:00:00Z"), None);
        assert_eq!(t("2024-01-01T00:00:00+0x:00"), None);
        assert_eq!(t("2024-01-01"), None);
        assert_eq!(t("2024-01-01T00:00:00.Z"), None);
    }

    #[test]
    fn login_reply_expiry() {
        let wall = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let now = Instant::now();
        let body = json!({"error": false, "accessToken": {"token": "abc", "expires": "2023-11-14T22:23:20Z"}, "refreshToken": "r"});
        let tok = parse_login_reply(200, body.to_string().as_bytes(), wall, now, 1).unwrap();
        assert_eq!(tok.token.expose(), "abc");
        assert_eq!(tok.expires_at - now, Duration::from_secs(10 * 60));
        assert!(!tok.needs_refresh(now, Duration::from_secs(300)));
        assert!(tok.needs_refresh(now + Duration::from_secs(301), Duration::from_secs(300)));

        let body = json!({"accessToken": {"token": "abc"}});
        let tok = parse_login_reply(200, body.to_string().as_bytes(), wall, now, 1).unwrap();
        assert_eq!(tok.expires_at - now, DEFAULT_TOKEN_LIFETIME);

        let body = json!({"error": false, "accessToken": {"token": ""}});
        assert_eq!(
            parse_login_reply(200, body.to_string().as_bytes(), wall, now, 1)
                .unwrap_err()
                .kind(),
            "protocol"
        );
        let body = json!({"error": true, "message": "Invalid credentials"});
        assert_eq!(
            parse_login_reply(401, body.to_string().as_bytes(), wall, now, 1)
                .unwrap_err()
                .kind(),
            "unauthorized"
        );
        assert_eq!(
            parse_login_reply(200, body.to_string().as_bytes(), wall, now, 1)
                .unwrap_err()
                .kind(),
            "rejected"
        );
    }

    #[test]
    fn token_debug_redacts() {
        let tok = BearerToken {
            token: Secret::new("very-secret"),
            expires_at: Instant::now(),
            generation: 1,
        };
        assert!(!format!("{tok:?}").contains("very-secret"));
    }

    proptest! {
        #[test]
        fn rfc3339_roundtrip(secs in 0i64..253_402_300_799, nanos in 0u32..1_000_000_000, off_min in -1439i64..1440) {
            let local = secs + off_min * 60;
            prop_assume!((0..253_402_300_800).contains(&local));
            let (y, m, d) = civil_from_days(local.div_euclid(86_400));
            let r = local.rem_euclid(86_400);
            let sign = if off_min < 0 { '-' } else { '+' };
            let s = format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}{sign}{:02}:{:02}",
                r / 3600, (r % 3600) / 60, r % 60, off_min.abs() / 60, off_min.abs() % 60
            );
            let parsed = parse_rfc3339(&s).unwrap();
            prop_assert_eq!(parsed, UNIX_EPOCH + Duration::new(secs as u64, nanos));
        }

        #[test]
        fn rfc3339_never_panics(s in "\\PC*") {
            let _ = parse_rfc3339(&s);
        }

        #[test]
        fn rfc3339_near_miss_never_panics(s in "[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,12})?(Z|[+-][0-9]{2}:?[0-9]{2}|.{0,3})") {
            let _ = parse_rfc3339(&s);
        }

        #[test]
        fn login_reply_never_panics(status in 0u16..1000, bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_login_reply(status, &bytes, SystemTime::now(), Instant::now(), 0);
        }
    }
}
