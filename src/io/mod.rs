//! Input and output at the edges: recorded-cascade files and where they sit on the event-time
//! axis, the `tweets` wire codec, JSON-lines output files, and the Kafka clients.

pub mod files;
pub mod jsonl;
pub mod kafka;
pub mod kafka_tx;
pub mod schema;
pub mod timeline;
pub mod wire;
