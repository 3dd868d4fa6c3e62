//! The reply envelope `{"error": bool, "code": int?, "message": string?, "data": ...}` and the
//! classification of a reply into data or a [`VpsieError`]. Pure: no I/O, any bytes accepted.

use std::time::Duration;

use serde_json::{Map, Value};

use super::error::{VpsieError, truncate};

/// Longest server text kept in an error message.
const MAX_MESSAGE: usize = 512;

/// Phrases that make a failure terminal (quota and plan limits), matched case-insensitively.
const QUOTA_PHRASES: &[&str] = &[
    "quota",
    "limit reached",
    "exceeds the allowed limit",
    "maximum number of",
    "plan does not allow",
    "plan limit",
];

/// Whether a server message speaks of a quota or plan limit.
pub fn is_quota_message(message: &str) -> bool {
    let lower = message.to_lowercase();
    let normalized = lower.split_whitespace().collect::<Vec<_>>().join(" ");
    QUOTA_PHRASES.iter().any(|p| normalized.contains(p))
}

/// The envelope's fields, read leniently (a `code` may come as a string, `error` as 0/1).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Envelope {
    pub error: bool,
    pub code: Option<i64>,
    pub message: Option<String>,
    pub data: Option<Value>,
}

impl Envelope {
    pub fn from_object(obj: &Map<String, Value>) -> Envelope {
        let error = match obj.get("error") {
            Some(Value::Bool(b)) => *b,
            Some(Value::Number(n)) => n.as_i64().is_some_and(|v| v != 0),
            Some(Value::String(s)) => s.eq_ignore_ascii_case("true") || s == "1",
            _ => false,
        };
        let code = match obj.get("code") {
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        };
        let message = match obj.get("message") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        };
        let data = match obj.get("data") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.clone()),
        };
        Envelope {
            error,
            code,
            message,
            data,
        }
    }
}

