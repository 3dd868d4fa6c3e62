//! Drainability: which pods on a node stay, which block the removal, which must move. First match
//! wins, in the order of `safety-api.md` ("Canonical semantics", 2).

use vpsie_proto::safety::v1::{self as pb, BlockingReason, SkipReason};

use super::snapshot::{Controller, Index, PodInfo};
use super::view::{self, w};

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
        .any(|key| view::lookup(pod.annotations, key) == Some(value.as_bytes()))
}

/// The first local volume (emptyDir on disk or hostPath) not declared safe to lose.
fn unlisted_local_volume<'p>(pod: &'p PodInfo<'_>) -> Option<&'p w::Volume> {
    let listed: Vec<&[u8]> = view::lookup(pod.annotations, SAFE_TO_EVICT_LOCAL_VOLUMES)
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(|v| v.split(',').map(|name| name.trim().as_bytes()).collect())
        .unwrap_or_default();
    pod.source.spec.as_ref()?.volumes.iter().find(|volume| {
        let local = volume.host_path.is_some()
            || volume
                .empty_dir
                .as_ref()
                .is_some_and(|e| e.medium.as_ref() != b"Memory");
        local && !listed.contains(&volume.name.as_ref())
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
                String::from_utf8_lossy(&volume.name)
            ),
        };
    }
    Disposition::Move
}
