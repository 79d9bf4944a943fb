//! The query pool: a few threads that answer reads in batches, off the async runtime.
//!
//! A read that passed its barrier becomes a [`QueryJob`] on one bounded queue. A worker
//! takes what is queued (up to [`limits::QUERY_BATCH_MAX`]), reads every group's state
//! from one read snapshot, and hands each group's requests to
//! [`StateMachineHost::query_batch`] together, so a burst of reads released by one
//! ReadIndex round costs one snapshot and one plugin instance per group instead of one
//! of each (and a blocking-pool hand-off) per read. Every request still gets its own
//! answer, and the state it observed is the group's applied state at or after its
//! barrier, as with one read at a time. A full queue refuses the read as busy.
//!
//! A panic while answering (a host bug) fails the reads of that group with an error and
//! nothing else: the worker goes on, so the pool never shrinks, and no read is told the
//! node is shutting down when it is not.

use std::collections::BTreeMap;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use tokio::sync::oneshot;

use super::fsm::{FsmError, KvReader, StateMachineHost};
use super::msg::RaftError;
use super::router::Router;
use super::traits::{ApplyStore, ReadSnapshot};
use crate::ids::GroupId;
use crate::limits;

/// A query's answer and the applied index of the state it ran against.
pub type QueryAnswer = Result<(Vec<u8>, u64), RaftError>;

/// One read waiting for its answer.
pub struct QueryJob {
    pub group: GroupId,
    pub request: Vec<u8>,
    pub reply: oneshot::Sender<QueryAnswer>,
}

/// What a worker needs to answer reads.
#[derive(Clone)]
pub struct QueryDeps {
    pub router: Arc<Router>,
    pub apply: Arc<dyn ApplyStore>,
    pub fsm: Arc<dyn StateMachineHost>,
    /// Where caught panics are counted.
    pub metrics: crate::metrics::RaftMetrics,
}

/// The sending side of the pool; the workers end when every clone of it is dropped.
#[derive(Clone)]
pub struct QueryPool {
    tx: Sender<QueryJob>,
}

impl QueryPool {
    /// Starts [`limits::QUERY_THREADS`] workers.
    pub fn start(deps: QueryDeps) -> std::io::Result<Self> {
        let (tx, rx) = crossbeam_channel::bounded(limits::QUERY_QUEUE_CAPACITY);
        for i in 0..limits::QUERY_THREADS {
            let (rx, deps) = (rx.clone(), deps.clone());
            std::thread::Builder::new()
                .name(format!("flotilla-query-{i}"))
                .stack_size(limits::APPLY_THREAD_STACK_BYTES)
                .spawn(move || run_worker(&rx, &deps))?;
        }
        Ok(Self { tx })
    }

    /// Queues a read; the answer comes on the returned receiver.
    pub fn submit(
        &self,
        group: GroupId,
        request: Vec<u8>,
    ) -> Result<oneshot::Receiver<QueryAnswer>, RaftError> {
        let (reply, rx) = oneshot::channel();
        self.try_queue(QueryJob {
            group,
            request,
            reply,
        })
        .map_err(|(_, e)| e)?;
        Ok(rx)
    }

    /// Queues `job`; a full or stopped pool answers it with the reason instead. Never
    /// blocks, so the store loop can call it.
    pub fn queue_or_refuse(&self, job: QueryJob) {
        if let Err((job, e)) = self.try_queue(job) {
            let _ = job.reply.send(Err(e));
        }
    }

    fn try_queue(&self, job: QueryJob) -> Result<(), (QueryJob, RaftError)> {
        let group = job.group;
        self.tx.try_send(job).map_err(|e| match e {
            TrySendError::Full(job) => (
                job,
                RaftError::Busy {
                    group,
                    reason: format!(
                        "{} reads are already waiting for the plugin on this node",
                        limits::QUERY_QUEUE_CAPACITY
                    ),
                    retry_after_ms: limits::TICK_INTERVAL_MS,
                },
            ),
            TrySendError::Disconnected(job) => (job, RaftError::Stopped),
        })
    }
}

fn run_worker(rx: &Receiver<QueryJob>, deps: &QueryDeps) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < limits::QUERY_BATCH_MAX {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        answer_batch(deps, batch);
    }
}

