//! Plan and execute: choosing a playbook for an incident, then driving its steps through
//! conditions, limits, deadlines, verification and rollback.

use std::collections::BTreeSet;

use wire::NodeId;

use super::{Event, Healer, MAX_HELD_PEERS, MAX_PENDING_ACTIONS, MAX_PLAN_CHOICES};
use crate::cause::Entity;
use crate::execute::{
    ActionId, ActionRequest, ActionResult, Execution, Phase, ResolvedStep, blast_radius_allows,
};
use crate::incident::{
    Incident, IncidentId, IncidentState, PlanChoice, PlanOutcome, Severity, StepOutcome, StepRecord,
};
use crate::plan;
use crate::playbook::{Action, Condition, Playbook};
use crate::time::Timestamp;

/// Rounds of the execution driver per call; each round moves a plan forward by at least one
/// phase, and a plan has at most 16 steps plus their rollbacks.
const MAX_DRIVE_ROUNDS: usize = 4 * crate::playbook::MAX_STEPS + 8;

impl Healer {
    fn subject(&self, incident: &Incident) -> (Option<String>, Option<NodeId>) {
        match &incident.root_cause {
            Entity::Service { check, .. } => {
                (self.checks.get(check).map(|(s, _)| s.service.clone()), None)
            }
            Entity::Node(n) if *n != self.local => (None, Some(*n)),
            Entity::Link { to, .. } => (None, Some(*to)),
            _ => (None, None),
        }
    }

    /// Chooses and starts a plan for an open incident that has none, unless it is cleared,
    /// waiting for a retry, or out of attempts.
    fn try_plan(&mut self, id: IncidentId, now: Timestamp) {
        let Some(t) = self.incidents.get(&id) else {
            return;
        };
        if t.execution.is_some()
            || t.cleared_at.is_some()
            || t.retry_at.is_some()
            || t.incident.plans.len() >= MAX_PLAN_CHOICES
        {
            return;
        }
        let incident = &t.incident;
        // Blocked plans never ran, so they neither count as attempts nor are excluded.
        let finished: Vec<&str> = incident
            .plans
            .iter()
            .zip(&incident.outcomes)
            .filter(|(_, o)| **o != PlanOutcome::Blocked)
            .map(|(p, _)| p.plan.as_str())
            .collect();
        if finished.len() >= self.config.execution.max_plan_attempts as usize {
            return;
        }
        let (service, peer) = self.subject(incident);
        let mut candidates = Vec::new();
        let mut skipped = Vec::new();
        for playbook in self.playbooks.for_type(incident.kind) {
            if finished.contains(&playbook.id.as_str()) {
                continue;
            }
            match resolve_steps(playbook, service.as_deref(), peer) {
                Ok(steps) => match missing_cache(&steps, self.caches.as_ref()) {
                    Some(cache) => {
                        skipped.push(format!("{} (no cache `{cache}` on this node)", playbook.id))
                    }
                    None => candidates.push((playbook, steps)),
                },
                Err(missing) => {
                    skipped.push(format!("{} (no {missing} for this incident)", playbook.id))
                }
            }
        }
        let stats: Vec<(String, plan::PlanStats)> = candidates
            .iter()
            .map(|(p, _)| (p.id.clone(), self.knowledge.get(incident.kind, &p.id)))
            .collect();
        // Seeded per incident and attempt, so one decision never depends on how many others
        // were made before it.
        let attempt = incident.plans.len() as u64;
        let seed =
            self.config.seed ^ id.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ attempt.rotate_left(32);
        let choice = plan::choose(&stats, seed);
        let critical = incident.severity == Severity::Critical;
        let first = incident.plans.is_empty() && incident.notes.is_empty();
        match choice.and_then(|c| candidates.into_iter().nth(c.index).map(|p| (p, c.reason))) {
            Some(((playbook, steps), reason)) => {
                let execution = Execution {
                    plan: playbook.id.clone(),
                    steps,
                    verify_timeout: playbook
                        .verify_timeout
                        .unwrap_or(self.config.execution.verify_timeout),
                    phase: Phase::Ready { step: 0 },
                    executed: Vec::new(),
                };
                let needs_approval = playbook.needs_approval && critical;
                self.start_plan(id, execution, reason, needs_approval, now);
            }
            None if first => {
                let note = if skipped.is_empty() {
                    "no playbook for this incident type".to_string()
                } else {
                    format!("no applicable playbook: {}", skipped.join(", "))
                };
                if let Some(t) = self.incidents.get_mut(&id) {
                    t.incident.note(note);
                }
            }
            None => {}
        }
    }

