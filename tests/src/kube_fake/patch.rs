//! JSON merge patch (RFC 7386) and JSON patch (RFC 6902).

use serde_json::{Map, Value};

/// Applies an RFC 7386 merge patch to `target`.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else {
        unreachable!("made an object above");
    };
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// Splits an RFC 6901 JSON pointer into unescaped reference tokens.
fn tokens(pointer: &str) -> Result<Vec<String>, String> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(format!(
            "invalid JSON pointer {pointer:?}: must start with '/'"
        ));
    };
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn array_index(token: &str, len: usize, allow_end: bool) -> Result<usize, String> {
    if allow_end && token == "-" {
        return Ok(len);
    }
    if token.len() > 1 && token.starts_with('0') {
        return Err(format!("invalid array index {token:?}"));
    }
    let i: usize = token
        .parse()
        .map_err(|_| format!("invalid array index {token:?}"))?;
    let max = if allow_end {
        len
    } else {
        len.saturating_sub(1)
    };
    if i > max || (!allow_end && len == 0) {
        return Err(format!("array index {i} out of bounds"));
    }
    Ok(i)
}

fn parent_mut<'a>(
    doc: &'a mut Value,
    toks: &[String],
    path: &str,
) -> Result<&'a mut Value, String> {
    let mut cur = doc;
    for t in toks {
        cur = match cur {
            Value::Object(m) => m.get_mut(t),
            Value::Array(a) => {
                let i = array_index(t, a.len(), false)?;
                a.get_mut(i)
            }
            _ => None,
        }
        .ok_or_else(|| format!("path {path:?} does not exist"))?;
    }
    Ok(cur)
}

fn get<'a>(doc: &'a Value, path: &str) -> Result<&'a Value, String> {
    let mut cur = doc;
    for t in tokens(path)? {
        cur = match cur {
            Value::Object(m) => m.get(&t),
            Value::Array(a) => a.get(array_index(&t, a.len(), false)?),
            _ => None,
        }
        .ok_or_else(|| format!("path {path:?} does not exist"))?;
    }
    Ok(cur)
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let toks = tokens(path)?;
    let Some((last, parents)) = toks.split_last() else {
        *doc = value;
        return Ok(());
    };
    match parent_mut(doc, parents, path)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
        }
        Value::Array(a) => {
            let i = array_index(last, a.len(), true)?;
            a.insert(i, value);
        }
        _ => return Err(format!("path {path:?}: parent is not a container")),
    }
    Ok(())
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let toks = tokens(path)?;
    let Some((last, parents)) = toks.split_last() else {
        return Err("cannot remove the whole document".into());
    };
    match parent_mut(doc, parents, path)? {
        Value::Object(m) => m
            .remove(last)
            .ok_or_else(|| format!("path {path:?} does not exist")),
        Value::Array(a) => {
            let i = array_index(last, a.len(), false)?;
            Ok(a.remove(i))
        }
        _ => Err(format!("path {path:?} does not exist")),
    }
}

/// Applies an RFC 6902 JSON patch (an array of operations) to `doc`. On error `doc` may be
/// partly modified; callers apply it to a copy.
pub(crate) fn json_patch(doc: &mut Value, patch: &Value) -> Result<(), String> {
    let ops = patch
        .as_array()
        .ok_or("a JSON patch must be an array of operations")?;
    for (n, op) in ops.iter().enumerate() {
        let field = |name: &str| -> Result<&str, String> {
            op.get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("operation {n}: missing string field {name:?}"))
        };
        let value = || -> Result<Value, String> {
            op.get("value")
                .cloned()
                .ok_or_else(|| format!("operation {n}: missing field \"value\""))
        };
        let path = field("path")?;
        match field("op")? {
            "add" => add(doc, path, value()?)?,
            "remove" => {
                remove(doc, path)?;
            }
            "replace" => {
                get(doc, path)?;
                if path.is_empty() {
                    *doc = value()?;
                } else {
                    remove(doc, path)?;
                    add(doc, path, value()?)?;
                }
            }
            "move" => {
                let from = field("from")?;
                if path != from && path.starts_with(&format!("{from}/")) {
                    return Err(format!(
                        "operation {n}: cannot move {from:?} into its own child"
                    ));
                }
                let v = remove(doc, from)?;
                add(doc, path, v)?;
            }
            "copy" => {
                let v = get(doc, field("from")?)?.clone();
                add(doc, path, v)?;
            }
            "test" => {
                if *get(doc, path)? != value()? {
                    return Err(format!("testing value {path} failed"));
                }
            }
            other => return Err(format!("operation {n}: unknown op {other:?}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_rfc7386() {
        let mut t = json!({ "a": "b", "c": { "d": "e", "f": "g" }, "l": [1, 2] });
        merge_patch(
            &mut t,
            &json!({ "a": "z", "c": { "f": null }, "l": [3], "n": { "x": 1 } }),
        );
        assert_eq!(
            t,
            json!({ "a": "z", "c": { "d": "e" }, "l": [3], "n": { "x": 1 } })
        );
    }

    #[test]
    fn json_patch_rfc6902() {
        let mut d = json!({ "metadata": { "labels": { "a/b": "1" } }, "spec": { "taints": [] } });
        json_patch(
            &mut d,
            &json!([
                { "op": "test", "path": "/metadata/labels/a~1b", "value": "1" },
                { "op": "add", "path": "/spec/taints/-", "value": { "key": "k" } },
                { "op": "add", "path": "/spec/taints/0", "value": { "key": "first" } },
                { "op": "replace", "path": "/metadata/labels/a~1b", "value": "2" },
                { "op": "copy", "from": "/metadata/labels", "path": "/metadata/annotations" },
                { "op": "move", "from": "/spec/taints/1", "path": "/spec/moved" },
                { "op": "remove", "path": "/spec/taints/0" },
                { "op": "add", "path": "/spec/unschedulable", "value": true },
            ]),
        )
        .unwrap();
        assert_eq!(
            d,
            json!({
                "metadata": { "labels": { "a/b": "2" }, "annotations": { "a/b": "2" } },
                "spec": { "taints": [], "moved": { "key": "k" }, "unschedulable": true },
            })
        );
        let mut d2 = d.clone();
        assert!(
            json_patch(
                &mut d2,
                &json!([{ "op": "test", "path": "/spec/unschedulable", "value": false }])
            )
            .is_err()
        );
        assert!(json_patch(&mut d2, &json!([{ "op": "remove", "path": "/nope" }])).is_err());
        assert!(
            json_patch(
                &mut d2,
                &json!([{ "op": "replace", "path": "/spec/taints/3", "value": 1 }])
            )
            .is_err()
        );
        assert!(
            json_patch(
                &mut d2,
                &json!([{ "op": "add", "path": "/a/b", "value": 1 }])
            )
            .is_err()
        );
    }
}
