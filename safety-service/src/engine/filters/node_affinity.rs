//! NodeAffinity: `nodeSelector` and required node affinity (terms ORed, expressions ANDed,
//! In/NotIn/Exists/DoesNotExist/Gt/Lt, `matchFields` on `metadata.name`), and the PreFilter that
//! rejects a pod whose terms name nodes by name and name none in common.

use crate::engine::EngineError;
use crate::engine::labels::{Interner, Labels, Sym, SymMap};
use crate::engine::view::{self, w};

pub const REASON: &str = "node(s) didn't match Pod's node affinity/selector";
pub const REASON_CONFLICT: &str = "pod affinity terms conflict";
const NAME_FIELD: &str = "metadata.name";

#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelOp {
    In(Vec<Sym>),
    NotIn(Vec<Sym>),
    Exists,
    DoesNotExist,
    Gt(i64),
    Lt(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct LabelExpression {
    key: Sym,
    op: LabelOp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldExpression<'a> {
    /// `In` when true, `NotIn` otherwise.
    is_in: bool,
    value: &'a str,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Term<'a> {
    labels: Vec<LabelExpression>,
    fields: Vec<FieldExpression<'a>>,
}

/// What a pod requires of a node's labels and name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequiredNodeAffinity<'a> {
    /// `spec.nodeSelector`, every pair must be present.
    node_selector: Vec<(Sym, Sym)>,
    /// Required terms, `None` without required node affinity. Empty terms are dropped (they
    /// select nothing), so `Some(vec![])` matches no node.
    terms: Option<Vec<Term<'a>>>,
    /// Set when every term names nodes through `metadata.name In` and no node is named by all
    /// the requirements of any term: the PreFilter rejects the pod outright.
    pub conflict: bool,
}

impl<'a> RequiredNodeAffinity<'a> {
    pub fn compile(
        spec: &'a w::PodSpec,
        strings: &mut Interner<'a>,
        path: &dyn Fn() -> String,
    ) -> Result<Self, EngineError> {
        let mut node_selector: Vec<(Sym, Sym)> =
            view::map(&spec.node_selector, &|| format!("{}.nodeSelector", path()))?
                .into_iter()
                .map(|(k, v)| (strings.intern(k), strings.intern(v)))
                .collect();
        node_selector.sort_unstable();
        let required = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n| {
                n.required_during_scheduling_ignored_during_execution
                    .as_ref()
            });
        let Some(required) = required else {
            return Ok(RequiredNodeAffinity {
                node_selector,
                terms: None,
                conflict: false,
            });
        };
        let mut terms = Vec::with_capacity(required.node_selector_terms.len());
        for (t, term) in required.node_selector_terms.iter().enumerate() {
            let term_path = || {
                format!(
                    "{}.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[{t}]",
                    path()
                )
            };
            let compiled = compile_term(term, strings, &term_path)?;
            if !(term.match_expressions.is_empty() && term.match_fields.is_empty()) {
                terms.push(compiled);
            }
        }
        let conflict = names_conflict(&required.node_selector_terms);
        Ok(RequiredNodeAffinity {
            node_selector,
            terms: Some(terms),
            conflict,
        })
    }

    /// Does a node with these labels and this name satisfy the pod?
    pub fn matches(&self, labels: &Labels, node_name: &str, strings: &Interner<'_>) -> bool {
        if !self
            .node_selector
            .iter()
            .all(|&(k, v)| labels.get(k) == Some(v))
        {
            return false;
        }
        match &self.terms {
            None => true,
            Some(terms) => terms
                .iter()
                .any(|term| term_matches(term, labels, node_name, strings)),
        }
    }

    /// Into another interner's symbols.
    pub fn remap(&mut self, map: &SymMap) {
        for (key, value) in &mut self.node_selector {
            *key = map.sym(*key);
            *value = map.sym(*value);
        }
        self.node_selector.sort_unstable();
        for term in self.terms.iter_mut().flatten() {
            for expression in &mut term.labels {
                expression.key = map.sym(expression.key);
                if let LabelOp::In(values) | LabelOp::NotIn(values) = &mut expression.op {
                    map.sorted(values);
                }
            }
        }
    }

    /// The `nodeSelector` pairs, for explanations.
    pub fn node_selector(&self) -> &[(Sym, Sym)] {
        &self.node_selector
    }

    pub fn has_required_terms(&self) -> bool {
        self.terms.is_some()
    }
}

