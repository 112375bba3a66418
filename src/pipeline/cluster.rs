//! The layout of the timely computation: worker threads per process, processes, this
//! process's index and every process's address (timely's `-w -n -p -h`), and why a
//! cluster cannot start or stops (see `handshake` and `control`).

use std::time::Duration;

use super::fingerprint::Difference;

/// How long a process waits for every peer to connect by default (`--connect-timeout`).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a layout cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// `-w 0` or `-n 0`.
    #[error("-w and -n must be at least 1 (got -w {threads} -n {processes})")]
    Empty {
        /// Worker threads per process.
        threads: usize,
        /// Processes.
        processes: usize,
    },
    /// `-p` names no process of the cluster.
    #[error("-p {process} must be below -n {processes}")]
    NoSuchProcess {
        /// This process's index.
        process: usize,
        /// Processes.
        processes: usize,
    },
    /// The hostfile lists fewer addresses than processes.
    #[error("the hostfile has {addresses} addresses but -n is {processes}")]
    ShortHostfile {
        /// Addresses in the hostfile.
        addresses: usize,
        /// Processes.
        processes: usize,
    },
    /// This process's own address cannot be listened on (taken port, foreign address).
    #[error("cannot listen on {address} (process {process}'s line of the hostfile): {message}")]
    Bind {
        /// This process's index.
        process: usize,
        /// The address (one of the whitespace-separated ones of its line).
        address: String,
        /// What the system said.
        message: String,
    },
    /// A peer did not connect (or could not be reached) before the start-up deadline.
    #[error("process {process} ({address}) {what} within {seconds} s{detail}")]
    Missing {
        /// The first missing peer.
        process: usize,
        /// Its address, as this process's hostfile has it.
        address: String,
        /// "did not answer" (this process dials it) or "did not connect" (it dials us).
        what: &'static str,
        /// The deadline (`--connect-timeout`).
        seconds: u64,
        /// The last connection error, when there was one (with its leading "; ").
        detail: String,
    },
    /// A peer runs another command, config, input, layout or version.
    #[error("process {process} ({address}) has another {difference}")]
    Disagree {
        /// The peer.
        process: usize,
        /// Its address.
        address: String,
        /// The first value that differs (boxed: errors stay small).
        difference: Box<Difference>,
    },
    /// A peer was stopped by a signal (it told us before leaving).
    #[error("process {process} ({address}) was stopped by {}", signal_name(*signal))]
    PeerStopped {
        /// The peer.
        process: usize,
        /// Its address.
        address: String,
        /// The signal it received.
        signal: i32,
    },
    /// A peer gave up (its own start-up failed) and said why.
    #[error("process {process} ({address}) gave up: {reason}")]
    PeerGaveUp {
        /// The peer.
        process: usize,
        /// Its address.
        address: String,
        /// Its error.
        reason: String,
    },
    /// A peer's connection closed without it saying goodbye (it died or was killed).
    #[error("process {process} ({address}) closed its connection")]
    PeerClosed {
        /// The peer.
        process: usize,
        /// Its address.
        address: String,
    },
    /// This process was stopped by a signal while connecting.
    #[error("stopped by {} while connecting to the cluster", signal_name(*signal))]
    Interrupted {
        /// The signal.
        signal: i32,
    },
    /// Something that is not a peer of this cluster spoke on a cluster connection.
    #[error("{address}: {detail}")]
    Protocol {
        /// The remote address (or the peer's hostfile address).
        address: String,
        /// What was wrong.
        detail: String,
    },
}

impl ClusterError {
    /// The exit code a process should end with: 128 + the signal when a signal stopped the
    /// cluster (130 for SIGINT, 143 for SIGTERM, as a shell reports it), else 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::PeerStopped { signal, .. } | Self::Interrupted { signal } => 128 + signal,
            _ => 1,
        }
    }
}

/// The usual name of a stop signal (for messages).
pub fn signal_name(signal: i32) -> String {
    match signal {
        1 => "SIGHUP".into(),
        2 => "SIGINT".into(),
        15 => "SIGTERM".into(),
        0 => "a stop request".into(),
        n => format!("signal {n}"),
    }
}

/// How the timely computation is laid out (timely's `-w -n -p -h`). Built only through
/// [`Cluster::new`], so a value always describes a runnable layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// Worker threads per process (`-w`).
    threads: usize,
    /// Number of processes (`-n`).
    processes: usize,
    /// This process's index (`-p`).
    process: usize,
    /// `host:port` of every process, in index order (from `--hostfile`, else localhost:2101+i).
    addresses: Vec<String>,
    /// How long start-up waits for every peer (per process: it need not agree).
    connect_timeout: Duration,
}

