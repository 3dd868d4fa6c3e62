//! Interned strings, label sets and compiled label selectors.
//!
//! Every label key and value of a request is interned once into a `Sym` (a small integer), so
//! selector matching and topology counting compare integers instead of strings.

use rustc_hash::FxHashMap;

use super::EngineError;
use super::view::{self, w};

/// An interned string of the request.
pub type Sym = u32;

/// Interns borrowed strings: the snapshot outlives the index, so nothing is copied. Keyed by
/// bytes, so that a string field of the wire view is checked for UTF-8 only the first time it is
/// seen (label keys and values repeat across thousands of pods).
#[derive(Debug, Default)]
pub struct Interner<'a> {
    ids: FxHashMap<&'a [u8], Sym>,
    names: Vec<&'a str>,
}

impl<'a> Interner<'a> {
    pub fn intern(&mut self, text: &'a str) -> Sym {
        if let Some(&id) = self.ids.get(text.as_bytes()) {
            return id;
        }
        self.insert(text)
    }

    /// Interns a string field of the wire view, checking UTF-8 when it is new.
    pub fn intern_bytes(
        &mut self,
        bytes: &'a [u8],
        path: impl FnOnce() -> String,
    ) -> Result<Sym, EngineError> {
        if let Some(&id) = self.ids.get(bytes) {
            return Ok(id);
        }
        Ok(self.insert(view::text(bytes, path)?))
    }

    fn insert(&mut self, text: &'a str) -> Sym {
        let id = self.names.len() as Sym;
        self.names.push(text);
        self.ids.insert(text.as_bytes(), id);
        id
    }

    pub fn get(&self, text: &str) -> Option<Sym> {
        self.ids.get(text.as_bytes()).copied()
    }

    pub fn name(&self, sym: Sym) -> &'a str {
        self.names.get(sym as usize).copied().unwrap_or("")
    }

    /// Interns every string of `other`, in its order, and says what each of its symbols is here.
    /// A second thread compiles with its own interner; this is how its work joins the first.
    pub fn absorb(&mut self, other: &Interner<'a>) -> SymMap {
        SymMap(other.names.iter().map(|name| self.intern(name)).collect())
    }
}

/// The symbols of one interner as another knows them (from [`Interner::absorb`]).
#[derive(Debug)]
pub struct SymMap(Vec<Sym>);

impl SymMap {
    /// Every symbol of the absorbed interner is in the map: it was made from all of them.
    #[inline]
    pub fn sym(&self, sym: Sym) -> Sym {
        self.0[sym as usize]
    }

    /// Translates a sorted list of symbols, keeping it sorted.
    pub fn sorted(&self, syms: &mut [Sym]) {
        for sym in syms.iter_mut() {
            *sym = self.sym(*sym);
        }
        syms.sort_unstable();
    }
}

/// A label set, sorted by key for binary search.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels(Vec<(Sym, Sym)>);

impl Labels {
    /// A `labels` map of the wire view.
    pub fn from_pairs<'a>(
        map: &'a [w::StringPair],
        strings: &mut Interner<'a>,
        path: &dyn Fn() -> String,
    ) -> Result<Labels, EngineError> {
        let mut pairs = Vec::with_capacity(map.len());
        // Reversed and stably sorted, so that of duplicate keys the last in wire order stays.
        for pair in map.iter().rev() {
            let key = strings.intern_bytes(&pair.key, || format!("{} (a key)", path()))?;
            let value = strings.intern_bytes(&pair.value, || {
                format!("{}[{:?}]", path(), String::from_utf8_lossy(&pair.key))
            })?;
            pairs.push((key, value));
        }
        pairs.sort_by_key(|&(k, _)| k);
        pairs.dedup_by_key(|&mut (k, _)| k);
        Ok(Labels(pairs))
    }

    #[cfg(test)]
    pub fn from_texts<'a>(pairs: &[(&'a str, &'a str)], strings: &mut Interner<'a>) -> Labels {
        let mut pairs: Vec<(Sym, Sym)> = pairs
            .iter()
            .map(|&(k, v)| (strings.intern(k), strings.intern(v)))
            .collect();
        pairs.sort_unstable();
        Labels(pairs)
    }

    pub fn get(&self, key: Sym) -> Option<Sym> {
        self.0
            .binary_search_by_key(&key, |&(k, _)| k)
            .ok()
            .map(|i| self.0[i].1)
    }

    pub fn has(&self, key: Sym) -> bool {
        self.get(key).is_some()
    }

    pub fn iter(&self) -> impl Iterator<Item = (Sym, Sym)> + '_ {
        self.0.iter().copied()
    }

    /// Into another interner's symbols (keys stay unique: the map is one to one).
    pub fn remap(&mut self, map: &SymMap) {
        for (key, value) in &mut self.0 {
            *key = map.sym(*key);
            *value = map.sym(*value);
        }
        self.0.sort_unstable_by_key(|&(key, _)| key);
    }
}

