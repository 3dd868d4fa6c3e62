//! The mutable side of a simulation: where each pod counts, what each node has requested, which
//! nodes are ghosts, what is left of each disruption budget — with an undo journal so that
//! `CanRemoveNodes` can try a candidate and take it back without copying anything.

use super::filters::resources::Resources;
use super::snapshot::{Index, NodeId, PodId};

#[derive(Debug, Clone, Copy)]
enum Change {
    Moved { pod: PodId, from: Option<NodeId> },
    Ghost { node: NodeId, was: bool },
    Budget { pdb: u32, was: i64 },
}

#[derive(Debug)]
pub struct ClusterState<'a> {
    /// Where each pod occupies a node now (`None`: nowhere).
    pub pod_node: Vec<Option<NodeId>>,
    pub node_pods: Vec<Vec<PodId>>,
    pub requested: Vec<Resources<'a>>,
    /// Nodes being removed: cordoned and tainted, never destinations.
    pub ghost: Vec<bool>,
    pub budget_left: Vec<i64>,
    journal: Vec<Change>,
}

impl<'a> ClusterState<'a> {
    pub fn new(index: &Index<'a>) -> Self {
        let mut state = ClusterState {
            pod_node: vec![None; index.pods.len()],
            node_pods: vec![Vec::new(); index.nodes.len()],
            requested: vec![Resources::default(); index.nodes.len()],
            ghost: vec![false; index.nodes.len()],
            budget_left: index.pdbs.iter().map(|p| p.disruptions_allowed).collect(),
            journal: Vec::new(),
        };
        for (id, pod) in index.pods.iter().enumerate() {
            if let Some(node) = pod.occupies() {
                state.attach(index, id as PodId, node);
            }
        }
        state.journal.clear();
        state
    }

    fn attach(&mut self, index: &Index<'a>, pod: PodId, node: NodeId) {
        self.pod_node[pod as usize] = Some(node);
        self.node_pods[node as usize].push(pod);
        self.requested[node as usize].add(&index.pod(pod).requests);
    }

    fn detach(&mut self, index: &Index<'a>, pod: PodId) {
        if let Some(node) = self.pod_node[pod as usize].take() {
            let pods = &mut self.node_pods[node as usize];
            if let Some(at) = pods.iter().position(|&p| p == pod) {
                pods.remove(at);
            }
            self.requested[node as usize].subtract(&index.pod(pod).requests);
        }
    }

    /// Moves a pod to `to` (or off every node).
    pub fn move_pod(&mut self, index: &Index<'a>, pod: PodId, to: Option<NodeId>) {
        let from = self.pod_node[pod as usize];
        self.journal.push(Change::Moved { pod, from });
        self.detach(index, pod);
        if let Some(node) = to {
            self.attach(index, pod, node);
        }
    }

    pub fn set_ghost(&mut self, node: NodeId) {
        let was = self.ghost[node as usize];
        self.journal.push(Change::Ghost { node, was });
        self.ghost[node as usize] = true;
    }

    pub fn spend_budget(&mut self, pdb: u32) {
        let was = self.budget_left[pdb as usize];
        self.journal.push(Change::Budget { pdb, was });
        self.budget_left[pdb as usize] = was - 1;
    }

    pub fn checkpoint(&self) -> usize {
        self.journal.len()
    }

    /// Undoes every change made since `checkpoint`.
    pub fn rollback(&mut self, index: &Index<'a>, checkpoint: usize) {
        while self.journal.len() > checkpoint {
            let Some(change) = self.journal.pop() else {
                break;
            };
            match change {
                Change::Moved { pod, from } => {
                    self.detach(index, pod);
                    if let Some(node) = from {
                        self.attach(index, pod, node);
                    }
                }
                Change::Ghost { node, was } => self.ghost[node as usize] = was,
                Change::Budget { pdb, was } => self.budget_left[pdb as usize] = was,
            }
        }
    }
}