    fn start_plan(
        &mut self,
        id: IncidentId,
        mut execution: Execution,
        reason: String,
        needs_approval: bool,
        now: Timestamp,
    ) {
        let Some(t) = self.incidents.get_mut(&id) else {
            return;
        };
        let choice = PlanChoice {
            plan: execution.plan.clone(),
            reason,
        };
        t.incident.plans.push(choice.clone());
        let approval = needs_approval.then(|| now.plus(self.config.execution.approval_timeout));
        match approval {
            Some(expires_at) => {
                execution.phase = Phase::AwaitingApproval { expires_at };
                t.incident.state = IncidentState::AwaitingApproval { expires_at };
            }
            None => t.incident.state = IncidentState::Executing,
        }
        let plan = execution.plan.clone();
        t.execution = Some(execution);
        self.push_event(Event::PlanChosen {
            incident: id,
            choice,
        });
        if let Some(expires_at) = approval {
            self.push_event(Event::ApprovalRequested {
                incident: id,
                plan,
                expires_at,
            });
        }
    }

    pub(super) fn drive_all(&mut self, now: Timestamp) {
        let ids: Vec<IncidentId> = self.incidents.keys().copied().collect();
        for id in ids {
            self.try_plan(id, now);
            self.drive(id, now);
        }
    }

    /// Moves one incident's plan forward until it must wait for a result, a deadline or an
    /// approval.
    pub(super) fn drive(&mut self, id: IncidentId, now: Timestamp) {
        for _ in 0..MAX_DRIVE_ROUNDS {
            let Some(t) = self.incidents.get(&id) else {
                return;
            };
            let Some(execution) = t.execution.as_ref() else {
                return;
            };
            let cleared = t.cleared_at.is_some();
            match execution.phase.clone() {
                Phase::AwaitingApproval { .. }
                | Phase::Running { .. }
                | Phase::RollingBack {
                    running: Some(_), ..
                } => return,
                Phase::Ready { step } if step >= execution.steps.len() => {
                    let deadline = now.plus(execution.verify_timeout);
                    self.set_phase(id, Phase::Verifying { step, deadline });
                }
                Phase::Ready { step } => self.start_step(id, step, now),
                Phase::Verifying { step, deadline } => {
                    if cleared {
                        self.finish_plan(id, PlanOutcome::Succeeded, now);
                    } else if deadline > now {
                        return;
                    } else if step + 1 >= execution.steps.len() {
                        self.start_rollback(id, PlanOutcome::VerificationFailed, now);
                    } else {
                        self.set_phase(id, Phase::Ready { step: step + 1 });
                    }
                }
                Phase::RollingBack {
                    outcome,
                    mut remaining,
                    running: None,
                } => match remaining.pop() {
                    None => self.finish_plan(id, outcome, now),
                    Some((step, action)) => {
                        let timeout = execution
                            .steps
                            .get(step)
                            .map_or(crate::playbook::DEFAULT_STEP_TIMEOUT, |s| s.timeout);
                        let deadline = now.plus(timeout);
                        let action_id = self.emit(id, action, true, deadline);
                        self.set_phase(
                            id,
                            Phase::RollingBack {
                                outcome,
                                remaining,
                                running: Some((step, action_id, now, deadline)),
                            },
                        );
                    }
                },
            }
        }
    }

    fn set_phase(&mut self, id: IncidentId, phase: Phase) {
        if let Some(e) = self
            .incidents
            .get_mut(&id)
            .and_then(|t| t.execution.as_mut())
        {
            e.phase = phase;
        }
    }

