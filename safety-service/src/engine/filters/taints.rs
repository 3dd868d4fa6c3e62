//! Taints and tolerations: the NodeUnschedulable and TaintToleration filters, and the taint side
//! of PodTopologySpread's `nodeTaintsPolicy: Honor`.

use crate::engine::EngineError;
use crate::engine::view::{self, w};

/// The taint the node lifecycle controller puts on cordoned nodes, and the one the ghost gets.
pub const UNSCHEDULABLE_TAINT_KEY: &str = "node.kubernetes.io/unschedulable";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

impl Effect {
    fn parse(text: &str) -> Option<Effect> {
        match text {
            "NoSchedule" => Some(Effect::NoSchedule),
            "PreferNoSchedule" => Some(Effect::PreferNoSchedule),
            "NoExecute" => Some(Effect::NoExecute),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Effect::NoSchedule => "NoSchedule",
            Effect::PreferNoSchedule => "PreferNoSchedule",
            Effect::NoExecute => "NoExecute",
        }
    }

    /// Only these keep pods away; PreferNoSchedule is a preference.
    pub fn repels(self) -> bool {
        matches!(self, Effect::NoSchedule | Effect::NoExecute)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taint<'a> {
    pub key: &'a str,
    pub value: &'a str,
    pub effect: Effect,
}

impl<'a> Taint<'a> {
    pub const UNSCHEDULABLE: Taint<'static> = Taint {
        key: UNSCHEDULABLE_TAINT_KEY,
        value: "",
        effect: Effect::NoSchedule,
    };

    pub fn compile(
        taint: &'a w::Taint,
        path: &dyn Fn() -> String,
    ) -> Result<Taint<'a>, EngineError> {
        let key = view::text(&taint.key, || format!("{}.key", path()))?;
        let value = view::text(&taint.value, || format!("{}.value", path()))?;
        let effect = view::text(&taint.effect, || format!("{}.effect", path()))?;
        if key.is_empty() {
            return Err(EngineError::invalid(
                format!("{}.key", path()),
                "taint key must not be empty",
            ));
        }
        let effect = Effect::parse(effect).ok_or_else(|| {
            EngineError::invalid(
                format!("{}.effect", path()),
                format!(
                    "unknown taint effect {effect:?} (want NoSchedule, PreferNoSchedule or NoExecute)"
                ),
            )
        })?;
        Ok(Taint { key, value, effect })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Toleration<'a> {
    pub key: &'a str,
    pub exists: bool,
    pub value: &'a str,
    /// `None` tolerates every effect.
    pub effect: Option<Effect>,
}

impl<'a> Toleration<'a> {
    pub fn compile(
        toleration: &'a w::Toleration,
        path: &dyn Fn() -> String,
    ) -> Result<Toleration<'a>, EngineError> {
        let key = view::text(&toleration.key, || format!("{}.key", path()))?;
        let value = view::text(&toleration.value, || format!("{}.value", path()))?;
        let operator = view::text(&toleration.operator, || format!("{}.operator", path()))?;
        let effect = view::text(&toleration.effect, || format!("{}.effect", path()))?;
        let exists = match operator {
            "" | "Equal" => false,
            "Exists" => true,
            other => {
                return Err(EngineError::invalid(
                    format!("{}.operator", path()),
                    format!("unknown toleration operator {other:?} (want Exists or Equal)"),
                ));
            }
        };
        let effect = if effect.is_empty() {
            None
        } else {
            Some(Effect::parse(effect).ok_or_else(|| {
                EngineError::invalid(
                    format!("{}.effect", path()),
                    format!(
                        "unknown taint effect {effect:?} (want NoSchedule, PreferNoSchedule or NoExecute)"
                    ),
                )
            })?)
        };
        Ok(Toleration {
            key,
            exists,
            value,
            effect,
        })
    }

    /// `v1.Toleration.ToleratesTaint`.
    pub fn tolerates(&self, taint: &Taint<'_>) -> bool {
        if self.effect.is_some_and(|e| e != taint.effect) {
            return false;
        }
        if !self.key.is_empty() && self.key != taint.key {
            return false;
        }
        self.exists || self.value == taint.value
    }
}

