//! Execution of one plan as a state machine (approval, step, verification, rollback), and the
//! two limits every action passes: the circuit breaker and the blast radius.

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use serde::Serialize;
use wire::NodeId;

use crate::config::ExecutionConfig;
use crate::incident::{IncidentId, PlanOutcome};
use crate::playbook::{Action, Condition};
use crate::time::Timestamp;

/// Identifier of an emitted action; results refer to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ActionId(pub u64);

/// An action for the node to execute.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionRequest {
    /// Identifier to report the result under.
    pub id: ActionId,
    /// The incident it serves.
    pub incident: IncidentId,
    /// What to do (placeholders resolved).
    pub action: Action,
    /// Whether this undoes an earlier step.
    pub rollback: bool,
    /// After this time a result is ignored and the step counts as timed out; the executor
    /// should stop trying by then.
    pub deadline: Timestamp,
}

/// What the executor reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionResult {
    /// Done.
    Succeeded,
    /// Not done (nothing changed); the message says why.
    Failed(String),
}

/// A playbook step with placeholders resolved.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ResolvedStep {
    pub action: Action,
    pub timeout: Duration,
    pub verify: Option<Duration>,
    pub rollback: Option<Action>,
    pub condition: Condition,
}

/// Where a plan stands.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Phase {
    /// Waiting for an approval decision.
    AwaitingApproval { expires_at: Timestamp },
    /// About to run `step` (or to verify, past the last step).
    Ready { step: usize },
    /// Waiting for the result of `step`'s action.
    Running {
        step: usize,
        action: ActionId,
        started_at: Timestamp,
        deadline: Timestamp,
    },
    /// Waiting for the symptoms to clear after `step`.
    Verifying { step: usize, deadline: Timestamp },
    /// Undoing executed steps, last first.
    RollingBack {
        outcome: PlanOutcome,
        /// (step index, rollback action), next to run last.
        remaining: Vec<(usize, Action)>,
        /// The rollback action in flight.
        running: Option<(usize, ActionId, Timestamp, Timestamp)>,
    },
}

/// One plan being carried out for one incident.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Execution {
    pub plan: String,
    pub steps: Vec<ResolvedStep>,
    pub verify_timeout: Duration,
    pub phase: Phase,
    /// Steps whose action may have taken effect (succeeded or timed out), in execution order.
    pub executed: Vec<usize>,
}

impl Execution {
    /// The next time this execution needs `handle_timeout`.
    pub fn deadline(&self) -> Option<Timestamp> {
        match &self.phase {
            Phase::AwaitingApproval { expires_at } => Some(*expires_at),
            Phase::Running { deadline, .. } | Phase::Verifying { deadline, .. } => Some(*deadline),
            Phase::RollingBack {
                running: Some((_, _, _, deadline)),
                ..
            } => Some(*deadline),
            Phase::Ready { .. } | Phase::RollingBack { running: None, .. } => None,
        }
    }

    /// Rollback actions of executed steps, in the order they must run (reverse execution).
    pub fn rollback_plan(&self) -> Vec<(usize, Action)> {
        // Stored so that `pop()` yields the most recently executed step first.
        self.executed
            .iter()
            .filter_map(|i| {
                self.steps
                    .get(*i)
                    .and_then(|s| s.rollback.clone().map(|a| (*i, a)))
            })
            .collect()
    }

    /// The action id this execution waits for, if any.
    pub fn waiting_for(&self) -> Option<ActionId> {
        match &self.phase {
            Phase::Running { action, .. } => Some(*action),
            Phase::RollingBack {
                running: Some((_, id, _, _)),
                ..
            } => Some(*id),
            _ => None,
        }
    }
}

/// Sliding-window circuit breaker: at most `max_actions_per_window` actions per `window`.
/// Rollbacks are not counted: stopping an undo would leave the mesh in the half-changed state
/// the breaker exists to prevent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CircuitBreaker {
    /// Emission times within the window, oldest first; never longer than the configured
    /// maximum (itself capped by [`crate::config::MAX_ACTIONS_PER_WINDOW`]).
    pub recent: VecDeque<Timestamp>,
}

impl CircuitBreaker {
    fn prune(&mut self, now: Timestamp, window: Duration) {
        while self
            .recent
            .front()
            .is_some_and(|t| now.saturating_since(*t) >= window)
        {
            self.recent.pop_front();
        }
    }

    /// `Err(reopen time)` when the breaker is open.
    pub fn check(&mut self, now: Timestamp, cfg: &ExecutionConfig) -> Result<(), Timestamp> {
        self.prune(now, cfg.window);
        if self.recent.len() >= cfg.max_actions_per_window as usize {
            let oldest = self.recent.front().copied().unwrap_or(now);
            return Err(oldest.plus(cfg.window));
        }
        Ok(())
    }

    /// Records an emitted action (call after a successful `check`).
    pub fn record(&mut self, now: Timestamp, cfg: &ExecutionConfig) {
        self.prune(now, cfg.window);
        if self.recent.len() < cfg.max_actions_per_window as usize {
            self.recent.push_back(now);
        }
    }
}

/// Most nodes remembered as under action elsewhere in the mesh; beyond the routing core's
/// 65,536 destinations there is nothing to remember.
pub const MAX_UNDER_ACTION: usize = 65_536;

/// What the node tells the loop about the rest of the mesh, for the blast radius.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MeshContext {
    /// Nodes in the mesh (this one included); 0 means unknown, and the loop then counts this
    /// node and its neighbours.
    pub mesh_size: usize,
    /// Nodes that peers report as currently being acted on (from their incident messages).
    pub under_action: BTreeSet<NodeId>,
}

/// Blast radius: nodes affected at once may not exceed `max(1, ⌊share × mesh size⌋)`.
pub fn blast_radius_allows(affected: usize, mesh_size: usize, share: f64) -> bool {
    let allowed = ((share * mesh_size as f64).floor() as usize).max(1);
    affected <= allowed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_at_the_limit_and_closes_after_the_window() {
        let cfg = ExecutionConfig {
            max_actions_per_window: 2,
            window: Duration::from_secs(10),
            ..ExecutionConfig::default()
        };
        let mut b = CircuitBreaker::default();
        for s in [0, 1] {
            assert_eq!(b.check(Timestamp::from_secs(s), &cfg), Ok(()));
            b.record(Timestamp::from_secs(s), &cfg);
        }
        assert_eq!(
            b.check(Timestamp::from_secs(5), &cfg),
            Err(Timestamp::from_secs(10))
        );
        assert_eq!(b.check(Timestamp::from_secs(10), &cfg), Ok(()));
    }

    #[test]
    fn blast_radius_allows_one_node_even_in_small_meshes() {
        assert!(blast_radius_allows(1, 2, 0.1));
        assert!(!blast_radius_allows(2, 2, 0.1));
        assert!(blast_radius_allows(3, 10, 0.34));
        assert!(!blast_radius_allows(4, 10, 0.34));
    }
}
