//! Detecting a journal that lost acknowledged writes.
//!
//! fjall recovers a damaged journal by dropping its tail (its only recovery mode,
//! `TolerateCorruptTail`), without telling us. For a raft node that is dangerous: a
//! follower that forgets entries or a vote it acknowledged can break the quorum's
//! promises. So every store-loop round writes a counter (`durable/round` in the `meta`
//! keyspace) in its own synced batch, and a background thread copies the latest synced
//! counter into a tiny file beside the database (`<db>.mark`), throttled to one
//! `fdatasync` per [`MARK_INTERVAL`]. On open, a database whose recovered counter is
//! below the mark has lost rounds that were durable before: the node refuses to start
//! and says so, instead of serving an older state as if it were current.
//!
//! Rounds acknowledged within the last mark interval before the damage are not
//! covered; anything older is. The file holds a magic, the round and a checksum; a
//! damaged mark file is reported and rewritten, never trusted.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::raftstore::traits::StoreError;

/// The most often the mark file is synced.
pub const MARK_INTERVAL: Duration = Duration::from_millis(10);

/// The `meta` key holding the round counter.
pub const ROUND_KEY: &str = "durable/round";

const MAGIC: &[u8; 8] = b"FLOMARK1";
const LEN: usize = 24;

fn encode(round: u64) -> [u8; LEN] {
    let mut buf = [0u8; LEN];
    buf[..8].copy_from_slice(MAGIC);
    buf[8..16].copy_from_slice(&round.to_be_bytes());
    let sum = Sha256::digest(&buf[..16]);
    buf[16..].copy_from_slice(&sum[..8]);
    buf
}

/// What the mark file says.
#[derive(Debug, PartialEq, Eq)]
pub enum MarkFile {
    Absent,
    Round(u64),
    Damaged(String),
}

/// Reads the mark file at `path`.
pub fn read_mark(path: &Path) -> MarkFile {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return MarkFile::Absent,
        Err(e) => return MarkFile::Damaged(format!("cannot read it: {e}")),
    };
    if bytes.len() != LEN || &bytes[..8] != MAGIC {
        return MarkFile::Damaged(format!("{} bytes, not a mark record", bytes.len()));
    }
    let mut round = [0u8; 8];
    round.copy_from_slice(&bytes[8..16]);
    let round = u64::from_be_bytes(round);
    if encode(round)[16..] != bytes[16..] {
        return MarkFile::Damaged("checksum mismatch".into());
    }
    MarkFile::Round(round)
}

/// Checks a freshly opened database's round counter against the mark file.
pub fn check(path: &Path, recovered_round: u64) -> Result<(), StoreError> {
    match read_mark(path) {
        MarkFile::Round(marked) if marked > recovered_round => Err(StoreError(format!(
            "the database lost acknowledged writes: its journal recovers to persist round \
             {recovered_round}, but round {marked} was already synced (see {}). The journal \
             was truncated or corrupted behind fjall's back, so this node would serve and vote \
             from an older state. Do not start it on this data dir: remove the node from the \
             cluster and add a fresh one (its replicas catch up from the others)",
            path.display()
        ))),
        MarkFile::Damaged(why) => {
            tracing::warn!(
                "durability mark {} is damaged ({why}); it is rewritten, and losses older \
                 than this start cannot be detected",
                path.display()
            );
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The writer side: the store loop reports each synced round; a thread keeps the file
/// at most [`MARK_INTERVAL`] behind.
#[derive(Debug)]
pub struct DurableMark {
    latest: Arc<AtomicU64>,
    wake: SyncSender<()>,
}

impl DurableMark {
    /// Starts the writer thread for the file at `path`, beginning at `round`.
    pub fn start(path: PathBuf, round: u64) -> Result<Self, StoreError> {
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| StoreError(format!("cannot open {}: {e}", path.display())))?;
        let write = move |file: &File, round: u64| -> std::io::Result<()> {
            file.write_all_at(&encode(round), 0)?;
            file.set_len(LEN as u64)?;
            file.sync_data()
        };
        write(&file, round)
            .map_err(|e| StoreError(format!("cannot write {}: {e}", path.display())))?;
        if let Some(dir) = path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| StoreError(format!("cannot sync {}: {e}", dir.display())))?;
        }
        let latest = Arc::new(AtomicU64::new(round));
        let (wake, woken) = sync_channel::<()>(1);
        let seen = latest.clone();
        std::thread::Builder::new()
            .name("flotilla-mark".into())
            .spawn(move || {
                let mut written = round;
                // Ends when the store (and with it the sender) is dropped.
                while woken.recv().is_ok() {
                    let now = seen.load(Ordering::Acquire);
                    if now > written {
                        if let Err(e) = write(&file, now) {
                            // A failed write leaves an older mark: detection gets weaker,
                            // nothing gets unsafe. The next round's fsync will fail too.
                            tracing::error!("cannot update {}: {e}", path.display());
                            return;
                        }
                        written = now;
                    }
                    std::thread::sleep(MARK_INTERVAL);
                }
            })
            .map_err(|e| StoreError(format!("cannot start the mark thread: {e}")))?;
        Ok(Self { latest, wake })
    }

    /// Records that `round` is synced in the database.
    pub fn advance(&self, round: u64) {
        self.latest.fetch_max(round, Ordering::AcqRel);
        match self.wake.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_ahead_of_the_database_is_refused_and_behind_is_fine() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError(e.to_string()))?;
        let path = dir.path().join("db.mark");
        assert_eq!(read_mark(&path), MarkFile::Absent);
        check(&path, 0)?;
        let mark = DurableMark::start(path.clone(), 7)?;
        mark.advance(12);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while read_mark(&path) != MarkFile::Round(12) {
            assert!(
                std::time::Instant::now() < deadline,
                "mark never reached 12"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        check(&path, 12)?;
        check(&path, 40)?;
        let lost = check(&path, 11).expect_err("round 12 was synced, the db says 11");
        assert!(lost.0.contains("lost acknowledged writes"), "{lost}");
        Ok(())
    }

    #[test]
    fn a_damaged_mark_is_reported_not_trusted() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError(e.to_string()))?;
        let path = dir.path().join("db.mark");
        let mut bytes = encode(99).to_vec();
        bytes[12] ^= 0x40;
        std::fs::write(&path, &bytes).map_err(|e| StoreError(e.to_string()))?;
        assert!(matches!(read_mark(&path), MarkFile::Damaged(_)));
        check(&path, 0)?;
        std::fs::write(&path, b"short").map_err(|e| StoreError(e.to_string()))?;
        assert!(matches!(read_mark(&path), MarkFile::Damaged(_)));
        Ok(())
    }
}
