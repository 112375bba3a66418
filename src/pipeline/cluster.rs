//! The layout of the timely computation: worker threads per process, processes, this
//! process's index and every process's address (timely's `-w -n -p -h`).

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
    /// `host:port` of every process, in index order (from `-h`, else localhost:2101+i).
    addresses: Vec<String>,
}

impl Default for Cluster {
    /// One process with one worker.
    fn default() -> Self {
        Self { threads: 1, processes: 1, process: 0, addresses: Vec::new() }
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
        Ok(Self { threads, processes, process, addresses })
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

    /// The timely configuration.
    pub fn timely_config(&self) -> timely::Config {
        let communication = match (self.processes, self.threads) {
            (1, 1) => timely::CommunicationConfig::Thread,
            (1, threads) => timely::CommunicationConfig::Process(threads),
            _ => {
                let addresses = if self.addresses.is_empty() {
                    (0..self.processes).map(|i| format!("localhost:{}", 2101 + i)).collect()
                } else {
                    self.addresses[..self.processes].to_vec()
                };
                timely::CommunicationConfig::Cluster {
                    threads: self.threads,
                    process: self.process,
                    addresses,
                    report: false,
                    zerocopy: false,
                }
            }
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
}
