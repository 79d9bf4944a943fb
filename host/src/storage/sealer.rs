//! Sealing full memtables, on a thread of the node's own.
//!
//! After each persist round and apply commit, the writer checks the active memtable of
//! each keyspace it wrote and, when one has reached its size, asks this thread to seal
//! it (fjall's `rotate_memtable`, which queues the sealed memtable for a flush). The
//! sealing takes fjall's journal lock and tidies its journals, so it is kept off the
//! writers' threads; each keyspace has at most one request in flight.
//!
//! Why not leave it to fjall (3.1): once a memtable passes fjall's own limit, every write
//! to it posts a rotation request to the flush workers' bounded queue (1,000), and a
//! worker that handles one posts its flush to that same queue, waiting while it is full;
//! with one worker (the node's default) nobody then drains the queue and the node never
//! flushes again (fjall-rs/fjall PR #323; a tight loop of small writes in a test hit
//! it). Sealing here, below fjall's limit (its default of 64 MiB, kept as a backstop),
//! posts one flush per memtable and no requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use fjall::{AbstractTree as _, Keyspace};

use crate::raftstore::traits::StoreError;

/// A keyspace, the memtable size at which it is sealed, and whether a request to seal
/// it is in flight.
struct Memtable {
    keyspace: Keyspace,
    limit: u64,
    pending: AtomicBool,
}

/// The sealing thread and the keyspaces it watches. Dropping it stops and joins the
/// thread, so no handle to the database outlives the node's last [`super::Store`].
pub(crate) struct Sealer {
    /// The keyspaces persist rounds write, then those applies write.
    memtables: Arc<[Memtable]>,
    /// How many of `memtables` persist rounds write.
    log_count: usize,
    tx: Option<SyncSender<usize>>,
    thread: Option<JoinHandle<()>>,
}

impl Sealer {
    /// Starts the thread for the keyspaces persist rounds write (`log`) and those
    /// applies write (`apply`), each with the memtable size beside it.
    pub(crate) fn start(
        log: Vec<(Keyspace, u64)>,
        apply: Vec<(Keyspace, u64)>,
    ) -> Result<Self, StoreError> {
        let log_count = log.len();
        let memtables: Arc<[Memtable]> = log
            .into_iter()
            .chain(apply)
            .map(|(keyspace, limit)| Memtable {
                keyspace,
                limit,
                pending: AtomicBool::new(false),
            })
            .collect();
        let (tx, rx) = sync_channel(memtables.len().max(1));
        let watched = memtables.clone();
        let thread = std::thread::Builder::new()
            .name("flotilla:seal".into())
            .spawn(move || seal_loop(&watched, rx))
            .map_err(|e| StoreError(format!("cannot start the memtable sealing thread: {e}")))?;
        Ok(Self {
            memtables,
            log_count,
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Asks for each keyspace a persist round writes whose memtable has reached its
    /// size to be sealed.
    pub(crate) fn check_log(&self) {
        self.check(0..self.log_count);
    }

    /// The same for the keyspaces an apply writes.
    pub(crate) fn check_apply(&self) {
        self.check(self.log_count..self.memtables.len());
    }

    fn check(&self, which: std::ops::Range<usize>) {
        let Some(tx) = &self.tx else { return };
        for i in which {
            let Some(m) = self.memtables.get(i) else {
                continue;
            };
            if m.keyspace.tree.active_memtable().size() >= m.limit
                && !m.pending.swap(true, Ordering::AcqRel)
                && tx.try_send(i).is_err()
            {
                m.pending.store(false, Ordering::Release);
            }
        }
    }
}

fn seal_loop(memtables: &[Memtable], rx: Receiver<usize>) {
    for i in rx {
        let Some(m) = memtables.get(i) else { continue };
        if let Err(e) = m.keyspace.rotate_memtable() {
            tracing::error!(keyspace = ?m.keyspace.name(), "cannot seal the memtable: {e}");
        }
        m.pending.store(false, Ordering::Release);
    }
}

impl Drop for Sealer {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the memtable sealing thread panicked");
        }
    }
}
