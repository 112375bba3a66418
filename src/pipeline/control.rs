//! A running cluster's link between processes, beside timely: stop requests travel to every
//! process, a normal end is announced, and a peer that dies ends this process with one line.
//!
//! Timely has no way to stop a cluster from one process, and on a closed socket its
//! communication threads panic ("timely communication error: reading data: socket
//! closed"), the workers then panic on poisoned queues, and the process aborts with stack
//! traces. Timely is fail-stop by design; we keep that, but say it in one line:
//!
//! - a control connection that ends without a `Bye` means the peer is gone: this process
//!   prints `error: process 1 (127.0.0.1:2102) closed its connection` and exits;
//! - while the cluster runs, a panic hook recognises timely's communication panics (by
//!   their message and the thread, `timely:recv-N` / `timely:send-N`, which names the
//!   peer) and does the same instead of printing the panic;
//! - a stop request (a signal here, [`RunHandles::stop`]) is sent to every peer, which
//!   stops its sources too, so the whole cluster drains and ends together.
//!
//! Exiting from here rather than returning an error is deliberate: by then timely's threads
//! are unwinding through poisoned queues and a second panic would abort the process; the
//! run cannot continue, and a crashed run is what checkpoints recover from.

use std::net::TcpStream;
use std::panic::PanicHookInfo;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::cluster::ClusterError;
use super::fingerprint::Fingerprint;
use super::handshake::{self, Event, Frame, Hello, Role, TICK};
use super::{Job, RunHandles, StopCause};

/// How long a failing process waits for a stop frame still in flight (see `fail_stop`).
const SETTLE: std::time::Duration = std::time::Duration::from_millis(200);