    fn start_step(&mut self, id: IncidentId, step: usize, now: Timestamp) {
        let Some(t) = self.incidents.get(&id) else {
            return;
        };
        let Some(execution) = t.execution.as_ref() else {
            return;
        };
        let Some(s) = execution.steps.get(step).cloned() else {
            return;
        };
        let run = match s.condition {
            Condition::Always => true,
            Condition::IfIsolated => self.neighbours == 0,
            Condition::IfNotIsolated => self.neighbours > 0,
            Condition::IfSymptomPersists => t.cleared_at.is_none(),
        };
        if !run {
            self.record(id, step, false, now, now, StepOutcome::Skipped);
            self.set_phase(id, Phase::Ready { step: step + 1 });
            return;
        }
        // Notifying the neighbours changes nothing on any node, so it passes the limits
        // without spending them: a noisy CPU incident's notices must not use up the budget a
        // crashed service's restart needs.
        let limited = !matches!(s.action, Action::NotifyNeighbours { .. });
        let allowed = if limited {
            self.limits_allow(&s.action, now)
        } else {
            Ok(())
        };
        if let Err((reason, retry_at)) = allowed {
            self.stats.blocked_actions += 1;
            self.record(
                id,
                step,
                false,
                now,
                now,
                StepOutcome::Blocked {
                    reason: reason.clone(),
                },
            );
            if let Some(t) = self.incidents.get_mut(&id) {
                // Healing that cannot act is worse than the fault alone: say so in the severity.
                t.incident.severity = t.incident.severity.raised();
                t.retry_at = Some(retry_at);
                t.incident.note(format!("action blocked: {reason}"));
            }
            self.push_event(Event::ActionBlocked {
                incident: id,
                reason,
            });
            self.start_rollback(id, PlanOutcome::Blocked, now);
            return;
        }
        if limited {
            self.breaker.record(now, &self.config.execution);
        }
        let deadline = now.plus(s.timeout);
        let action_id = self.emit(id, s.action, false, deadline);
        self.set_phase(
            id,
            Phase::Running {
                step,
                action: action_id,
                started_at: now,
                deadline,
            },
        );
    }

    /// Circuit breaker, then blast radius. `Err` carries the reason and when to try again.
    fn limits_allow(&mut self, action: &Action, now: Timestamp) -> Result<(), (String, Timestamp)> {
        let cfg = self.config.execution.clone();
        if let Err(reopens) = self.breaker.check(now, &cfg) {
            let reason = format!(
                "circuit breaker open: {} actions in the last {:?} (limit {})",
                self.breaker.recent.len(),
                cfg.window,
                cfg.max_actions_per_window
            );
            return Err((reason, reopens));
        }
        let mut affected: BTreeSet<NodeId> = self.mesh.under_action.clone();
        affected.extend(self.held_peers.iter().copied());
        affected.insert(self.local);
        affected.extend(action.target_peer());
        let mesh_size = if self.mesh.mesh_size == 0 {
            self.neighbours + 1
        } else {
            self.mesh.mesh_size
        };
        if !blast_radius_allows(affected.len(), mesh_size, cfg.max_blast_share) {
            let reason = format!(
                "blast radius: {} of {} nodes would be under action (share limit {})",
                affected.len(),
                mesh_size,
                cfg.max_blast_share
            );
            // Other nodes finish their plans within a window or so.
            return Err((reason, now.plus(cfg.window)));
        }
        Ok(())
    }

    fn emit(
        &mut self,
        incident: IncidentId,
        action: Action,
        rollback: bool,
        deadline: Timestamp,
    ) -> ActionId {
        let id = ActionId(self.next_action);
        self.next_action += 1;
        // One step per open incident is in flight, so the queue stays within its bound; the
        // check keeps the bound even if the node stops draining.
        if self.actions.len() >= MAX_PENDING_ACTIONS {
            // The step then times out and rolls back like any unanswered action.
            self.stats.dropped_actions += 1;
        } else {
            self.actions.push_back(ActionRequest {
                id,
                incident,
                action,
                rollback,
                deadline,
            });
        }
        id
    }

