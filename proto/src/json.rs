//! Loading snapshot messages from outside JSON: `kubectl get … -o json` output and single
//! objects, through the proto3 JSON mapping (pbjson, unknown fields ignored).
//!
//! Kubernetes writes `null` for some empty fields and pbjson rejects `null` for strings, numbers
//! and maps, so every `null` is treated as absent: object members and array elements that are
//! `null` are dropped before parsing. Errors name the item and the field path; nothing here
//! panics on any input.

use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::safety::v1 as pb;

/// Why outside JSON could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// The bytes are not JSON at all.
    #[error("not valid JSON: {0}")]
    Syntax(#[source] serde_json::Error),
    /// The document is JSON but neither a List object with `items` nor an array of items.
    #[error(
        "expected a kubectl List (an object with an \"items\" array) or an array of objects, found {found}"
    )]
    NotAList { found: String },
    /// An item that cannot be dispatched: not an object, or without a `kind`.
    #[error("items[{index}]: {problem}")]
    UnusableItem { index: usize, problem: String },
    /// An item of a known kind whose fields do not parse.
    #[error("items[{index}] ({object}): {field_error}")]
    InvalidItem {
        index: usize,
        /// Kind and `namespace/name` (or `name`), e.g. `Pod team-a/web-1`.
        object: String,
        field_error: FieldError,
    },
    /// A single message whose fields do not parse.
    #[error("{0}")]
    InvalidMessage(FieldError),
}

/// A field that does not parse: where it is and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// JSON field path from the object's root, e.g. `spec.containers[0].ports[0].hostPort`;
    /// empty when the object itself is wrong.
    pub path: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            formatter.write_str(&self.message)
        } else {
            write!(formatter, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for FieldError {}

/// Parses the output of `kubectl get nodes,pods,pdb,namespaces -A -o json` (a `List` object, or
/// a typed list such as `PodList` whose items carry no `kind`, or a bare array of items) into a
/// snapshot. Nodes, Pods, PodDisruptionBudgets and Namespaces are kept in document order; items
/// of other kinds are ignored.
pub fn snapshot_from_kubectl_list(bytes: &[u8]) -> Result<pb::ClusterSnapshot, JsonError> {
    let document: Value = serde_json::from_slice(bytes).map_err(JsonError::Syntax)?;
    let (items, kind_of_typed_list) = list_items(document)?;

    let mut snapshot = pb::ClusterSnapshot::default();
    for (index, item) in items.into_iter().enumerate() {
        let Value::Object(fields) = item else {
            return Err(JsonError::UnusableItem {
                index,
                problem: format!("expected an object, found {}", json_type_name(&item)),
            });
        };
        let kind = match (fields.get("kind"), &kind_of_typed_list) {
            (Some(Value::String(kind)), _) => kind.clone(),
            (None | Some(Value::Null), Some(list_item_kind)) => list_item_kind.clone(),
            (None | Some(Value::Null), None) => {
                // Skipping it could silently drop a pod, which would make a removal look safe.
                return Err(JsonError::UnusableItem {
                    index,
                    problem: "no \"kind\"".to_owned(),
                });
            }
            (Some(other), _) => {
                return Err(JsonError::UnusableItem {
                    index,
                    problem: format!("\"kind\" must be a string, found {}", json_type_name(other)),
                });
            }
        };
        match kind.as_str() {
            "Node" => snapshot.nodes.push(parse_item(index, &kind, fields)?),
            "Pod" => snapshot.pods.push(parse_item(index, &kind, fields)?),
            "PodDisruptionBudget" => snapshot
                .pod_disruption_budgets
                .push(parse_item(index, &kind, fields)?),
            "Namespace" => snapshot.namespaces.push(parse_item(index, &kind, fields)?),
            _ => {}
        }
    }
    Ok(snapshot)
}

/// Parses one message, e.g. a Pod or a whole `ClusterSnapshot`, from JSON, treating `null` as
/// absent and ignoring unknown fields.
pub fn message_from_json<T: DeserializeOwned>(value: Value) -> Result<T, JsonError> {
    parse_message(value).map_err(JsonError::InvalidMessage)
}

/// Removes every `null` object member and array element, at any depth. Iterative, so that no
/// nesting depth can overflow the stack.
pub fn strip_nulls(value: &mut Value) {
    let mut pending: Vec<&mut Value> = vec![value];
    while let Some(current) = pending.pop() {
        match current {
            Value::Object(members) => {
                members.retain(|_, member| !member.is_null());
                pending.extend(members.values_mut());
            }
            Value::Array(elements) => {
                elements.retain(|element| !element.is_null());
                pending.extend(elements.iter_mut());
            }
            _ => {}
        }
    }
}

fn parse_item<T: DeserializeOwned>(
    index: usize,
    kind: &str,
    fields: Map<String, Value>,
) -> Result<T, JsonError> {
    let object = object_label(kind, &fields);
    parse_message(Value::Object(fields)).map_err(|field_error| JsonError::InvalidItem {
        index,
        object,
        field_error,
    })
}

fn parse_message<T: DeserializeOwned>(mut value: Value) -> Result<T, FieldError> {
    strip_nulls(&mut value);
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        FieldError {
            // serde_path_to_error writes the root as ".".
            path: if path == "." { String::new() } else { path },
            message: error.into_inner().to_string(),
        }
    })
}

/// The items of a List document, and for a typed list (`PodList`, …) the kind of its items,
/// which the API server leaves out of each item.
fn list_items(document: Value) -> Result<(Vec<Value>, Option<String>), JsonError> {
    match document {
        Value::Array(items) => Ok((items, None)),
        Value::Object(mut fields) => {
            let kind_of_typed_list = match fields.get("kind") {
                Some(Value::String(list_kind)) if list_kind != "List" => list_kind
                    .strip_suffix("List")
                    .filter(|item_kind| !item_kind.is_empty())
                    .map(str::to_owned),
                _ => None,
            };
            match fields.remove("items") {
                Some(Value::Array(items)) => Ok((items, kind_of_typed_list)),
                // `"items": null` is how an empty Go list is sometimes written.
                Some(Value::Null) => Ok((Vec::new(), kind_of_typed_list)),
                Some(other) => Err(JsonError::NotAList {
                    found: format!("\"items\" of type {}", json_type_name(&other)),
                }),
                None => Err(JsonError::NotAList {
                    found: "an object without \"items\"".to_owned(),
                }),
            }
        }
        other => Err(JsonError::NotAList {
            found: json_type_name(&other).to_owned(),
        }),
    }
}

/// `Pod team-a/web-1`, `Node node-1`, or just the kind when the item has no name.
fn object_label(kind: &str, fields: &Map<String, Value>) -> String {
    let metadata = fields.get("metadata");
    let field = |name: &str| {
        metadata
            .and_then(|metadata| metadata.get(name))
            .and_then(Value::as_str)
            .filter(|text| !text.is_empty())
    };
    match (field("namespace"), field("name")) {
        (Some(namespace), Some(name)) => format!("{kind} {namespace}/{name}"),
        (None, Some(name)) => format!("{kind} {name}"),
        (Some(namespace), None) => format!("{kind} {namespace}/<no name>"),
        (None, None) => kind.to_owned(),
    }
}

fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
