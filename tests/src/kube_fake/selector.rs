//! Label selectors (the `labelSelector` query string and `metav1.LabelSelector` objects) and
//! field selectors (`fieldSelector`), with the API server's matching rules.

use serde_json::Value;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
}

impl Requirement {
    fn matches(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        let value = labels
            .and_then(|l| l.get(&self.key))
            .and_then(Value::as_str);
        match &self.op {
            Op::Eq(v) => value == Some(v.as_str()),
            // `!=` and `notin` also match objects that do not have the label at all.
            Op::NotEq(v) => value != Some(v.as_str()),
            Op::In(vs) => value.is_some_and(|x| vs.iter().any(|v| v == x)),
            Op::NotIn(vs) => value.is_none_or(|x| !vs.iter().any(|v| v == x)),
            Op::Exists => value.is_some(),
            Op::DoesNotExist => value.is_none(),
        }
    }
}

/// A parsed label selector: all requirements must hold. Empty matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LabelSelector {
    reqs: Vec<Requirement>,
    /// A `metav1.LabelSelector` that was null: matches nothing.
    nothing: bool,
}

/// Split on commas that are not inside parentheses.
fn split_terms(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

impl LabelSelector {
    /// Parses the `labelSelector` query parameter: `a=b`, `a==b`, `a!=b`, `a`, `!a`,
    /// `a in (x,y)`, `a notin (x,y)`, comma-separated.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(Self::default());
        }
        for term in split_terms(s) {
            let term = term.trim();
            let bad = || format!("unable to parse requirement: {term:?}");
            let req = if let Some(key) = term.strip_prefix('!') {
                Requirement {
                    key: key.trim().to_string(),
                    op: Op::DoesNotExist,
                }
            } else if let Some(open) = term.find('(') {
                let close = term.rfind(')').filter(|c| *c > open).ok_or_else(bad)?;
                if !term[close + 1..].trim().is_empty() {
                    return Err(bad());
                }
                let head: Vec<&str> = term[..open].split_whitespace().collect();
                let [key, op] = head.as_slice() else {
                    return Err(bad());
                };
                let values: Vec<String> = term[open + 1..close]
                    .split(',')
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
                    .collect();
                let op = match *op {
                    "in" => Op::In(values),
                    "notin" => Op::NotIn(values),
                    _ => return Err(bad()),
                };
                Requirement {
                    key: key.to_string(),
                    op,
                }
            } else if let Some((k, v)) = term.split_once("!=") {
                Requirement {
                    key: k.trim().to_string(),
                    op: Op::NotEq(v.trim().to_string()),
                }
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                Requirement {
                    key: k.trim().to_string(),
                    op: Op::Eq(v.trim().to_string()),
                }
            } else {
                Requirement {
                    key: term.to_string(),
                    op: Op::Exists,
                }
            };
            if !valid_key(&req.key) {
                return Err(bad());
            }
            reqs.push(req);
        }
        Ok(Self {
            reqs,
            nothing: false,
        })
    }

    /// Converts a `metav1.LabelSelector` (`matchLabels`, `matchExpressions`) as
    /// `LabelSelectorAsSelector` does: `{}` matches everything, null matches nothing.
    pub fn from_object(sel: Option<&Value>) -> Result<Self, String> {
        let Some(sel) = sel.filter(|s| !s.is_null()) else {
            return Ok(Self {
                reqs: Vec::new(),
                nothing: true,
            });
        };
        let mut reqs = Vec::new();
        if let Some(ml) = sel.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in ml {
                reqs.push(Requirement {
                    key: k.clone(),
                    op: Op::Eq(v.as_str().unwrap_or_default().to_string()),
                });
            }
        }
        if let Some(exprs) = sel.get("matchExpressions").and_then(Value::as_array) {
            for e in exprs {
                let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
                let values: Vec<String> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                let op = match e.get("operator").and_then(Value::as_str) {
                    Some("In") => Op::In(values),
                    Some("NotIn") => Op::NotIn(values),
                    Some("Exists") => Op::Exists,
                    Some("DoesNotExist") => Op::DoesNotExist,
                    other => {
                        return Err(format!("{other:?} is not a valid label selector operator"));
                    }
                };
                reqs.push(Requirement {
                    key: key.to_string(),
                    op,
                });
            }
        }
        Ok(Self {
            reqs,
            nothing: false,
        })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        if self.nothing {
            return false;
        }
        let labels = obj
            .get("metadata")
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object);
        self.reqs.iter().all(|r| r.matches(labels))
    }
}

/// A parsed `fieldSelector`: `path=value`, `path==value`, `path!=value`, comma-separated, where
/// `path` is a dotted JSON path such as `spec.nodeName` or `metadata.name`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FieldSelector {
    terms: Vec<(String, bool, String)>,
}

impl FieldSelector {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        if s.trim().is_empty() {
            return Ok(Self::default());
        }
        for term in s.split(',') {
            let term = term.trim();
            let (path, eq, value) = if let Some((k, v)) = term.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (k, true, v)
            } else {
                return Err(format!(
                    "invalid selector: '{term}'; can't understand '{term}'"
                ));
            };
            terms.push((path.trim().to_string(), eq, value.trim().to_string()));
        }
        Ok(Self { terms })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.terms.iter().all(|(path, eq, want)| {
            let mut cur = Some(obj);
            for part in path.split('.') {
                cur = cur.and_then(|c| c.get(part));
            }
            let got = match cur {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            };
            (got == *want) == *eq
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({ "metadata": { "name": "x", "labels": labels }, "spec": { "nodeName": "n1" } })
    }

    #[test]
    fn label_selector_query_forms() {
        let o = obj(json!({ "app": "web", "tier": "front" }));
        let m = |s: &str| LabelSelector::parse(s).unwrap().matches(&o);
        assert!(m(""));
        assert!(m("app=web"));
        assert!(m("app==web,tier=front"));
        assert!(!m("app=db"));
        assert!(m("app!=db"));
        assert!(m("missing!=x"));
        assert!(m("app"));
        assert!(!m("!app"));
        assert!(m("!missing"));
        assert!(m("app in (db, web)"));
        assert!(!m("app notin (db,web)"));
        assert!(m("missing notin (a)"));
        assert!(m("app in (web),tier"));
        assert!(LabelSelector::parse("app in web").is_err());
        assert!(LabelSelector::parse("a b=c").is_err());
    }

    #[test]
    fn label_selector_objects() {
        let o = obj(json!({ "app": "web" }));
        let from = |v: Value| LabelSelector::from_object(Some(&v)).unwrap();
        assert!(from(json!({})).matches(&o));
        assert!(!LabelSelector::from_object(None).unwrap().matches(&o));
        assert!(from(json!({ "matchLabels": { "app": "web" } })).matches(&o));
        assert!(
            !from(json!({ "matchExpressions": [{ "key": "app", "operator": "NotIn", "values": ["web"] }] }))
                .matches(&o)
        );
        assert!(
            from(json!({ "matchExpressions": [{ "key": "zone", "operator": "DoesNotExist" }] }))
                .matches(&o)
        );
    }

    #[test]
    fn field_selectors() {
        let o = obj(json!({}));
        let m = |s: &str| FieldSelector::parse(s).unwrap().matches(&o);
        assert!(m("spec.nodeName=n1"));
        assert!(m("metadata.name==x,spec.nodeName!=n2"));
        assert!(!m("spec.nodeName=n2"));
        assert!(m("status.phase="));
    }
}
