//! Drainability: which pods on a node stay, which block the removal, which must move. First match
//! wins, in the order of `safety-api.md` ("Canonical semantics", 2).

use vpsie_proto::safety::v1::{self as pb, BlockingReason, SkipReason};

use super::snapshot::{Controller, Index, PodInfo};

pub const SAFE_TO_EVICT: &str = "autoscaler.vpsie.com/safe-to-evict";
pub const CA_SAFE_TO_EVICT: &str = "cluster-autoscaler.kubernetes.io/safe-to-evict";
pub const SAFE_TO_EVICT_LOCAL_VOLUMES: &str =
    "cluster-autoscaler.kubernetes.io/safe-to-evict-local-volumes";
const KUBE_SYSTEM: &str = "kube-system";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Stays on the node or needs no home.
    Skip(SkipReason),
    /// Blocks the removal; `detail` says what exactly (e.g. the volume).
    Block {
        reason: BlockingReason,
        detail: String,
    },
    /// Must find another node.
    Move,
}

fn annotation_is(pod: &PodInfo<'_>, value: &str) -> bool {
    [SAFE_TO_EVICT, CA_SAFE_TO_EVICT]
        .iter()
        .any(|key| pod.annotations.get(*key).is_some_and(|v| v == value))
}

/// The first local volume (emptyDir on disk or hostPath) not declared safe to lose.
fn unlisted_local_volume<'p>(pod: &'p PodInfo<'_>) -> Option<&'p pb::Volume> {
    let listed: Vec<&str> = pod
        .annotations
        .get(SAFE_TO_EVICT_LOCAL_VOLUMES)
        .map(|v| v.split(',').map(str::trim).collect())
        .unwrap_or_default();
    pod.source.spec.as_ref()?.volumes.iter().find(|volume| {
        let local = volume.host_path.is_some()
            || volume
                .empty_dir
                .as_ref()
                .is_some_and(|e| e.medium != "Memory");
        local && !listed.contains(&volume.name.as_str())
    })
}

pub fn classify(index: &Index<'_>, pod: &PodInfo<'_>, options: &pb::RemovalOptions) -> Disposition {
    if pod.mirror {
        return Disposition::Skip(SkipReason::Mirror);
    }
    if pod.finished {
        return Disposition::Skip(SkipReason::Terminal);
    }
    if pod.terminating {
        return Disposition::Skip(SkipReason::Terminating);
    }
    if pod.controller == Controller::DaemonSet {
        return Disposition::Skip(SkipReason::Daemonset);
    }
    if annotation_is(pod, "true") {
        return Disposition::Move;
    }
    if pod.controller == Controller::None && !options.allow_unreplicated_pods {
        return Disposition::Block {
            reason: BlockingReason::NotReplicated,
            detail: "it has no controller that would recreate it".into(),
        };
    }
    if pod.namespace == KUBE_SYSTEM
        && !options.allow_kube_system_pods
        && index.pdbs_matching(pod).is_empty()
    {
        return Disposition::Block {
            reason: BlockingReason::UnmovableKubeSystem,
            detail: "it runs in kube-system and no PodDisruptionBudget covers it".into(),
        };
    }
    if annotation_is(pod, "false") {
        return Disposition::Block {
            reason: BlockingReason::NotSafeToEvict,
            detail: format!("it is annotated {CA_SAFE_TO_EVICT}=false"),
        };
    }
    if !options.allow_local_storage
        && let Some(volume) = unlisted_local_volume(pod)
    {
        let kind = if volume.host_path.is_some() {
            "hostPath"
        } else {
            "emptyDir"
        };
        return Disposition::Block {
            reason: BlockingReason::LocalStorage,
            detail: format!(
                "it uses local storage (volume {:?}, {kind}) not listed in {SAFE_TO_EVICT_LOCAL_VOLUMES}",
                volume.name
            ),
        };
    }
    Disposition::Move
}
