//! The incident database on its own thread: the event loop hands events and queries over a
//! bounded queue and never waits for SQLite. A full queue drops the event (counted); a broken
//! file moves the store to memory (`knowledge::Store` does that and says why).

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;

use heal::Event;
use knowledge::{IncidentFilter, IncidentRecord, RepairTimes, Store};
use tokio::sync::oneshot;

/// Jobs waiting for the database. A healer emits a handful of events per incident; 1,024
/// absorbs a burst of incidents while a slow disk finishes a write.
pub const STORE_QUEUE: usize = 1024;

/// Work for the database thread.
pub enum Job {
    /// Persist one healer event, with the metrics snapshot for an opening incident.
    Event {
        /// The event.
        event: Box<Event>,
        /// Latest node metrics.
        metrics: Option<serde_json::Value>,
        /// Unix ms when the loop drained it.
        wall_ms: i64,
    },
    /// Store the current snapshot of an incident (steps, plans and notes as they stand).
    Snapshot {
        /// The incident.
        incident: Box<heal::Incident>,
        /// Unix ms.
        wall_ms: i64,
    },
    /// List incidents, newest first.
    List {
        /// Which.
        filter: IncidentFilter,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<Vec<IncidentRecord>, String>>,
    },
    /// One incident by record id.
    Get {
        /// Record id.
        record_id: i64,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<Option<IncidentRecord>, String>>,
    },
    /// MTTD/MTTR per type over the stored incidents.
    RepairTimes {
        /// Where the answer goes.
        reply: oneshot::Sender<Result<Vec<RepairTimes>, String>>,
    },
}

/// The loop's side of the database thread.
#[derive(Debug)]
pub struct StoreWorker {
    jobs: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
    /// Jobs dropped because the queue was full.
    pub dropped: u64,
    /// Writes that failed even in memory (logged).
    pub failed: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Why the store runs in memory, if it does (known at start; later fallbacks are logged).
    pub degraded: Option<String>,
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl StoreWorker {
    /// Starts the thread over an opened store.
    pub fn start(store: Store) -> std::io::Result<StoreWorker> {
        let degraded = store.degraded().map(str::to_string);
        let (jobs, receiver) = sync_channel(STORE_QUEUE);
        let failed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let failures = failed.clone();
        let thread = std::thread::Builder::new()
            .name("incidents-db".into())
            .spawn(move || serve(store, receiver, failures))?;
        Ok(StoreWorker {
            jobs: Some(jobs),
            thread: Some(thread),
            dropped: 0,
            failed,
            degraded,
        })
    }

    /// Queues a job; false (and counted) when the queue is full or the thread is gone.
    pub fn submit(&mut self, job: Job) -> bool {
        let Some(jobs) = &self.jobs else {
            self.dropped += 1;
            return false;
        };
        match jobs.try_send(job) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped += 1;
                false
            }
        }
    }
}

impl Drop for StoreWorker {
    fn drop(&mut self) {
        // Closing the queue ends the thread after the queued writes; waiting for it keeps
        // them from being cut off when the node stops.
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(
    mut store: Store,
    jobs: Receiver<Job>,
    failed: std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    let mut degraded_logged = store.degraded().is_some();
    while let Ok(job) = jobs.recv() {
        match job {
            Job::Event {
                event,
                metrics,
                wall_ms,
            } => {
                if let Err(error) = store.record_event(&event, metrics.as_ref(), wall_ms) {
                    failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(%error, "incident not stored");
                }
            }
            Job::Snapshot { incident, wall_ms } => {
                if let Err(error) = store.upsert_incident(&incident, None, wall_ms) {
                    failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(%error, "incident snapshot not stored");
                }
            }
            Job::List { filter, reply } => {
                let _ = reply.send(store.recent(&filter, unix_ms()).map_err(|e| e.to_string()));
            }
            Job::Get { record_id, reply } => {
                let _ = reply.send(store.get(record_id, unix_ms()).map_err(|e| e.to_string()));
            }
            Job::RepairTimes { reply } => {
                let _ = reply.send(store.repair_times(unix_ms()).map_err(|e| e.to_string()));
            }
        }
        if !degraded_logged && let Some(reason) = store.degraded() {
            tracing::error!(%reason, "incident database failed; keeping incidents in memory");
            degraded_logged = true;
        }
    }
}