fn compile_term<'a>(
    term: &'a w::NodeSelectorTerm,
    strings: &mut Interner<'a>,
    path: &dyn Fn() -> String,
) -> Result<Term<'a>, EngineError> {
    let mut compiled = Term::default();
    for (i, expression) in term.match_expressions.iter().enumerate() {
        let at = || format!("{}.matchExpressions[{i}]", path());
        let values = view::texts(&expression.values, &|| format!("{}.values", at()))?;
        let operator = view::text(&expression.operator, || format!("{}.operator", at()))?;
        let integer = || -> Result<i64, EngineError> {
            match values.as_slice() {
                [one] => one.parse::<i64>().map_err(|_| {
                    EngineError::invalid(
                        format!("{}.values[0]", at()),
                        format!("operator {operator} needs an integer value, got {one:?}"),
                    )
                }),
                _ => Err(EngineError::invalid(
                    format!("{}.values", at()),
                    format!("operator {operator} needs exactly one value"),
                )),
            }
        };
        let mut set = || -> Result<Vec<Sym>, EngineError> {
            if values.is_empty() {
                return Err(EngineError::invalid(
                    format!("{}.values", at()),
                    format!("operator {operator} needs at least one value"),
                ));
            }
            let mut syms: Vec<Sym> = values.iter().map(|&v| strings.intern(v)).collect();
            syms.sort_unstable();
            Ok(syms)
        };
        let op = match operator {
            "In" => LabelOp::In(set()?),
            "NotIn" => LabelOp::NotIn(set()?),
            "Exists" => LabelOp::Exists,
            "DoesNotExist" => LabelOp::DoesNotExist,
            "Gt" => LabelOp::Gt(integer()?),
            "Lt" => LabelOp::Lt(integer()?),
            other => {
                return Err(EngineError::invalid(
                    format!("{}.operator", at()),
                    format!(
                        "unknown node selector operator {other:?} (want In, NotIn, Exists, DoesNotExist, Gt or Lt)"
                    ),
                ));
            }
        };
        compiled.labels.push(LabelExpression {
            key: strings.intern(view::text(&expression.key, || format!("{}.key", at()))?),
            op,
        });
    }
    for (i, expression) in term.match_fields.iter().enumerate() {
        let at = || format!("{}.matchFields[{i}]", path());
        let key = view::text(&expression.key, || format!("{}.key", at()))?;
        if key != NAME_FIELD {
            return Err(EngineError::invalid(
                format!("{}.key", at()),
                format!("unknown node field {key:?} (only metadata.name can be selected)"),
            ));
        }
        let is_in = match view::text(&expression.operator, || format!("{}.operator", at()))? {
            "In" => true,
            "NotIn" => false,
            other => {
                return Err(EngineError::invalid(
                    format!("{}.operator", at()),
                    format!("node field selectors take In or NotIn, not {other:?}"),
                ));
            }
        };
        let values = view::texts(&expression.values, &|| format!("{}.values", at()))?;
        let [value] = values.as_slice() else {
            return Err(EngineError::invalid(
                format!("{}.values", at()),
                "a node field selector takes exactly one value",
            ));
        };
        compiled.fields.push(FieldExpression { is_in, value });
    }
    Ok(compiled)
}

fn term_matches(term: &Term<'_>, labels: &Labels, node_name: &str, strings: &Interner<'_>) -> bool {
    let labels_match = term.labels.iter().all(|e| {
        let value = labels.get(e.key);
        match &e.op {
            LabelOp::In(values) => value.is_some_and(|v| values.binary_search(&v).is_ok()),
            LabelOp::NotIn(values) => value.is_none_or(|v| values.binary_search(&v).is_err()),
            LabelOp::Exists => value.is_some(),
            LabelOp::DoesNotExist => value.is_none(),
            LabelOp::Gt(bound) => value
                .and_then(|v| strings.name(v).parse::<i64>().ok())
                .is_some_and(|n| n > *bound),
            LabelOp::Lt(bound) => value
                .and_then(|v| strings.name(v).parse::<i64>().ok())
                .is_some_and(|n| n < *bound),
        }
    });
    labels_match
        && term
            .fields
            .iter()
            .all(|f| (f.value == node_name) == f.is_in)
}

