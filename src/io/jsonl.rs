//! JSON-lines output files, one per output topic (`--out DIR`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::records::{OutputRecord, Topic};

/// Writes records to `<dir>/<topic>.jsonl`, creating every topic's file up front so that an
/// empty topic is an empty file rather than a missing one.
pub struct JsonlWriter {
    files: BTreeMap<Topic, BufWriter<File>>,
}

impl JsonlWriter {
    /// Creates (truncates) the files in `dir`, creating the folder if needed.
    pub fn create(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut files = BTreeMap::new();
        for topic in Topic::ALL {
            let path = dir.join(format!("{}.jsonl", topic.name()));
            files.insert(topic, BufWriter::new(File::create(path)?));
        }
        Ok(Self { files })
    }

    /// Appends one record's JSON value as a line.
    pub fn write(&mut self, record: &OutputRecord) -> std::io::Result<()> {
        let file = self.files.get_mut(&record.sort_key.0).expect("every topic has a file");
        file.write_all(record.value.as_bytes())?;
        file.write_all(b"\n")
    }

    /// Flushes every file.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.files.values_mut().try_for_each(|f| f.flush())
    }
}
