//! The checkpoint directory: atomic part files, completeness checks, retention.
//!
//! Layout: `<dir>/ckpt-<F, 20 digits>/<stage>-<index>-of-<peers>.part`, one part per stage
//! and worker. A part is written to a temporary file, fsynced, renamed into place and
//! its directory fsynced, so a crash leaves either the whole part or none of it. Each part
//! starts with a one-line text header naming its format version, checkpoint, stage, worker,
//! length and CRC-32 of the body; a checkpoint is *complete* when every stage has all `peers`
//! parts and each one's header, length and CRC check out. Loading takes the newest complete
//! checkpoint at or below a bound and ignores (and reports) incomplete or corrupt ones.
//!
//! # Format versions
//!
//! The header starts `tweetoscope-checkpoint v<N>`, N = [`FORMAT_VERSION`]. v1 bodies were
//! bincode 1.3 (unmaintained, RUSTSEC-2025-0141); v2 bodies are postcard 1.x (a specified,
//! stable wire format). Neither format describes its own schema, so the version is what
//! tells a reader whether it can decode a part: a part of another version is refused with an
//! error saying so ([`StoreError::Version`]) — never skipped like a corrupt part, since every
//! checkpoint of that folder would be refused the same way and a silent fresh start would
//! lose the state. Bump [`FORMAT_VERSION`] whenever the codec or a stage's part type changes
//! incompatibly.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::Time;

/// Errors of the checkpoint directory.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file operation failed.
    #[error("checkpoint {path}")]
    Io {
        /// The file at fault.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A part's header, length or checksum is wrong.
    #[error("checkpoint part {path} is corrupt: {reason}")]
    Corrupt {
        /// The file at fault.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },
    /// A part written in another format version (by another version of tweetoscope).
    #[error(
        "checkpoint part {path} is in checkpoint format v{found}{old}, this tweetoscope reads v{FORMAT_VERSION} only: \
         finish that run with the version that wrote it, or move the checkpoint folder away to start without it",
        old = if *found == 1 { " (bincode 1.3, written before the move to postcard)" } else { "" }
    )]
    Version {
        /// The part file.
        path: PathBuf,
        /// The version its header names.
        found: u32,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_owned(), source }
}

/// The checkpoint format this build writes and reads (see the module documentation).
pub const FORMAT_VERSION: u32 = 2;

/// What every part's header starts with, before the version number.
const MAGIC: &str = "tweetoscope-checkpoint v";

/// The checkpoint directory of a pipeline.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    /// Root folder (a PVC on Kubernetes).
    dir: PathBuf,
    /// How many complete checkpoints to keep.
    retention: usize,
    /// The stages that write a part of every checkpoint (the first one triggers pruning).
    stages: &'static [&'static str],
}

/// One complete checkpoint, loaded and verified.
#[derive(Debug, Clone)]
pub struct LoadedCheckpoint {
    /// Its event-time frontier F: everything before F is in the state.
    pub time: Time,
    /// Number of workers that wrote it.
    pub peers: usize,
    /// Part bodies per stage, indexed by the worker that wrote them.
    pub parts: std::collections::BTreeMap<&'static str, Vec<Vec<u8>>>,
    /// Total size of the part files in bytes.
    pub bytes: u64,
}