pub fn tolerated(tolerations: &[Toleration<'_>], taint: &Taint<'_>) -> bool {
    tolerations.iter().any(|t| t.tolerates(taint))
}

/// The first NoSchedule/NoExecute taint no toleration covers.
pub fn first_untolerated<'t, 'a>(
    taints: impl IntoIterator<Item = &'t Taint<'a>>,
    tolerations: &[Toleration<'_>],
) -> Option<&'t Taint<'a>>
where
    'a: 't,
{
    taints
        .into_iter()
        .find(|taint| taint.effect.repels() && !tolerated(tolerations, taint))
}

pub fn untolerated_reason(taint: &Taint<'_>) -> String {
    format!(
        "node(s) had untolerated taint {{{}: {}}}",
        taint.key, taint.value
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::view::view_of_json;
    use vpsie_proto::safety::v1 as pb;

    fn toleration(json: &str) -> w::Toleration {
        view_of_json::<pb::Toleration, _>(json)
    }

    fn tolerates(toleration_json: &str, taint: Taint<'_>) -> bool {
        let pb = toleration(toleration_json);
        Toleration::compile(&pb, &|| "t".into())
            .expect("compile")
            .tolerates(&taint)
    }

    const GPU: Taint<'static> = Taint {
        key: "gpu",
        value: "true",
        effect: Effect::NoSchedule,
    };

    #[test]
    fn equal_needs_key_and_value() {
        assert!(tolerates(
            r#"{"key":"gpu","value":"true","effect":"NoSchedule"}"#,
            GPU
        ));
        assert!(tolerates(
            r#"{"key":"gpu","operator":"Equal","value":"true"}"#,
            GPU
        ));
        assert!(!tolerates(r#"{"key":"gpu","value":"false"}"#, GPU));
        assert!(!tolerates(
            r#"{"key":"gpu","value":"true","effect":"NoExecute"}"#,
            GPU
        ));
    }

    #[test]
    fn exists_with_empty_key_is_a_wildcard() {
        assert!(tolerates(r#"{"operator":"Exists"}"#, GPU));
        assert!(tolerates(r#"{"key":"gpu","operator":"Exists"}"#, GPU));
        assert!(!tolerates(r#"{"key":"other","operator":"Exists"}"#, GPU));
        assert!(!tolerates(
            r#"{"operator":"Exists","effect":"NoExecute"}"#,
            GPU
        ));
    }

    #[test]
    fn prefer_no_schedule_never_repels() {
        let soft = Taint {
            effect: Effect::PreferNoSchedule,
            ..GPU
        };
        assert_eq!(first_untolerated([&soft], &[]), None);
        assert_eq!(first_untolerated([&soft, &GPU], &[]), Some(&GPU));
        assert_eq!(
            untolerated_reason(&GPU),
            "node(s) had untolerated taint {gpu: true}"
        );
    }

    #[test]
    fn unknown_operator_and_effect_are_rejected_with_the_path() {
        let pb = toleration(r#"{"key":"a","operator":"Like"}"#);
        let err = Toleration::compile(&pb, &|| "spec.tolerations[2]".into()).expect_err("bad op");
        assert!(
            err.to_string()
                .starts_with("spec.tolerations[2].operator: unknown toleration operator")
        );
        let taint: w::Taint = view_of_json::<pb::Taint, _>(r#"{"key":"a","effect":"Sometimes"}"#);
        let err =
            Taint::compile(&taint, &|| "nodes[1].spec.taints[0]".into()).expect_err("bad effect");
        assert!(
            err.to_string()
                .starts_with("nodes[1].spec.taints[0].effect: unknown taint effect")
        );
    }
}