/// Answers `jobs`: one read snapshot for all of them, one `query_batch` per group with
/// the group's requests in the order they came.
pub fn answer_batch(deps: &QueryDeps, jobs: Vec<QueryJob>) {
    let mut by_group: BTreeMap<GroupId, Vec<QueryJob>> = BTreeMap::new();
    for job in jobs {
        by_group.entry(job.group).or_default().push(job);
    }
    let snapshot = deps.apply.read_snapshot();
    for (group, jobs) in by_group {
        let answered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            answer_group(deps, &snapshot, group, &jobs)
        }))
        .unwrap_or_else(|panic| Err(contained(deps, group, &*panic)));
        match answered {
            Ok((outcomes, applied)) => {
                for (job, outcome) in jobs.into_iter().zip(outcomes) {
                    let _ = job
                        .reply
                        .send(outcome.map(|out| (out, applied)).map_err(RaftError::Fsm));
                }
            }
            Err(e) => {
                for job in jobs {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

type Outcomes = (Vec<Result<Vec<u8>, FsmError>>, u64);

/// The error every read of `group` in a batch gets when answering them panicked.
fn contained(deps: &QueryDeps, group: GroupId, panic: &(dyn std::any::Any + Send)) -> RaftError {
    let why = super::panic_message(panic);
    deps.metrics.host_panics.inc();
    tracing::error!(
        group = group.0,
        "host code panicked answering reads: {why}; they get an error and the query \
         thread goes on"
    );
    RaftError::Fsm(FsmError::HostPanic(why.to_owned()))
}

fn answer_group(
    deps: &QueryDeps,
    snapshot: &Arc<dyn ReadSnapshot>,
    group: GroupId,
    jobs: &[QueryJob],
) -> Result<Outcomes, RaftError> {
    if deps.router.mailbox(group).is_none() {
        return Err(RaftError::GroupNotFound(group));
    }
    let state = snapshot
        .apply_state(group)
        .map_err(|e| RaftError::Fsm(FsmError::Storage(e.to_string())))?
        .ok_or(RaftError::GroupNotFound(group))?;
    let ctx = super::fsm::QueryContext {
        group,
        applied_index: state.applied_index,
        applied_timestamp_ms: state.applied_timestamp_ms,
    };
    let requests: Vec<&[u8]> = jobs.iter().map(|j| j.request.as_slice()).collect();
    let reader: Arc<dyn KvReader> = snapshot.clone();
    let outcomes = deps.fsm.query_batch(state.plugin, ctx, &requests, reader);
    if outcomes.len() != requests.len() {
        return Err(RaftError::Fsm(FsmError::HostFault(format!(
            "the state machine host answered {} of {} reads",
            outcomes.len(),
            requests.len()
        ))));
    }
    Ok((outcomes, state.applied_index))
}

#[cfg(test)]
mod tests {
    use parking_lot::Mutex;

    use super::*;
    use crate::ids::PluginDigest;
    use crate::raftstore::fsm::{CommandOutcome, EntryContext, KvView, QueryContext, WriteSet};
    use crate::raftstore::shared::GroupShared;
    use crate::raftstore::traits::ApplyState;
    use crate::storage::mem::MemStore;

    /// Answers `<group>@<applied index>:<request>` and records each batch it was given.
    #[derive(Default)]
    struct Recorder {
        batches: Mutex<Vec<(u64, Vec<String>)>>,
    }

    impl StateMachineHost for Recorder {
        fn apply_entry(
            &self,
            _: PluginDigest,
            _: EntryContext,
            commands: &[&[u8]],
            kv: KvView,
        ) -> (KvView, Vec<CommandOutcome>) {
            (kv, commands.iter().map(|_| Ok(Vec::new())).collect())
        }

        fn query(&self, _: PluginDigest, c: QueryContext, r: &[u8], _: KvView) -> CommandOutcome {
            if r == b"fail" {
                return Err(FsmError::Rejected("asked to fail".into()));
            }
            let r = String::from_utf8_lossy(r);
            Ok(format!("{}@{}:{r}", c.group.0, c.applied_index).into_bytes())
        }

        fn query_batch(
            &self,
            plugin: PluginDigest,
            ctx: QueryContext,
            requests: &[&[u8]],
            reader: Arc<dyn KvReader>,
        ) -> Vec<CommandOutcome> {
            let names = requests
                .iter()
                .map(|r| String::from_utf8_lossy(r).into())
                .collect();
            self.batches.lock().push((ctx.group.0, names));
            requests
                .iter()
                .map(|r| self.query(plugin, ctx, r, KvView::for_query(reader.clone(), ctx.group)))
                .collect()
        }
    }

    fn state(applied_index: u64) -> ApplyState {
        ApplyState {
            applied_index,
            applied_term: 1,
            applied_timestamp_ms: 0,
            plugin: PluginDigest::of(b"recorder"),
        }
    }

    /// Groups 1 (applied at 7) and 2 (applied at 9) exist; group 3 does not.
    fn deps(host: Arc<Recorder>) -> QueryDeps {
        let (router, _receivers) = Router::new();
        let apply = Arc::new(MemStore::default());
        for (g, index) in [(1, 7), (2, 9)] {
            let (group, s) = (GroupId(g), state(index));
            apply
                .commit_apply(group, WriteSet::new(), s, None)
                .expect("commit");
            router
                .register(group, Arc::new(GroupShared::new(s)))
                .expect("register");
        }
        QueryDeps {
            router,
            apply,
            fsm: host,
            metrics: crate::metrics::RaftMetrics::default(),
        }
    }

    fn job(g: u64, request: &str) -> (QueryJob, oneshot::Receiver<QueryAnswer>) {
        let (reply, rx) = oneshot::channel();
        let job = QueryJob {
            group: GroupId(g),
            request: request.as_bytes().to_vec(),
            reply,
        };
        (job, rx)
    }

    #[test]
    fn a_batch_runs_once_per_group_in_arrival_order_and_each_read_gets_its_own_answer() {
        let host = Arc::new(Recorder::default());
        let deps = deps(host.clone());
        let asked = [
            (1, "a"),
            (2, "b"),
            (1, "fail"),
            (3, "d"),
            (2, "e"),
            (1, "c"),
        ];
        let (jobs, mut answers): (Vec<_>, Vec<_>) = asked.iter().map(|&(g, r)| job(g, r)).unzip();
        answer_batch(&deps, jobs);
        let got: Vec<QueryAnswer> = answers
            .iter_mut()
            .map(|rx| rx.try_recv().expect("answered"))
            .collect();
        let ok = |s: &str| Ok((s.as_bytes().to_vec(), 0));
        let with_index = |r: &QueryAnswer| r.clone().map(|(out, _)| (out, 0));
        assert_eq!(with_index(&got[0]), ok("1@7:a"));
        assert_eq!(got[0].as_ref().map(|(_, i)| *i), Ok(7));
        assert_eq!(with_index(&got[1]), ok("2@9:b"));
        assert_eq!(got[1].as_ref().map(|(_, i)| *i), Ok(9));
        assert_eq!(
            got[2],
            Err(RaftError::Fsm(FsmError::Rejected("asked to fail".into())))
        );
        assert_eq!(got[3], Err(RaftError::GroupNotFound(GroupId(3))));
        assert_eq!(with_index(&got[4]), ok("2@9:e"));
        assert_eq!(with_index(&got[5]), ok("1@7:c"));
        let batches = host.batches.lock().clone();
        let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            batches,
            vec![(1, owned(&["a", "fail", "c"])), (2, owned(&["b", "e"]))]
        );
    }

    #[test]
    fn the_pool_answers_through_its_threads() {
        let pool = QueryPool::start(deps(Arc::new(Recorder::default()))).expect("threads");
        let rx = pool.submit(GroupId(2), b"x".to_vec()).expect("queued");
        let answer = rx.blocking_recv().expect("answered");
        assert_eq!(answer, Ok((b"2@9:x".to_vec(), 9)));
    }

    #[test]
    fn a_full_queue_refuses_reads_as_busy_and_names_its_bound() {
        // A pool whose workers never run: the queue fills up.
        let (tx, _rx) = crossbeam_channel::bounded(limits::QUERY_QUEUE_CAPACITY);
        let pool = QueryPool { tx };
        let mut waiting = Vec::new();
        for _ in 0..limits::QUERY_QUEUE_CAPACITY {
            waiting.push(pool.submit(GroupId(1), Vec::new()).expect("room left"));
        }
        match pool.submit(GroupId(1), Vec::new()) {
            Err(RaftError::Busy { group, reason, .. }) => {
                assert_eq!(group, GroupId(1));
                assert!(
                    reason.contains(&limits::QUERY_QUEUE_CAPACITY.to_string()),
                    "{reason}"
                );
            }
            other => panic!("expected Busy, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn a_read_queued_from_the_store_loop_is_answered_with_the_reason_when_refused() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let pool = QueryPool { tx };
        let (first, mut first_rx) = job(1, "a");
        pool.queue_or_refuse(first);
        assert!(
            first_rx.try_recv().is_err(),
            "a queued read waits for a worker"
        );
        let (second, mut second_rx) = job(2, "b");
        pool.queue_or_refuse(second);
        match second_rx.try_recv().expect("answered at once") {
            Err(RaftError::Busy { group, .. }) => assert_eq!(group, GroupId(2)),
            other => panic!("expected Busy, got {:?}", other.map(|_| ())),
        }
        drop(rx);
        let (third, mut third_rx) = job(1, "c");
        pool.queue_or_refuse(third);
        assert_eq!(
            third_rx.try_recv().expect("answered"),
            Err(RaftError::Stopped)
        );
    }
}