    /// Records how step `step` (or its rollback) went, taking the plan and action from the
    /// execution so that the record always names what was actually emitted.
    fn record(
        &mut self,
        id: IncidentId,
        step: usize,
        rollback: bool,
        started_at: Timestamp,
        now: Timestamp,
        outcome: StepOutcome,
    ) {
        let Some(t) = self.incidents.get_mut(&id) else {
            return;
        };
        let Some(e) = t.execution.as_ref() else {
            return;
        };
        let Some(s) = e.steps.get(step) else { return };
        let action = if rollback {
            s.rollback.clone()
        } else {
            Some(s.action.clone())
        };
        if let Some(action) = action {
            let plan = e.plan.clone();
            t.incident.record_step(StepRecord {
                plan,
                step,
                action,
                rollback,
                started_at,
                finished_at: now,
                outcome,
            });
        }
    }

    pub(super) fn finish_action(&mut self, id: IncidentId, result: ActionResult, now: Timestamp) {
        let Some(execution) = self.incidents.get(&id).and_then(|t| t.execution.clone()) else {
            return;
        };
        let outcome = match &result {
            ActionResult::Succeeded => StepOutcome::Succeeded,
            ActionResult::Failed(message) => StepOutcome::Failed {
                message: message.clone(),
            },
        };
        match execution.phase {
            Phase::Running {
                step, started_at, ..
            } => {
                let Some(s) = execution.steps.get(step) else {
                    return;
                };
                self.record(id, step, false, started_at, now, outcome);
                match result {
                    ActionResult::Succeeded => {
                        self.note_held(&s.action);
                        if let Some(e) = self
                            .incidents
                            .get_mut(&id)
                            .and_then(|t| t.execution.as_mut())
                        {
                            e.executed.push(step);
                        }
                        let next = match s.verify {
                            Some(d) => Phase::Verifying {
                                step,
                                deadline: now.plus(d),
                            },
                            None => Phase::Ready { step: step + 1 },
                        };
                        self.set_phase(id, next);
                    }
                    ActionResult::Failed(_) => {
                        self.start_rollback(id, PlanOutcome::StepFailed, now)
                    }
                }
            }
            Phase::RollingBack {
                outcome: plan_outcome,
                remaining,
                running: Some((step, _, started_at, _)),
            } => {
                if let Some(action) = execution.steps.get(step).and_then(|s| s.rollback.clone()) {
                    if result == ActionResult::Succeeded {
                        self.note_held(&action);
                    }
                    self.record(id, step, true, started_at, now, outcome);
                }
                self.set_phase(
                    id,
                    Phase::RollingBack {
                        outcome: plan_outcome,
                        remaining,
                        running: None,
                    },
                );
            }
            _ => {}
        }
    }

    /// Keeps the set of peers this node holds isolated or penalised, for the blast radius.
    fn note_held(&mut self, action: &Action) {
        match action {
            Action::IsolatePeer { release: false, .. }
            | Action::DeprefPeer { penalty: 1.., .. } => {
                if let Some(peer) = action
                    .target_peer()
                    .filter(|_| self.held_peers.len() < MAX_HELD_PEERS)
                {
                    self.held_peers.insert(peer);
                }
            }
            Action::IsolatePeer { release: true, .. } | Action::DeprefPeer { penalty: 0, .. } => {
                if let Some(peer) = action.target_peer() {
                    self.held_peers.remove(&peer);
                }
            }
            _ => {}
        }
    }