impl CheckpointStore {
    /// A store in `dir` (created if missing) keeping `retention` complete checkpoints, each
    /// made of a part of every one of `stages` from every worker.
    pub fn open(dir: impl Into<PathBuf>, retention: usize, stages: &'static [&'static str]) -> Result<Self, StoreError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(Self { dir, retention: retention.max(1), stages })
    }

    /// The stages a complete checkpoint has parts of.
    pub fn stages(&self) -> &'static [&'static str] {
        self.stages
    }

    /// The root folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn checkpoint_dir(&self, time: Time) -> PathBuf {
        self.dir.join(format!("ckpt-{time:020}"))
    }

    fn part_name(stage: &str, index: usize, peers: usize) -> String {
        format!("{stage}-{index:04}-of-{peers:04}.part")
    }

    /// Writes one part atomically; returns its size in bytes.
    pub fn write_part(&self, time: Time, stage: &str, index: usize, peers: usize, body: &[u8]) -> Result<u64, StoreError> {
        let dir = self.checkpoint_dir(time);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let name = Self::part_name(stage, index, peers);
        let path = dir.join(&name);
        let tmp = dir.join(format!(".{name}.tmp"));
        let header = format!(
            "{MAGIC}{FORMAT_VERSION} kind={stage} time={time} index={index} peers={peers} len={} crc32={:08x}\n",
            body.len(),
            crc32fast::hash(body)
        );
        {
            let mut f = fs::File::create(&tmp).map_err(io_err(&tmp))?;
            f.write_all(header.as_bytes()).and_then(|()| f.write_all(body)).and_then(|()| f.sync_all()).map_err(io_err(&tmp))?;
        }
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        // The rename is durable once the directory itself is synced.
        fs::File::open(&dir).and_then(|d| d.sync_all()).map_err(io_err(&dir))?;
        Ok((header.len() + body.len()) as u64)
    }

    /// Reads and verifies one part file: its body.
    fn read_part(path: &Path, time: Time, stage: &str, index: usize, peers: usize) -> Result<Vec<u8>, StoreError> {
        let bytes = fs::read(path).map_err(io_err(path))?;
        let corrupt = |reason: String| StoreError::Corrupt { path: path.to_owned(), reason };
        let newline = bytes.iter().position(|b| *b == b'\n').ok_or_else(|| corrupt("no header line".into()))?;
        let header = std::str::from_utf8(&bytes[..newline]).map_err(|_| corrupt("header is not UTF-8".into()))?;
        let body = &bytes[newline + 1..];
        // Another version's part is refused as such, not as corrupt (see the module doc).
        if let Some(found) = header.strip_prefix(MAGIC).and_then(|r| r.split(' ').next()).and_then(|v| v.parse::<u32>().ok()) {
            if found != FORMAT_VERSION {
                return Err(StoreError::Version { path: path.to_owned(), found });
            }
        }
        let expected_prefix = format!("{MAGIC}{FORMAT_VERSION} kind={stage} time={time} index={index} peers={peers} len=");
        let rest = header.strip_prefix(&expected_prefix).ok_or_else(|| corrupt(format!("unexpected header {header:?}")))?;
        let (len, crc) = rest.split_once(" crc32=").ok_or_else(|| corrupt("no checksum in the header".into()))?;
        let len: usize = len.parse().map_err(|_| corrupt(format!("bad length {len:?}")))?;
        if len != body.len() {
            return Err(corrupt(format!("body is {} bytes, header says {len} (truncated?)", body.len())));
        }
        let crc = u32::from_str_radix(crc, 16).map_err(|_| corrupt(format!("bad checksum field {crc:?}")))?;
        if crc != crc32fast::hash(body) {
            return Err(corrupt("checksum mismatch".into()));
        }
        Ok(body.to_vec())
    }

    /// Event times of the checkpoint folders present (complete or not), newest first.
    pub fn times(&self) -> Result<Vec<Time>, StoreError> {
        let mut times: Vec<Time> = fs::read_dir(&self.dir)
            .map_err(io_err(&self.dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.strip_prefix("ckpt-")?.parse().ok())
            .collect();
        times.sort_unstable_by(|a, b| b.cmp(a));
        Ok(times)
    }

    /// Loads checkpoint `time` if it is complete and intact.
    pub fn load(&self, time: Time) -> Result<LoadedCheckpoint, StoreError> {
        let dir = self.checkpoint_dir(time);
        let incomplete = |reason: String| StoreError::Corrupt { path: dir.clone(), reason };
        // The worker count is in the part names; every part must agree on it.
        let mut peers: Option<usize> = None;
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))?.filter_map(|e| e.ok()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(n) = name.strip_suffix(".part").and_then(|s| s.rsplit_once("-of-")).and_then(|(_, n)| n.parse().ok()) {
                if peers.is_some_and(|p| p != n) {
                    return Err(incomplete(format!("parts disagree on the number of workers ({n} vs {peers:?})")));
                }
                peers = Some(n);
            }
        }
        let peers = peers.filter(|p| *p > 0).ok_or_else(|| incomplete("no parts".into()))?;
        let mut parts = std::collections::BTreeMap::new();
        let mut bytes = 0;
        for &stage in self.stages {
            let mut bodies = Vec::with_capacity(peers);
            for index in 0..peers {
                let path = dir.join(Self::part_name(stage, index, peers));
                if !path.exists() {
                    return Err(incomplete(format!("missing part {}", path.display())));
                }
                let body = Self::read_part(&path, time, stage, index, peers)?;
                bytes += body.len() as u64;
                bodies.push(body);
            }
            parts.insert(stage, bodies);
        }
        Ok(LoadedCheckpoint { time, peers, parts, bytes })
    }

    /// The newest complete checkpoint with F ≤ `at_most`; incomplete or corrupt newer ones
    /// are reported with a warning and skipped. A part of another format version is an
    /// error: the older checkpoints of the folder would not be readable either.
    pub fn latest(&self, at_most: Time) -> Result<Option<LoadedCheckpoint>, StoreError> {
        for time in self.times()?.into_iter().filter(|t| *t <= at_most) {
            match self.load(time) {
                Ok(c) => return Ok(Some(c)),
                Err(e @ StoreError::Version { .. }) => return Err(e),
                Err(e) => {
                    crate::telemetry::checkpoint_skipped();
                    tracing::warn!(error = %e, time, "skipping an unusable checkpoint");
                }
            }
        }
        Ok(None)
    }

    /// Deletes checkpoint folders older than the `retention` newest complete ones, except
    /// the newest complete one at or below `committed` (the output frontier already committed
    /// downstream: a restart must resume from at or below it). Called by worker 0 after
    /// writing; a checkpoint is only deleted once newer complete ones exist.
    pub fn prune(&self, committed: Time) -> Result<usize, StoreError> {
        let times = self.times()?;
        let mut complete = 0;
        let mut removed = 0;
        let mut kept_below_committed = false;
        for time in times {
            let is_complete = self.is_complete(time);
            if time <= committed && is_complete && !kept_below_committed {
                kept_below_committed = true;
                complete += 1;
                continue;
            }
            if complete >= self.retention {
                let dir = self.checkpoint_dir(time);
                fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
                removed += 1;
            } else if is_complete {
                complete += 1;
            }
        }
        Ok(removed)
    }

    /// Whether checkpoint `time` has all its parts (names only: cheap, used by pruning).
    fn is_complete(&self, time: Time) -> bool {
        let dir = self.checkpoint_dir(time);
        let Ok(entries) = fs::read_dir(&dir) else { return false };
        let names: Vec<String> = entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        let Some(peers) = names.iter().find_map(|n| n.strip_suffix(".part")?.rsplit_once("-of-")?.1.parse::<usize>().ok()) else {
            return false;
        };
        self.stages.iter().all(|s| (0..peers).all(|i| names.iter().any(|n| *n == Self::part_name(s, i, peers))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAGES: &[&str] = &["window", "predict", "outcome", "train"];

    fn write_all(store: &CheckpointStore, time: Time, peers: usize) {
        for stage in STAGES {
            for i in 0..peers {
                store.write_part(time, stage, i, peers, format!("{stage} {i} at {time}").as_bytes()).unwrap();
            }
        }
    }

    #[test]
    fn a_complete_checkpoint_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path(), 2, STAGES).unwrap();
        write_all(&store, 3600, 2);
        let c = store.latest(Time::MAX).unwrap().expect("complete");
        assert_eq!((c.time, c.peers), (3600, 2));
        assert_eq!(c.parts["window"][1], b"window 1 at 3600");
    }

    #[test]
    fn corrupt_or_partial_checkpoints_fall_back_to_the_previous_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path(), 5, STAGES).unwrap();
        write_all(&store, 100, 2);
        write_all(&store, 200, 2);
        write_all(&store, 300, 2);
        // 300: a flipped byte in a body.
        let part = store.checkpoint_dir(300).join(CheckpointStore::part_name("train", 1, 2));
        let mut bytes = fs::read(&part).unwrap();
        *bytes.last_mut().unwrap() ^= 0x40;
        fs::write(&part, bytes).unwrap();
        // 200: a missing part (a crash before every worker wrote).
        fs::remove_file(store.checkpoint_dir(200).join(CheckpointStore::part_name("predict", 0, 2))).unwrap();
        assert!(matches!(store.load(300), Err(StoreError::Corrupt { reason, .. }) if reason.contains("checksum")));
        assert_eq!(store.latest(Time::MAX).unwrap().unwrap().time, 100);
        // A truncated part is caught by its length.
        let part = store.checkpoint_dir(100).join(CheckpointStore::part_name("window", 0, 2));
        let bytes = fs::read(&part).unwrap();
        fs::write(&part, &bytes[..bytes.len() - 3]).unwrap();
        assert!(store.latest(Time::MAX).unwrap().is_none());
    }

    /// A real checkpoint written by the bincode-1.3 version (format v1; how it was made:
    /// tests/data/checkpoint-v1/README.md) is refused with a message naming the format, not
    /// skipped as corrupt (which would silently start afresh).
    #[test]
    fn a_checkpoint_of_the_old_bincode_format_is_refused_with_a_message_saying_so() {
        let dir = tempfile::tempdir().unwrap();
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/checkpoint-v1/ckpt-00000000000000535200");
        let copy = dir.path().join("ckpt-00000000000000535200");
        fs::create_dir(&copy).unwrap();
        for entry in fs::read_dir(&fixture).unwrap() {
            let entry = entry.unwrap();
            fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
        }
        let store = CheckpointStore::open(dir.path(), 3, STAGES).unwrap();
        let err = store.latest(Time::MAX).expect_err("a v1 checkpoint must be refused");
        assert!(matches!(err, StoreError::Version { found: 1, .. }), "{err:?}");
        let message = err.to_string();
        for needle in ["format v1", "bincode", "reads v2 only", "move the checkpoint folder away"] {
            assert!(message.contains(needle), "{needle:?} missing from: {message}");
        }
        // A part of this version in the same folder is still read.
        write_all(&store, 600_000, 1);
        assert!(store.latest(Time::MAX).unwrap().is_some());
    }

    #[test]
    fn a_foreign_file_is_corrupt_not_a_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path(), 2, STAGES).unwrap();
        write_all(&store, 100, 1);
        let part = store.checkpoint_dir(100).join(CheckpointStore::part_name("train", 0, 1));
        fs::write(&part, b"PK\x03\x04 something else\n").unwrap();
        assert!(matches!(store.load(100), Err(StoreError::Corrupt { .. })));
        assert!(store.latest(Time::MAX).unwrap().is_none());
    }

    #[test]
    fn latest_respects_the_output_bound() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path(), 5, STAGES).unwrap();
        write_all(&store, 100, 1);
        write_all(&store, 200, 1);
        assert_eq!(store.latest(199).unwrap().unwrap().time, 100);
        assert!(store.latest(99).unwrap().is_none());
    }

    #[test]
    fn pruning_keeps_the_newest_complete_checkpoints_and_never_the_only_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path(), 2, STAGES).unwrap();
        for t in [100, 200, 300] {
            write_all(&store, t, 1);
        }
        store.write_part(400, "predict", 0, 1, b"partial").unwrap();
        assert_eq!(store.prune(Time::MAX).unwrap(), 1);
        assert_eq!(store.times().unwrap(), vec![400, 300, 200]);
        // Outputs committed only up to 250: 200 is what a restart needs, so it stays.
        write_all(&store, 500, 1);
        write_all(&store, 600, 1);
        assert_eq!(store.prune(250).unwrap(), 2);
        assert_eq!(store.times().unwrap(), vec![600, 500, 200]);
    }
}
