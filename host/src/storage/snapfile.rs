//! Snapshot files: where a group's KV state at a snapshot index lives on disk while it
//! is sent or received. The generator writes `gen/`, the transport streams a `gen/` file
//! to the receiver, which writes `recv/<name>.tmp`, syncs it and renames it into `recv/`;
//! install reads the `recv/` file. Files bound memory on both sides: nothing holds a
//! whole snapshot in memory.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::eraftpb::ConfState;
use sha2::{Digest, Sha256};

use super::apply::{decode_apply_state, encode_apply_state};
use crate::ids::GroupId;
use crate::raftstore::traits::{ApplyState, StoreError};

/// First bytes of every snapshot file (format version 1).
const MAGIC: &[u8; 8] = b"FLOSNAP1";
/// A key length that marks the end of the pairs.
const END_OF_PAIRS: u32 = u32::MAX;
/// Largest conf state or key accepted when reading a file (corruption guard).
const FIELD_BYTES_MAX: u32 = 64 * 1024 * 1024;

/// Writes a snapshot file: magic, apply state, conf state, the pairs, an end marker,
/// then the pair count and a sha256 of everything before it. Synced before returning.
pub fn write_file(
    path: &Path,
    state: &ApplyState,
    conf: &ConfState,
    pairs: impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>>,
) -> Result<u64, StoreError> {
    let io = |e: std::io::Error| StoreError(format!("writing snapshot {}: {e}", path.display()));
    let tmp = path.with_extension("tmp");
    let file = std::fs::File::create(&tmp).map_err(io)?;
    let mut out = HashingWriter {
        inner: BufWriter::new(file),
        hash: Sha256::new(),
        len: 0,
    };
    out.put(MAGIC).map_err(io)?;
    out.put(&encode_apply_state(state)).map_err(io)?;
    let conf_bytes = conf
        .write_to_bytes()
        .map_err(|e| StoreError(e.to_string()))?;
    out.put(&(conf_bytes.len() as u32).to_be_bytes())
        .map_err(io)?;
    out.put(&conf_bytes).map_err(io)?;
    let mut count = 0u64;
    for pair in pairs {
        let (k, v) = pair?;
        out.put(&(k.len() as u32).to_be_bytes()).map_err(io)?;
        out.put(&k).map_err(io)?;
        out.put(&(v.len() as u32).to_be_bytes()).map_err(io)?;
        out.put(&v).map_err(io)?;
        count += 1;
    }
    out.put(&END_OF_PAIRS.to_be_bytes()).map_err(io)?;
    out.put(&count.to_be_bytes()).map_err(io)?;
    let digest = out.hash.clone().finalize();
    out.inner.write_all(&digest).map_err(io)?;
    let size = out.len + digest.len() as u64;
    let file = out.inner.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_data().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(size)
}

struct HashingWriter {
    inner: BufWriter<std::fs::File>,
    hash: Sha256,
    len: u64,
}

impl HashingWriter {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.hash.update(bytes);
        self.len += bytes.len() as u64;
        self.inner.write_all(bytes)
    }
}

/// One key-value pair of a snapshot.
pub type Pair = (Vec<u8>, Vec<u8>);

/// Reads a snapshot file front to back, checking its digest.
pub struct SnapReader {
    input: BufReader<std::fs::File>,
    hash: Sha256,
    path: PathBuf,
    pub state: ApplyState,
    pub conf: ConfState,
    pairs_read: u64,
    done: bool,
}

impl SnapReader {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let file = std::fs::File::open(path)
            .map_err(|e| StoreError(format!("cannot open snapshot {}: {e}", path.display())))?;
        let mut r = Self {
            input: BufReader::new(file),
            hash: Sha256::new(),
            path: path.to_path_buf(),
            state: ApplyState {
                applied_index: 0,
                applied_term: 0,
                applied_timestamp_ms: 0,
                plugin: crate::ids::PluginDigest([0; 32]),
            },
            conf: ConfState::default(),
            pairs_read: 0,
            done: false,
        };
        let magic = r.take(MAGIC.len())?;
        if magic != MAGIC {
            return Err(r.corrupt("bad magic"));
        }
        let state = r.take(56)?;
        r.state = decode_apply_state(&state).ok_or_else(|| r.corrupt("bad apply state"))?;
        let len = r.u32()?;
        if len > FIELD_BYTES_MAX {
            return Err(r.corrupt("conf state too large"));
        }
        let conf = r.take(len as usize)?;
        r.conf = ConfState::parse_from_bytes(&conf).map_err(|e| r.corrupt(&e.to_string()))?;
        Ok(r)
    }

    fn corrupt(&self, what: &str) -> StoreError {
        StoreError(format!(
            "snapshot {} is corrupt: {what}",
            self.path.display()
        ))
    }

    fn take(&mut self, n: usize) -> Result<Vec<u8>, StoreError> {
        let mut buf = vec![0u8; n];
        self.input
            .read_exact(&mut buf)
            .map_err(|e| self.corrupt(&format!("truncated ({e})")))?;
        self.hash.update(&buf);
        Ok(buf)
    }

    fn u32(&mut self) -> Result<u32, StoreError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The next pair, or `None` after the last one (once the trailer checked out).
    pub fn next_pair(&mut self) -> Result<Option<Pair>, StoreError> {
        if self.done {
            return Ok(None);
        }
        let klen = self.u32()?;
        if klen == END_OF_PAIRS {
            let count = self.take(8)?;
            let expected = self.hash.clone().finalize();
            let mut digest = [0u8; 32];
            self.input
                .read_exact(&mut digest)
                .map_err(|e| self.corrupt(&format!("truncated digest ({e})")))?;
            if digest.as_slice() != expected.as_slice() {
                return Err(self.corrupt("digest mismatch"));
            }
            let count = u64::from_be_bytes(count.try_into().map_err(|_| self.corrupt("count"))?);
            if count != self.pairs_read {
                return Err(self.corrupt("pair count mismatch"));
            }
            self.done = true;
            return Ok(None);
        }
        if klen > FIELD_BYTES_MAX {
            return Err(self.corrupt("key too large"));
        }
        let k = self.take(klen as usize)?;
        let vlen = self.u32()?;
        if vlen > FIELD_BYTES_MAX {
            return Err(self.corrupt("value too large"));
        }
        let v = self.take(vlen as usize)?;
        self.pairs_read += 1;
        Ok(Some((k, v)))
    }

    /// Reads to the end, checking the digest, without keeping anything.
    pub fn verify(path: &Path) -> Result<(), StoreError> {
        let mut r = Self::open(path)?;
        while r.next_pair()?.is_some() {}
        Ok(())
    }
}