    /// A deadline passed: a step or rollback timed out, a verification window or an approval
    /// expired.
    pub(super) fn expire(&mut self, id: IncidentId, now: Timestamp) {
        let Some(execution) = self.incidents.get(&id).and_then(|t| t.execution.clone()) else {
            return;
        };
        match execution.phase {
            Phase::AwaitingApproval { .. } => self.finish_plan(id, PlanOutcome::Expired, now),
            Phase::Running {
                step, started_at, ..
            } => {
                self.record(id, step, false, started_at, now, StepOutcome::TimedOut);
                // A step that timed out may have taken effect, so it is rolled back too.
                if let Some(e) = self
                    .incidents
                    .get_mut(&id)
                    .and_then(|t| t.execution.as_mut())
                {
                    e.executed.push(step);
                }
                self.start_rollback(id, PlanOutcome::StepFailed, now);
            }
            Phase::RollingBack {
                outcome,
                remaining,
                running: Some((step, _, started_at, _)),
            } => {
                self.record(id, step, true, started_at, now, StepOutcome::TimedOut);
                self.set_phase(
                    id,
                    Phase::RollingBack {
                        outcome,
                        remaining,
                        running: None,
                    },
                );
            }
            Phase::Verifying { .. }
            | Phase::Ready { .. }
            | Phase::RollingBack { running: None, .. } => {}
        }
        self.drive(id, now);
    }

    fn start_rollback(&mut self, id: IncidentId, outcome: PlanOutcome, now: Timestamp) {
        let Some(e) = self
            .incidents
            .get_mut(&id)
            .and_then(|t| t.execution.as_mut())
        else {
            return;
        };
        let remaining = e.rollback_plan();
        e.phase = Phase::RollingBack {
            outcome,
            remaining,
            running: None,
        };
        if let Some(t) = self.incidents.get_mut(&id) {
            t.incident.note(format!("rolling back after {}", now));
        }
    }

    pub(super) fn finish_plan(&mut self, id: IncidentId, outcome: PlanOutcome, now: Timestamp) {
        let Some(t) = self.incidents.get_mut(&id) else {
            return;
        };
        let Some(execution) = t.execution.take() else {
            return;
        };
        let kind = t.incident.kind;
        t.incident.outcomes.push(outcome.clone());
        t.incident.state = IncidentState::Open;
        let cleared_at = t.cleared_at;
        // Only outcomes that say something about the plan itself count: a blocked, refused or
        // expired plan never ran to completion.
        if matches!(
            outcome,
            PlanOutcome::Succeeded | PlanOutcome::StepFailed | PlanOutcome::VerificationFailed
        ) {
            self.knowledge
                .record(kind, &execution.plan, outcome == PlanOutcome::Succeeded);
        }
        self.push_event(Event::PlanFinished {
            incident: id,
            kind,
            plan: execution.plan,
            outcome,
        });
        if let Some(cleared) = cleared_at {
            if let Some(t) = self.incidents.get_mut(&id) {
                t.incident.state = IncidentState::Resolved;
                t.incident.resolved_at = Some(cleared.max(t.incident.detected_at).min(now));
            }
            self.close(id);
        }
    }
}

/// The first cache a plan's steps or rollbacks would clear that the node does not have.
fn missing_cache<'a>(
    steps: &'a [ResolvedStep],
    caches: Option<&BTreeSet<String>>,
) -> Option<&'a str> {
    let caches = caches?;
    steps
        .iter()
        .flat_map(|s| std::iter::once(&s.action).chain(s.rollback.as_ref()))
        .find_map(|action| match action {
            Action::ClearCache { cache } if !caches.contains(cache) => Some(cache.as_str()),
            _ => None,
        })
}

/// A playbook's steps with the incident's placeholders filled in; `Err` names the placeholder
/// the incident cannot fill (a `$peer` for a local service, say).
fn resolve_steps(
    playbook: &Playbook,
    service: Option<&str>,
    peer: Option<NodeId>,
) -> Result<Vec<ResolvedStep>, &'static str> {
    playbook
        .steps
        .iter()
        .map(|s| {
            Ok(ResolvedStep {
                action: s.action.resolve(service, peer)?,
                timeout: s.timeout,
                verify: s.verify,
                rollback: s
                    .rollback
                    .as_ref()
                    .map(|r| r.resolve(service, peer))
                    .transpose()?,
                condition: s.condition,
            })
        })
        .collect()
}
