//! Snapshot files: where a group's KV state at a snapshot index lives on disk while it
//! is sent or received. The generator writes `gen/`, the transport streams a `gen/` file
//! to the receiver, which writes `recv/<name>.tmp`, syncs it and renames it into `recv/`;
//! install reads the `recv/` file. Files bound memory on both sides: nothing holds a
//! whole snapshot in memory.

use std::path::{Path, PathBuf};

use crate::ids::GroupId;

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

    /// A completely received snapshot, ready to install.
    pub fn recv_path(&self, group: GroupId, index: u64, term: u64) -> PathBuf {
        self.root.join("recv").join(Self::name(group, index, term))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
