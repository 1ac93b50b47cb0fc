//! A test driver: a real `Healer` on a virtual clock that records every event and action.

use heal::{
    ActionRequest, ActionResult, CheckDecl, Event, HealConfig, Healer, Incident, LinkSample,
    Observation, PlaybookSet, Timestamp, validate_checks,
};
use wire::NodeId;

pub fn node(i: u64) -> NodeId {
    NodeId::from_index(i)
}

/// Detector settings short enough for tests: 5 warm-up samples, open after 3, close after 3,
/// and node resources judged by samples alone (no sustain, no clear margin).
pub fn test_config() -> HealConfig {
    let mut c = HealConfig::default();
    c.detector.warm_up_samples = 5;
    c.detector.open_after = 3;
    c.detector.close_after = 3;
    c.detector.resource_sustain = std::time::Duration::ZERO;
    c.detector.resource_clear_margin = 0.0;
    c
}

pub struct Harness {
    pub healer: Healer,
    pub now: Timestamp,
    pub events: Vec<Event>,
    pub actions: Vec<ActionRequest>,
}

impl Harness {
    pub fn new(config: HealConfig, checks: &[&str], playbooks: PlaybookSet) -> Harness {
        let decls: Vec<CheckDecl> = checks
            .iter()
            .map(|y| serde_saphyr::from_str(y).expect("test check parses"))
            .collect();
        let specs = validate_checks(&decls).expect("test checks are valid");
        Harness {
            healer: Healer::new(config, node(0), specs, playbooks).expect("test config is valid"),
            now: Timestamp::from_secs(1000),
            events: Vec::new(),
            actions: Vec::new(),
        }
    }

    pub fn with_playbooks(texts: &[&str]) -> PlaybookSet {
        let mut set = PlaybookSet::empty();
        for (i, text) in texts.iter().enumerate() {
            set.add_text(text, &format!("test{i}.yaml"))
                .expect("test playbook parses");
        }
        set
    }

    fn drain(&mut self) {
        while let Some(a) = self.healer.poll_action() {
            self.actions.push(a);
        }
        while let Some(e) = self.healer.poll_event() {
            self.events.push(e);
        }
        if let Err(e) = self.healer.validate() {
            panic!("invariant broken: {e}");
        }
    }

    /// Advances one second and feeds `obs`.
    pub fn observe(&mut self, obs: Observation) {
        self.now = self.now.plus(std::time::Duration::from_secs(1));
        self.healer.handle_observation(obs, self.now);
        self.drain();
    }

    /// Advances one second and feeds several observations at the same instant.
    pub fn observe_all(&mut self, obs: Vec<Observation>) {
        self.now = self.now.plus(std::time::Duration::from_secs(1));
        for o in obs {
            self.healer.handle_observation(o, self.now);
        }
        self.drain();
    }

    pub fn memory(&mut self, percent: f64) {
        self.observe(Observation::Node {
            cpu_percent: 10.0,
            memory_percent: percent,
            disk_percent: 20.0,
        });
    }

    /// Advances `secs` seconds and fires the timeout.
    pub fn wait(&mut self, secs: u64) {
        self.now = self.now.plus(std::time::Duration::from_secs(secs));
        self.healer.handle_timeout(self.now);
        self.drain();
    }

    pub fn reply(&mut self, index: usize, result: ActionResult) {
        let id = self.actions[index].id;
        self.healer.handle_action_result(id, result, self.now);
        self.drain();
    }

    pub fn opened(&self) -> Vec<&Incident> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::IncidentOpened(i) => Some(i),
                _ => None,
            })
            .collect()
    }

    pub fn closed(&self) -> Vec<&Incident> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::IncidentClosed(i) => Some(i),
                _ => None,
            })
            .collect()
    }

    pub fn action_names(&self) -> Vec<(String, bool)> {
        self.actions
            .iter()
            .map(|a| (a.action.name().to_string(), a.rollback))
            .collect()
    }
}

pub fn link(peer: NodeId, loss: f64) -> LinkSample {
    LinkSample {
        peer,
        loss_percent: loss,
        rtt_ms: 1.0,
        tq: 250,
    }
}