/// The previous panic hook, called for every panic that is not a lost connection.
type PanicHook = Arc<Box<dyn Fn(&PanicHookInfo<'_>) + Sync + Send + 'static>>;

/// What the watcher thread and the panic hook share.
struct Shared {
    /// This process's index.
    me: usize,
    /// Every process's hostfile line (for messages).
    addresses: Vec<String>,
    /// Control connections by process, for writing.
    writers: Vec<Option<Mutex<TcpStream>>>,
    /// Set once this process's dataflow is complete: peers may leave from then on.
    finished: AtomicBool,
    /// Set by the first thread that ends the process (the others then stay silent).
    failing: AtomicBool,
    /// Why the run stops, if it does.
    handles: RunHandles,
}

impl Shared {
    /// A peer's address for messages.
    fn address(&self, p: usize) -> String {
        self.addresses.get(p).cloned().unwrap_or_default()
    }

    /// Sends a frame to every peer (those already gone are skipped).
    fn broadcast(&self, frame: &Frame) {
        for w in self.writers.iter().flatten() {
            if let Ok(mut stream) = w.lock() {
                let _ = handshake::write_frame(&mut *stream, frame);
            }
        }
    }

    /// Ends this process because the cluster cannot go on: one line, and the exit code of
    /// the stop signal when the cluster was stopping anyway, else 1.
    fn fail_stop(&self, error: &ClusterError) -> ! {
        if self.failing.swap(true, Ordering::SeqCst) {
            // Another thread is printing and exiting; stay silent until it has.
            loop {
                std::thread::park();
            }
        }
        // A peer stopped by a signal says so on its control connection before its
        // connections close, but timely may see its data connection close first: give the
        // watcher a moment to apply the stop, which decides the exit code.
        std::thread::sleep(SETTLE);
        let code = self.handles.stop_cause().map_or(1, |c| c.exit_code());
        eprintln!("error: {error}");
        std::process::exit(code)
    }
}

/// This process's link to the rest of a running cluster (none for one process).
pub(super) struct Link {
    /// Shared with the watcher and the panic hook.
    shared: Arc<Shared>,
    /// The data connections, until timely takes them.
    data: Option<Vec<Option<TcpStream>>>,
    /// Whether process 0 writes output files.
    process0_writes_files: bool,
    /// The thread following the control connections.
    watcher: Option<JoinHandle<()>>,
    /// The panic hook to restore after the run.
    previous_hook: Option<PanicHook>,
}

impl Link {
    /// Connects this process to the others and checks they agree (`handshake::connect`),
    /// then follows the control connections for the run. `None` for one process.
    pub fn start(job: &Job, writes_files: bool, handles: &RunHandles) -> Result<Option<Self>, ClusterError> {
        let cluster = &job.cluster;
        if cluster.processes() == 1 {
            return Ok(None);
        }
        let hello = Hello { process: cluster.process(), role: Role::Control, fingerprint: Fingerprint::of(job), writes_files };
        let signal = || handles.stop_cause().map_or(0, |c| c.signal);
        let started = handshake::connect(cluster, &hello, &handles.shutdown, &signal)?;
        tracing::info!(processes = cluster.processes(), "every process of the cluster is connected and agrees");
        let process0_writes_files = match cluster.process() {
            0 => writes_files,
            _ => started.hellos[0].as_ref().is_some_and(|h| h.writes_files),
        };
        let shared = Arc::new(Shared {
            me: cluster.process(),
            addresses: cluster.addresses(),
            writers: started.control.into_iter().map(|s| s.map(Mutex::new)).collect(),
            finished: AtomicBool::new(false),
            failing: AtomicBool::new(false),
            handles: handles.clone(),
        });
        let watcher = {
            let (shared, events) = (shared.clone(), started.events);
            std::thread::Builder::new().name("cluster-watch".into()).spawn(move || watch(&shared, &events)).map_err(|e| {
                ClusterError::Protocol { address: shared_address(cluster), detail: format!("cannot start the watcher: {e}") }
            })?
        };
        let previous_hook = install_panic_hook(shared.clone());
        Ok(Some(Self {
            shared,
            data: Some(started.data),
            process0_writes_files,
            watcher: Some(watcher),
            previous_hook: Some(previous_hook),
        }))
    }

    /// Whether process 0 writes the output files (the file sink exists on every process then).
    pub fn process0_writes_files(&self) -> bool {
        self.process0_writes_files
    }

    /// The data connections, for timely (once).
    pub fn take_data(&mut self) -> Vec<Option<TcpStream>> {
        self.data.take().unwrap_or_default()
    }

    /// The dataflow completed here, hence everywhere: tell the peers, whose connections may
    /// close from now on without that being an error.
    pub fn finish(&mut self) {
        if !self.shared.finished.swap(true, Ordering::SeqCst) {
            self.shared.broadcast(&Frame::Bye);
        }
    }

    /// This process fails (before or during the run): tell the peers why, so that they end
    /// now with that reason rather than at their deadline or with a closed connection.
    pub fn abort(&self, reason: &str) {
        if !self.shared.finished.swap(true, Ordering::SeqCst) {
            self.shared.broadcast(&Frame::Abort { reason: reason.to_owned() });
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.shared.finished.store(true, Ordering::SeqCst);
        if let Some(w) = self.watcher.take() {
            let _ = w.join();
        }
        // (Replacing the hook is not allowed while this thread panics; it then stays.)
        if let Some(previous) = self.previous_hook.take().filter(|_| !std::thread::panicking()) {
            drop(std::panic::take_hook());
            std::panic::set_hook(Box::new(move |info| previous(info)));
        }
    }
}

/// This process's own address (for a message about itself).
fn shared_address(cluster: &super::Cluster) -> String {
    cluster.addresses().get(cluster.process()).cloned().unwrap_or_default()
}

/// Follows the control connections until this process's dataflow is complete: relays a
/// local stop to the peers, applies theirs, and fails stop on a peer that leaves early.
fn watch(shared: &Shared, events: &Receiver<Event>) {
    let n = shared.addresses.len();
    let mut said_bye = vec![false; n];
    let mut announced = false;
    while !shared.finished.load(Ordering::SeqCst) {
        if !announced && shared.handles.shutdown.load(Ordering::SeqCst) {
            announced = true;
            let cause = shared.handles.stop_cause();
            if cause.is_none_or(|c| c.process == shared.me) {
                shared.broadcast(&Frame::Stop { signal: cause.map_or(0, |c| c.signal) });
            }
        }
        match events.recv_timeout(TICK) {
            Ok(Event::Frame { process, frame: Frame::Stop { signal } }) => {
                announced = true;
                shared.handles.stop(StopCause { signal, process });
            }
            Ok(Event::Frame { process, frame: Frame::Bye }) => said_bye[process] = true,
            Ok(Event::Frame { process, frame: Frame::Abort { reason } }) => {
                if !shared.finished.load(Ordering::SeqCst) {
                    shared.fail_stop(&ClusterError::PeerGaveUp { process, address: shared.address(process), reason });
                }
            }
            Ok(Event::Closed { process }) if !said_bye[process] => {
                if !shared.finished.load(Ordering::SeqCst) {
                    shared.fail_stop(&ClusterError::PeerClosed { process, address: shared.address(process) });
                }
            }
            Ok(_) | Err(RecvTimeoutError::Timeout) => {}
            // Every control connection has ended (after their goodbyes): keep watching the
            // stop flag until the run ends, without spinning.
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(TICK),
        }
    }
}

/// While the cluster runs, timely's communication panics end the process with one line
/// naming the peer; every other panic goes to the previous hook. Returns that hook.
fn install_panic_hook(shared: Arc<Shared>) -> PanicHook {
    let previous: PanicHook = Arc::new(std::panic::take_hook());
    let chained = previous.clone();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        if let Some(error) = lost_connection(thread.name().unwrap_or(""), &panic_message(info), &shared.addresses) {
            if !shared.finished.load(Ordering::SeqCst) {
                shared.fail_stop(&error);
            }
        }
        chained(info);
    }));
    previous
}