/// The NodeAffinity PreFilter's node-name sets: `true` when every term restricts node names with
/// `metadata.name In` and each term's intersection is empty.
fn names_conflict(terms: &[w::NodeSelectorTerm]) -> bool {
    if terms.is_empty() {
        return false;
    }
    let mut any_named = false;
    for term in terms {
        let mut named: Option<Vec<&[u8]>> = None;
        for field in &term.match_fields {
            if field.key.as_ref() == NAME_FIELD.as_bytes() && field.operator.as_ref() == b"In" {
                let values: Vec<&[u8]> = field.values.iter().map(|v| v.as_ref()).collect();
                named = Some(match named {
                    None => values,
                    Some(previous) => previous
                        .into_iter()
                        .filter(|v| values.contains(v))
                        .collect(),
                });
            }
        }
        match named {
            None => return false, // this term does not restrict names: every node is eligible
            Some(names) => any_named |= !names.is_empty(),
        }
    }
    !any_named
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::view::view_of_json;
    use vpsie_proto::safety::v1 as pb;

    fn compile<'a>(spec: &'a w::PodSpec, strings: &mut Interner<'a>) -> RequiredNodeAffinity<'a> {
        RequiredNodeAffinity::compile(spec, strings, &|| "spec".into()).expect("compile")
    }

    fn spec(json: &str) -> w::PodSpec {
        view_of_json::<pb::PodSpec, _>(json)
    }

    fn required(terms: &str) -> w::PodSpec {
        spec(&format!(
            r#"{{"affinity":{{"nodeAffinity":{{"requiredDuringSchedulingIgnoredDuringExecution":{{"nodeSelectorTerms":{terms}}}}}}}}}"#
        ))
    }

    fn node_labels<'a>(pairs: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        pairs.to_vec()
    }

    #[test]
    fn node_selector_needs_every_pair() {
        let spec = spec(r#"{"nodeSelector":{"disktype":"ssd","zone":"a"}}"#);
        let labels_ok = node_labels(&[("disktype", "ssd"), ("zone", "a"), ("x", "y")]);
        let labels_bad = node_labels(&[("disktype", "ssd"), ("zone", "b")]);
        let mut strings = Interner::default();
        let affinity = compile(&spec, &mut strings);
        let ok = Labels::from_texts(&labels_ok, &mut strings);
        let bad = Labels::from_texts(&labels_bad, &mut strings);
        assert!(affinity.matches(&ok, "n1", &strings));
        assert!(!affinity.matches(&bad, "n1", &strings));
    }

    #[test]
    fn gt_lt_compare_integers_and_non_numbers_never_match() {
        let spec =
            required(r#"[{"matchExpressions":[{"key":"gen","operator":"Gt","values":["3"]}]}]"#);
        let four = node_labels(&[("gen", "4")]);
        let three = node_labels(&[("gen", "3")]);
        let v2 = node_labels(&[("gen", "v2")]);
        let mut strings = Interner::default();
        let affinity = compile(&spec, &mut strings);
        let (four, three, v2) = (
            Labels::from_texts(&four, &mut strings),
            Labels::from_texts(&three, &mut strings),
            Labels::from_texts(&v2, &mut strings),
        );
        assert!(affinity.matches(&four, "n", &strings));
        assert!(!affinity.matches(&three, "n", &strings));
        assert!(!affinity.matches(&v2, "n", &strings));
        assert!(!affinity.matches(&Labels::default(), "n", &strings));
    }

    #[test]
    fn terms_are_ored_and_empty_terms_select_nothing() {
        let spec = required(
            r#"[{}, {"matchExpressions":[{"key":"zone","operator":"In","values":["a"]}]},
                {"matchFields":[{"key":"metadata.name","operator":"In","values":["n9"]}]}]"#,
        );
        let zone_b = node_labels(&[("zone", "b")]);
        let mut strings = Interner::default();
        let affinity = compile(&spec, &mut strings);
        let zone_b = Labels::from_texts(&zone_b, &mut strings);
        assert!(!affinity.matches(&zone_b, "n1", &strings));
        assert!(affinity.matches(&zone_b, "n9", &strings));
        assert!(!affinity.conflict);

        let only_empty = required("[{}]");
        let mut strings = Interner::default();
        assert!(!compile(&only_empty, &mut strings).matches(&Labels::default(), "n", &strings));
    }

    #[test]
    fn prefilter_conflict_needs_every_term_to_name_nothing() {
        let conflict = required(
            r#"[{"matchFields":[{"key":"metadata.name","operator":"In","values":["a"]},
                                {"key":"metadata.name","operator":"In","values":["b"]}]}]"#,
        );
        let mut strings = Interner::default();
        assert!(compile(&conflict, &mut strings).conflict);
        let one_named = required(
            r#"[{"matchFields":[{"key":"metadata.name","operator":"In","values":["a"]},
                                {"key":"metadata.name","operator":"In","values":["b"]}]},
                {"matchFields":[{"key":"metadata.name","operator":"In","values":["c"]}]}]"#,
        );
        assert!(!compile(&one_named, &mut strings).conflict);
        let unrestricted = required(
            r#"[{"matchFields":[{"key":"metadata.name","operator":"In","values":["a"]},
                                {"key":"metadata.name","operator":"In","values":["b"]}]},
                {"matchExpressions":[{"key":"zone","operator":"Exists"}]}]"#,
        );
        assert!(!compile(&unrestricted, &mut strings).conflict);
    }

    #[test]
    fn invalid_requirements_are_rejected() {
        for (terms, want) in [
            (
                r#"[{"matchExpressions":[{"key":"a","operator":"Near","values":["1"]}]}]"#,
                "operator",
            ),
            (
                r#"[{"matchExpressions":[{"key":"a","operator":"Gt","values":["x"]}]}]"#,
                "values[0]",
            ),
            (
                r#"[{"matchExpressions":[{"key":"a","operator":"In"}]}]"#,
                "values",
            ),
            (
                r#"[{"matchFields":[{"key":"metadata.uid","operator":"In","values":["x"]}]}]"#,
                "key",
            ),
        ] {
            let spec = required(terms);
            let mut strings = Interner::default();
            let err = RequiredNodeAffinity::compile(&spec, &mut strings, &|| "spec".into())
                .expect_err(terms);
            let EngineError::InvalidArgument { path, .. } = err else {
                panic!("want invalid argument")
            };
            assert!(path.ends_with(want), "{path} should end with {want}");
        }
    }
}