/// The snapshot directory of a node.
#[derive(Clone, Debug)]
pub struct SnapDir {
    root: PathBuf,
}

impl SnapDir {
    /// Creates `root/gen` and `root/recv` if missing and removes half-received files.
    pub fn open(root: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(root.join("gen"))?;
        std::fs::create_dir_all(root.join("recv"))?;
        for entry in std::fs::read_dir(root.join("recv"))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    fn name(group: GroupId, index: u64, term: u64) -> String {
        format!("{:020}-{:020}-{:020}.snap", group.0, index, term)
    }

    /// A generated snapshot of `group` at `(index, term)`.
    pub fn gen_path(&self, group: GroupId, index: u64, term: u64) -> PathBuf {
        self.root.join("gen").join(Self::name(group, index, term))
    }

    /// Where a snapshot being received is written until it is complete.
    pub fn recv_tmp_path(&self, group: GroupId, index: u64, term: u64) -> PathBuf {
        let mut p = self.recv_path(group, index, term).into_os_string();
        p.push(".tmp");
        PathBuf::from(p)
    }

    /// Removes generated snapshots of `group` older than `index` (a transfer still
    /// reading one fails and raft asks for the newer one).
    pub fn remove_older_gen(&self, group: GroupId, index: u64) {
        let prefix = format!("{:020}-", group.0);
        let Ok(dir) = std::fs::read_dir(self.root.join("gen")) else {
            return;
        };
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(&prefix) else {
                continue;
            };
            let older = rest
                .split('-')
                .next()
                .and_then(|i| i.parse::<u64>().ok())
                .is_some_and(|i| i < index);
            if older {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// A completely received snapshot, ready to install.
    pub fn recv_path(&self, group: GroupId, index: u64, term: u64) -> PathBuf {
        self.root.join("recv").join(Self::name(group, index, term))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_round_trip_and_corruption_is_caught() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.snap");
        let state = ApplyState {
            applied_index: 9,
            applied_term: 2,
            applied_timestamp_ms: 5,
            plugin: crate::ids::PluginDigest::of(b"p"),
        };
        let conf = ConfState {
            voters: vec![1, 2, 3],
            ..Default::default()
        };
        let pairs = (0..100u32).map(|i| Ok((i.to_be_bytes().to_vec(), vec![7u8; i as usize])));
        let size = write_file(&path, &state, &conf, pairs).expect("write");
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), size);
        let mut r = SnapReader::open(&path).expect("open");
        assert_eq!(r.state, state);
        assert_eq!(r.conf, conf);
        let mut n = 0;
        while let Some((k, v)) = r.next_pair().expect("pair") {
            assert_eq!(k, (n as u32).to_be_bytes());
            assert_eq!(v.len(), n);
            n += 1;
        }
        assert_eq!(n, 100);
        // Flip one byte in the middle: the digest check fails.
        let mut bytes = std::fs::read(&path).expect("read");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        std::fs::write(&path, &bytes).expect("write");
        assert!(SnapReader::verify(&path).is_err());
        // Cut the tail: truncation is caught.
        std::fs::write(&path, &bytes[..mid]).expect("write");
        let e = SnapReader::verify(&path).expect_err("truncated");
        assert!(e.to_string().contains("corrupt"), "{e}");
    }

    #[test]
    fn paths_are_distinct_and_tmp_files_are_cleared() {
        let dir = tempfile::tempdir().expect("tempdir");
        let snaps = SnapDir::open(dir.path()).expect("open");
        let g = GroupId(3);
        assert_ne!(snaps.gen_path(g, 5, 1), snaps.recv_path(g, 5, 1));
        assert_ne!(snaps.recv_path(g, 5, 1), snaps.recv_path(g, 5, 2));
        std::fs::write(snaps.recv_tmp_path(g, 5, 1), b"partial").expect("write");
        std::fs::write(snaps.recv_path(g, 6, 1), b"whole").expect("write");
        let again = SnapDir::open(dir.path()).expect("reopen");
        assert!(!again.recv_tmp_path(g, 5, 1).exists());
        assert!(again.recv_path(g, 6, 1).exists());
    }
}