impl Default for Cluster {
    /// One process with one worker.
    fn default() -> Self {
        Self { threads: 1, processes: 1, process: 0, addresses: Vec::new(), connect_timeout: DEFAULT_CONNECT_TIMEOUT }
    }
}

impl Cluster {
    /// A layout: `threads` workers in each of `processes` processes, this one being
    /// `process`, at `addresses` (empty: `localhost:2101+i`; extra lines are ignored).
    pub fn new(threads: usize, processes: usize, process: usize, addresses: Vec<String>) -> Result<Self, ClusterError> {
        if threads == 0 || processes == 0 {
            return Err(ClusterError::Empty { threads, processes });
        }
        if process >= processes {
            return Err(ClusterError::NoSuchProcess { process, processes });
        }
        if processes > 1 && !addresses.is_empty() && addresses.len() < processes {
            return Err(ClusterError::ShortHostfile { addresses: addresses.len(), processes });
        }
        Ok(Self { threads, processes, process, addresses, connect_timeout: DEFAULT_CONNECT_TIMEOUT })
    }

    /// The same layout with another start-up deadline.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long start-up waits for every peer to connect and agree.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// One process with `threads` workers.
    pub fn threads(threads: usize) -> Result<Self, ClusterError> {
        Self::new(threads, 1, 0, Vec::new())
    }

    /// Worker threads per process.
    pub fn threads_per_process(&self) -> usize {
        self.threads
    }

    /// Number of processes.
    pub fn processes(&self) -> usize {
        self.processes
    }

    /// This process's index.
    pub fn process(&self) -> usize {
        self.process
    }

    /// Workers in the whole computation.
    pub fn peers(&self) -> usize {
        self.threads * self.processes
    }

    /// Every process's address, in index order: the hostfile's first `-n` lines, else
    /// `localhost:2101+i` (timely's default).
    pub fn addresses(&self) -> Vec<String> {
        if self.addresses.is_empty() {
            (0..self.processes).map(|i| format!("localhost:{}", 2101 + i)).collect()
        } else {
            self.addresses[..self.processes].to_vec()
        }
    }

    /// The timely configuration. Several processes are connected by `handshake::connect`,
    /// not by timely (whose connection loop retries for ever and cannot check that the
    /// processes agree), so this is only used as given for one process.
    pub fn timely_config(&self) -> timely::Config {
        let communication = match (self.processes, self.threads) {
            (1, 1) => timely::CommunicationConfig::Thread,
            (1, threads) => timely::CommunicationConfig::Process(threads),
            _ => timely::CommunicationConfig::Cluster {
                threads: self.threads,
                process: self.process,
                addresses: self.addresses(),
                report: false,
                zerocopy: false,
            },
        };
        timely::Config { communication, worker: timely::WorkerConfig::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_layouts_are_refused_with_their_numbers() {
        assert_eq!(Cluster::new(0, 1, 0, vec![]), Err(ClusterError::Empty { threads: 0, processes: 1 }));
        assert_eq!(Cluster::new(1, 2, 2, vec![]), Err(ClusterError::NoSuchProcess { process: 2, processes: 2 }));
        let one = vec!["127.0.0.1:2101".to_owned()];
        assert_eq!(Cluster::new(1, 2, 0, one), Err(ClusterError::ShortHostfile { addresses: 1, processes: 2 }));
        assert_eq!(Cluster::new(2, 2, 1, vec![]).unwrap().peers(), 4);
    }

    #[test]
    fn start_up_waits_a_minute_by_default_and_signals_map_to_shell_exit_codes() {
        assert_eq!(Cluster::default().connect_timeout(), Duration::from_secs(60));
        assert_eq!(Cluster::new(1, 2, 0, vec![]).unwrap().connect_timeout(), Duration::from_secs(60));
        assert_eq!(ClusterError::Interrupted { signal: 15 }.exit_code(), 143);
        assert_eq!(ClusterError::PeerStopped { process: 1, address: "a:1".into(), signal: 2 }.exit_code(), 130);
        assert_eq!(ClusterError::PeerClosed { process: 1, address: "a:1".into() }.exit_code(), 1);
        let difference = Difference {
            what: "config".into(),
            key: "pipeline.windows".into(),
            theirs: "[600, 1200]".into(),
            mine: "[600]".into(),
        };
        let e = ClusterError::Disagree { process: 1, address: "127.0.0.1:2102".into(), difference: Box::new(difference) };
        assert_eq!(
            e.to_string(),
            "process 1 (127.0.0.1:2102) has another config: pipeline.windows [600, 1200] there vs [600] here"
        );
    }
}