/// Turns one HTTP reply into its `data` (`None` when absent or null) or an error.
///
/// - 2xx without `"error": true`: success; an empty body is a success without data; a body that is
///   not a JSON object is a protocol error.
/// - otherwise a failure; a message with quota or plan-limit words is [`VpsieError::Quota`]
///   whatever the status; then 401 → unauthorized, 404 → not found, 429 → rate limited, 5xx →
///   server error, anything else → rejected. For an in-band failure (2xx with `"error": true`) the
///   envelope's `code` stands in for the status when it is a 4xx or 5xx.
pub fn interpret(
    status: u16,
    body: &[u8],
    retry_after: Option<Duration>,
    what: &str,
) -> Result<Option<Value>, VpsieError> {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let envelope = parsed
        .as_ref()
        .and_then(Value::as_object)
        .map(Envelope::from_object);
    let success = (200..300).contains(&status);
    let in_band_error = envelope.as_ref().is_some_and(|e| e.error);

    if success && !in_band_error {
        return match (parsed, envelope) {
            (_, Some(env)) => Ok(env.data),
            (None, None) if body.iter().all(u8::is_ascii_whitespace) => Ok(None),
            (None, None) => Err(VpsieError::Protocol(format!(
                "{what}: HTTP {status} reply is not JSON"
            ))),
            (Some(_), None) => Err(VpsieError::Protocol(format!(
                "{what}: HTTP {status} reply is not a JSON object"
            ))),
        };
    }

    let code = envelope.as_ref().and_then(|e| e.code);
    let message = envelope
        .as_ref()
        .and_then(|e| e.message.clone())
        .filter(|m| !m.trim().is_empty())
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() || envelope.is_some() {
                format!("HTTP {status}")
            } else {
                text.to_string()
            }
        });
    let message = truncate(&message, MAX_MESSAGE);
    if is_quota_message(&message) {
        return Err(VpsieError::Quota { message });
    }
    let effective = if success {
        code.and_then(|c| u16::try_from(c).ok())
            .filter(|c| (400..600).contains(c))
            .unwrap_or(status)
    } else {
        status
    };
    Err(match effective {
        401 => VpsieError::Unauthorized { message },
        404 => VpsieError::NotFound {
            what: format!("{what}: {message}"),
        },
        429 => VpsieError::RateLimited { retry_after },
        500..=599 => VpsieError::Server {
            status: effective,
            message,
        },
        _ => VpsieError::Rejected {
            status,
            code,
            message,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn body(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn success_returns_data() {
        let b = body(json!({"error": false, "code": 200, "data": {"id": 1}}));
        assert_eq!(
            interpret(200, &b, None, "x").unwrap(),
            Some(json!({"id": 1}))
        );
        let b = body(json!({"error": false, "message": "queued"}));
        assert_eq!(interpret(200, &b, None, "x").unwrap(), None);
        let b = body(json!({"error": false, "data": null}));
        assert_eq!(interpret(200, &b, None, "x").unwrap(), None);
        assert_eq!(interpret(204, b"", None, "x").unwrap(), None);
    }

    #[test]
    fn in_band_error_is_a_failure() {
        let b = body(json!({"error": true, "code": 400, "message": "bad group"}));
        let e = interpret(200, &b, None, "add").unwrap_err();
        assert!(
            matches!(
                e,
                VpsieError::Rejected {
                    status: 200,
                    code: Some(400),
                    ..
                }
            ),
            "{e:?}"
        );
        let b = body(json!({"error": true, "code": 404, "message": "gone"}));
        assert_eq!(
            interpret(200, &b, None, "vm").unwrap_err().kind(),
            "not_found"
        );
        let b = body(json!({"error": "true", "code": "503", "message": "busy"}));
        assert_eq!(
            interpret(200, &b, None, "vm").unwrap_err().kind(),
            "transient"
        );
    }

    #[test]
    fn statuses_map_to_kinds() {
        let b = body(json!({"error": true, "message": "nope"}));
        assert_eq!(
            interpret(401, &b, None, "x").unwrap_err().kind(),
            "unauthorized"
        );
        assert_eq!(
            interpret(404, &b, None, "x").unwrap_err().kind(),
            "not_found"
        );
        assert_eq!(
            interpret(502, b"<html>bad gateway</html>", None, "x")
                .unwrap_err()
                .kind(),
            "transient"
        );
        assert_eq!(
            interpret(400, &b, None, "x").unwrap_err().kind(),
            "rejected"
        );
        let e = interpret(429, b"", Some(Duration::from_secs(3)), "x").unwrap_err();
        assert_eq!(
            e,
            VpsieError::RateLimited {
                retry_after: Some(Duration::from_secs(3))
            }
        );
        assert_eq!(
            interpret(200, b"<html>", None, "x").unwrap_err().kind(),
            "protocol"
        );
        assert_eq!(
            interpret(200, b"[1,2]", None, "x").unwrap_err().kind(),
            "protocol"
        );
    }

    #[test]
    fn quota_words_are_terminal_whatever_the_status() {
        for msg in [
            "Quota exceeded for this account",
            "Node LIMIT  reached",
            "The request exceeds the allowed limit",
            "Maximum number of servers",
            "Your plan does not allow more nodes",
        ] {
            let b = body(json!({"error": true, "message": msg}));
            for status in [200, 400, 403, 500, 503] {
                let e = interpret(status, &b, None, "add").unwrap_err();
                assert_eq!(e.kind(), "quota", "{status} {msg}");
                assert!(e.is_terminal());
            }
        }
        assert!(interpret(500, b"quota exceeded", None, "add").is_err_and(|e| e.kind() == "quota"));
        assert!(!is_quota_message("internal server error"));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(status in 0u16..1000, bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = interpret(status, &bytes, None, "fuzz");
        }

        #[test]
        fn random_json_never_panics(status in 100u16..600, v in arb_json()) {
            let bytes = serde_json::to_vec(&v).unwrap();
            let r = interpret(status, &bytes, None, "fuzz");
            if !(200..300).contains(&status) {
                prop_assert!(r.is_err());
            }
        }

        #[test]
        fn random_text_never_panics(status in 0u16..1000, s in "\\PC*") {
            let _ = interpret(status, s.as_bytes(), Some(Duration::from_secs(1)), "fuzz");
            let _ = is_quota_message(&s);
        }
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            "\\PC{0,20}".prop_map(Value::String),
            prop_oneof![Just("error"), Just("code"), Just("message"), Just("data")]
                .prop_map(|s| Value::String(s.to_string())),
        ];
        leaf.prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("error".to_string()),
                        Just("code".to_string()),
                        Just("message".to_string()),
                        Just("data".to_string()),
                        "[a-z]{1,6}"
                    ],
                    inner,
                    0..5
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
