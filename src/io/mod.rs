//! Input and output at the edges: recorded-cascade files and JSON-lines output files.

pub mod files;
pub mod kafka;
pub mod kafka_tx;
pub mod jsonl;