/// A panic's message.
fn panic_message(info: &PanicHookInfo<'_>) -> String {
    let payload = info.payload();
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

/// The error a timely communication panic stands for, or `None` for any other panic.
/// Timely names its threads `timely:recv-N` / `timely:send-N` after the peer, and its
/// communication panics start "timely communication error:" (a message its source asks
/// to keep stable); the workers then panic on the poisoned queues.
fn lost_connection(thread: &str, message: &str, addresses: &[String]) -> Option<ClusterError> {
    let communication = message.contains("timely communication error") || message.contains("MergeQueue poisoned");
    if !communication {
        return None;
    }
    let peer =
        thread.strip_prefix("timely:recv-").or_else(|| thread.strip_prefix("timely:send-")).and_then(|i| i.parse::<usize>().ok());
    Some(match peer {
        Some(process) => ClusterError::PeerClosed { process, address: addresses.get(process).cloned().unwrap_or_default() },
        None => {
            ClusterError::Protocol { address: "the cluster".into(), detail: format!("a connection to a peer failed ({message})") }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timely_communication_panics_name_the_peer_and_other_panics_pass() {
        let addresses = vec!["127.0.0.1:2101".to_owned(), "127.0.0.1:2102".to_owned()];
        let e = lost_connection("timely:recv-1", "timely communication error: reading data: socket closed", &addresses);
        assert_eq!(e.unwrap().to_string(), "process 1 (127.0.0.1:2102) closed its connection");
        let e = lost_connection("timely:send-0", "timely communication error: writing data: Broken pipe", &addresses);
        assert_eq!(e.unwrap().to_string(), "process 0 (127.0.0.1:2101) closed its connection");
        assert!(lost_connection("timely:work-0", "MergeQueue poisoned.", &addresses).is_some());
        assert!(lost_connection("timely:work-0", "index out of bounds", &addresses).is_none());
    }
}