/// The operator of a label selector requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOp {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: Sym,
    pub op: SetOp,
    /// Sorted.
    pub values: Vec<Sym>,
}

impl Requirement {
    fn remap(&mut self, map: &SymMap) {
        self.key = map.sym(self.key);
        map.sorted(&mut self.values);
    }

    fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(self.key);
        match self.op {
            SetOp::In => value.is_some_and(|v| self.values.binary_search(&v).is_ok()),
            SetOp::NotIn => value.is_none_or(|v| self.values.binary_search(&v).is_err()),
            SetOp::Exists => value.is_some(),
            SetOp::DoesNotExist => value.is_none(),
        }
    }
}

/// `metav1.LabelSelectorAsSelector`: a missing selector selects nothing, `{}` selects everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Nothing,
    /// All requirements must hold; no requirement at all selects everything.
    All(Vec<Requirement>),
}

impl Selector {
    pub const EVERYTHING: Selector = Selector::All(Vec::new());

    pub fn compile<'a>(
        selector: Option<&'a w::LabelSelector>,
        strings: &mut Interner<'a>,
        path: &dyn Fn() -> String,
    ) -> Result<Selector, EngineError> {
        let Some(selector) = selector else {
            return Ok(Selector::Nothing);
        };
        let mut requirements =
            Vec::with_capacity(selector.match_labels.len() + selector.match_expressions.len());
        for (key, value) in view::map(&selector.match_labels, &|| {
            format!("{}.matchLabels", path())
        })? {
            requirements.push(Requirement {
                key: strings.intern(key),
                op: SetOp::In,
                values: vec![strings.intern(value)],
            });
        }
        for (i, expression) in selector.match_expressions.iter().enumerate() {
            let at = || format!("{}.matchExpressions[{i}]", path());
            let operator = view::text(&expression.operator, || format!("{}.operator", at()))?;
            let op = match operator {
                "In" => SetOp::In,
                "NotIn" => SetOp::NotIn,
                "Exists" => SetOp::Exists,
                "DoesNotExist" => SetOp::DoesNotExist,
                other => {
                    return Err(EngineError::invalid(
                        format!("{}.operator", at()),
                        format!(
                            "unknown label selector operator {other:?} (want In, NotIn, Exists or DoesNotExist)"
                        ),
                    ));
                }
            };
            let needs_values = matches!(op, SetOp::In | SetOp::NotIn);
            if needs_values && expression.values.is_empty() {
                return Err(EngineError::invalid(
                    format!("{}.values", at()),
                    format!("operator {operator} needs at least one value"),
                ));
            }
            if !needs_values && !expression.values.is_empty() {
                return Err(EngineError::invalid(
                    format!("{}.values", at()),
                    format!("operator {operator} takes no values"),
                ));
            }
            let mut values: Vec<Sym> =
                view::texts(&expression.values, &|| format!("{}.values", at()))?
                    .into_iter()
                    .map(|v| strings.intern(v))
                    .collect();
            values.sort_unstable();
            values.dedup();
            requirements.push(Requirement {
                key: strings.intern(view::text(&expression.key, || format!("{}.key", at()))?),
                op,
                values,
            });
        }
        Ok(Selector::All(requirements))
    }

    /// Into another interner's symbols.
    pub fn remap(&mut self, map: &SymMap) {
        if let Selector::All(requirements) = self {
            for requirement in requirements {
                requirement.remap(map);
            }
        }
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        match self {
            Selector::Nothing => false,
            Selector::All(requirements) => requirements.iter().all(|r| r.matches(labels)),
        }
    }

    /// `labels.Selector.Empty()`: true only for the select-everything selector.
    pub fn is_everything(&self) -> bool {
        matches!(self, Selector::All(r) if r.is_empty())
    }

    /// Adds `key In (value)` (or `NotIn` when `mismatch`); a `Nothing` selector stays `Nothing`.
    pub fn and_label(&mut self, key: Sym, value: Sym, mismatch: bool) {
        if let Selector::All(requirements) = self {
            requirements.push(Requirement {
                key,
                op: if mismatch { SetOp::NotIn } else { SetOp::In },
                values: vec![value],
            });
        }
    }

    /// The `In` requirement with the fewest values: any pod this selector matches carries one of
    /// those (key, value) labels, so only those pods need a look.
    pub fn anchor(&self) -> Option<(Sym, &[Sym])> {
        match self {
            Selector::Nothing => None,
            Selector::All(requirements) => requirements
                .iter()
                .filter(|r| r.op == SetOp::In)
                .min_by_key(|r| r.values.len())
                .map(|r| (r.key, r.values.as_slice())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::view::view_of_json;
    use vpsie_proto::safety::v1 as pb;

    fn selector_json(json: &str) -> w::LabelSelector {
        view_of_json::<pb::LabelSelector, _>(json)
    }

    #[test]
    fn missing_selects_nothing_and_empty_selects_everything() {
        let mut strings = Interner::default();
        let labels = Labels::from_texts(&[("app", "web")], &mut strings);
        let none = Selector::compile(None, &mut strings, &|| "s".into()).expect("none");
        assert!(!none.matches(&labels));
        assert!(!none.is_everything());
        let empty = selector_json("{}");
        let all = Selector::compile(Some(&empty), &mut strings, &|| "s".into()).expect("empty");
        assert!(all.matches(&labels));
        assert!(all.matches(&Labels::default()));
        assert!(all.is_everything());
    }

    #[test]
    fn operators_follow_apimachinery() {
        let cases = [
            (r#"{"matchLabels":{"app":"web"}}"#, true),
            (r#"{"matchLabels":{"app":"db"}}"#, false),
            (
                r#"{"matchExpressions":[{"key":"app","operator":"In","values":["db","web"]}]}"#,
                true,
            ),
            (
                r#"{"matchExpressions":[{"key":"app","operator":"NotIn","values":["web"]}]}"#,
                false,
            ),
            (
                r#"{"matchExpressions":[{"key":"zone","operator":"NotIn","values":["a"]}]}"#,
                true,
            ),
            (
                r#"{"matchExpressions":[{"key":"tier","operator":"Exists"}]}"#,
                true,
            ),
            (
                r#"{"matchExpressions":[{"key":"tier","operator":"DoesNotExist"}]}"#,
                false,
            ),
            (
                r#"{"matchLabels":{"app":"web"},"matchExpressions":[{"key":"x","operator":"Exists"}]}"#,
                false,
            ),
        ];
        let selectors: Vec<(w::LabelSelector, bool, &str)> = cases
            .iter()
            .map(|&(json, want)| (selector_json(json), want, json))
            .collect();
        let mut strings = Interner::default();
        let labels = Labels::from_texts(&[("app", "web"), ("tier", "front")], &mut strings);
        for (pb, want, json) in &selectors {
            let selector = Selector::compile(Some(pb), &mut strings, &|| "s".into()).expect(json);
            assert_eq!(selector.matches(&labels), *want, "{json}");
        }
    }

    #[test]
    fn bad_operator_names_the_field() {
        let mut strings = Interner::default();
        let pb =
            selector_json(r#"{"matchExpressions":[{"key":"a","operator":"Like","values":["x"]}]}"#);
        let err = Selector::compile(Some(&pb), &mut strings, &|| "pods[0].sel".into())
            .expect_err("bad operator");
        assert_eq!(
            err.to_string(),
            "pods[0].sel.matchExpressions[0].operator: unknown label selector operator \"Like\" (want In, NotIn, Exists or DoesNotExist)"
        );
        let pb = selector_json(r#"{"matchExpressions":[{"key":"a","operator":"In"}]}"#);
        assert!(Selector::compile(Some(&pb), &mut strings, &|| "p".into()).is_err());
    }
}
