//! Start-up of a cluster, before timely: connect every pair of processes, check that they
//! agree, and hand the connections over.
//!
//! Timely's own start-up (`timely_communication::networking::create_sockets`) dials each
//! earlier process once a second for ever and accepts the later ones without a word, so a
//! missing peer hangs the cluster silently, and nothing checks that the processes build
//! the same dataflow (which they must: channels are numbered in the order operators are
//! built). So we connect ourselves, as timely would (process `i` listens on its hostfile
//! line and dials every `j < i`), with a deadline and a check, then give the sockets to
//! `initialize_networking_from_sockets`:
//!
//! - each pair has two TCP connections: `Data`, handed to timely, and `Control`, kept by
//!   `control` for the run (stop requests, goodbyes, and noticing a peer that dies);
//! - on each connection both sides first send a [`Hello`] (index, role, fingerprint); both
//!   compare, and any difference ends every process with a line naming it. Every pair is
//!   connected and compared, so if any two processes differ every process sees a
//!   difference (two processes that agree with a third agree with each other) and no
//!   process starts timely while another refuses;
//! - frames are `MAGIC` (with the protocol version), a length and JSON, so a process of
//!   another version, or another program, is named rather than misread;
//! - the coordinator wakes every 50 ms: a stop signal, a peer's stop or abort, or the
//!   deadline end start-up within that time, and the connected peers are told why.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::cluster::{Cluster, ClusterError};
use super::fingerprint::{Fingerprint, PROTOCOL};

/// Largest frame accepted (a hello with a large config is a few kilobytes).
const MAX_FRAME: usize = 1 << 20;
/// How long a connected peer may take to send its hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between two attempts to reach a peer that is not listening yet.
const RETRY_EVERY: Duration = Duration::from_millis(200);
/// Longest wait for one TCP connect (an unroutable address must not eat the deadline).
const DIAL_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the coordinator looks at the stop flag and the deadline.
pub(super) const TICK: Duration = Duration::from_millis(50);

/// The first bytes of every frame: a name and the protocol version.
fn magic() -> [u8; 8] {
    let mut m = *b"TWSCOPE\0";
    m[7] = PROTOCOL as u8;
    m
}

/// What a connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Role {
    /// Handed to timely.
    Data,
    /// Kept for stop requests and goodbyes.
    Control,
}

/// The first frame each side of a connection sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Hello {
    /// The sender's index (`-p`).
    pub process: usize,
    /// What this connection is for.
    pub role: Role,
    /// What must agree.
    pub fingerprint: Fingerprint,
    /// Whether the sender writes output files (`--out`): only process 0's answer counts,
    /// and every process must know it, since it decides whether the file sink exists.
    pub writes_files: bool,
}

/// Everything sent on a cluster connection before timely takes it (and on the control
/// connection during the run).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) enum Frame {
    /// Who is speaking and what it runs.
    Hello(Hello),
    /// The sender was stopped by a signal (0: asked to stop otherwise): stop too.
    Stop {
        /// The signal.
        signal: i32,
    },
    /// The sender failed and leaves.
    Abort {
        /// Its error.
        reason: String,
    },
    /// The sender's dataflow is complete: its connections close normally from now on.
    Bye,
}

/// Why a frame could not be read.
#[derive(Debug)]
pub(super) enum FrameError {
    /// The connection ended before a frame began.
    Closed,
    /// Reading failed (including a timeout).
    Io(io::Error),
    /// The bytes are not a frame of this protocol.
    Foreign(String),
}

/// Writes one frame.
pub(super) fn write_frame(stream: &mut impl Write, frame: &Frame) -> io::Result<()> {
    let body = serde_json::to_vec(frame).map_err(io::Error::other)?;
    let mut bytes = Vec::with_capacity(12 + body.len());
    bytes.extend_from_slice(&magic());
    bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&body);
    stream.write_all(&bytes)?;
    stream.flush()
}

/// Reads one frame, reading no byte beyond it (the data connection is timely's next).
pub(super) fn read_frame(stream: &mut impl Read) -> Result<Frame, FrameError> {
    let mut head = [0u8; 12];
    let mut got = 0;
    while got < head.len() {
        match stream.read(&mut head[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    if head[..7] != magic()[..7] {
        return Err(FrameError::Foreign("sent something that is not a tweetoscope cluster handshake".into()));
    }
    if head[7] != magic()[7] {
        return Err(FrameError::Foreign(format!(
            "speaks cluster protocol {} and this tweetoscope {PROTOCOL}: run the same version everywhere",
            head[7]
        )));
    }
    let len = u32::from_be_bytes([head[8], head[9], head[10], head[11]]) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::Foreign(format!("sent a {len}-byte frame (at most {MAX_FRAME})")));
    }
    let mut body = vec![0; len];
    stream.read_exact(&mut body).map_err(FrameError::Io)?;
    serde_json::from_slice(&body).map_err(|e| FrameError::Foreign(format!("sent an unreadable frame: {e}")))
}

/// What the start-up threads tell the coordinator, and (after start-up) what the control
/// connections' readers tell `control`.
pub(super) enum Event {
    /// A connection whose hello was exchanged.
    Connected {
        /// What it is for.
        role: Role,
        /// The connection (blocking, no timeout).
        stream: TcpStream,
        /// The peer's hello.
        hello: Hello,
    },
    /// Start-up cannot succeed.
    Failed(ClusterError),
    /// A frame on a control connection.
    Frame {
        /// The peer.
        process: usize,
        /// What it said.
        frame: Frame,
    },
    /// A control connection ended.
    Closed {
        /// The peer.
        process: usize,
    },
}

/// A connected cluster, before timely.
pub(super) struct Started {
    /// The data connections by process (`None` for this one), for timely.
    pub data: Vec<Option<TcpStream>>,
    /// The control connections by process, for writing.
    pub control: Vec<Option<TcpStream>>,
    /// Every peer's hello by process (`None` for this one).
    pub hellos: Vec<Option<Hello>>,
    /// Frames and ends of the control connections (their readers keep running).
    pub events: Receiver<Event>,
}

/// Connects this process to every other one of `cluster` and checks that they all agree
/// with `hello`. Ends with an error naming the cause when a peer differs, is missing at
/// the deadline, gives up or is stopped, or when `shutdown` is set (a signal: `signal()`
/// says which); the connected peers are told why before the connections close.
pub(super) fn connect(
    cluster: &Cluster,
    hello: &Hello,
    shutdown: &AtomicBool,
    signal: &dyn Fn() -> i32,
) -> Result<Started, ClusterError> {
    let (me, n) = (cluster.process(), cluster.processes());
    let addresses = cluster.addresses();
    let listeners = bind(me, &addresses[me])?;
    let (tx, events) = channel();
    let quit = Arc::new(AtomicBool::new(false));
    let last_errors = Arc::new(Mutex::new(vec![String::new(); n]));
    if me + 1 < n {
        let (hello, tx, quit) = (hello.clone(), tx.clone(), quit.clone());
        std::thread::Builder::new()
            .name("cluster-accept".into())
            .spawn(move || accept(listeners, &hello, &tx, &quit))
            .map_err(|e| spawn_failed(&addresses[me], &e))?;
    }
    for (j, address) in addresses.iter().enumerate().take(me) {
        for role in [Role::Data, Role::Control] {
            let dialer = Dialer { process: j, address: address.clone(), hello: Hello { role, ..hello.clone() } };
            let (tx, quit, errors) = (tx.clone(), quit.clone(), last_errors.clone());
            std::thread::Builder::new()
                .name(format!("cluster-dial-{j}"))
                .spawn(move || dialer.run(&tx, &quit, &errors))
                .map_err(|e| spawn_failed(address, &e))?;
        }
    }
    let mut gathering = Gathering::new(me, addresses, tx);
    let deadline = Instant::now() + cluster.connect_timeout();
    let outcome = gathering.gather(&events, hello, deadline, shutdown, signal, cluster, &last_errors);
    quit.store(true, Ordering::Relaxed);
    match outcome {
        Ok(()) => Ok(Started { data: gathering.data, control: gathering.control, hellos: gathering.hellos, events }),
        Err(e) => {
            let farewell = match &e {
                ClusterError::Interrupted { signal } => Frame::Stop { signal: *signal },
                other => Frame::Abort { reason: other.to_string() },
            };
            for stream in gathering.control.iter_mut().flatten() {
                let _ = write_frame(stream, &farewell);
            }
            Err(e)
        }
    }
}

/// Listens on every address of this process's hostfile line (timely allows several,
/// whitespace-separated).
fn bind(me: usize, line: &str) -> Result<Vec<TcpListener>, ClusterError> {
    line.split_whitespace()
        .map(|address| {
            TcpListener::bind(address).map_err(|e| ClusterError::Bind {
                process: me,
                address: address.into(),
                message: e.to_string(),
            })
        })
        .collect()
}

/// A thread could not be started (out of resources): said as a start-up failure.
fn spawn_failed(address: &str, e: &io::Error) -> ClusterError {
    ClusterError::Protocol { address: address.into(), detail: format!("cannot start a connection thread: {e}") }
}

/// Accepts the later processes' connections until told to quit; each answers on its own
/// thread, so one silent connection delays no other.
fn accept(listeners: Vec<TcpListener>, mine: &Hello, tx: &Sender<Event>, quit: &AtomicBool) {
    for l in &listeners {
        if let Err(e) = l.set_nonblocking(true) {
            let _ = tx.send(Event::Failed(ClusterError::Protocol { address: local_addr(l), detail: e.to_string() }));
            return;
        }
    }
    while !quit.load(Ordering::Relaxed) {
        let mut idle = true;
        for l in &listeners {
            match l.accept() {
                Ok((stream, from)) => {
                    idle = false;
                    let (mine, tx) = (mine.clone(), tx.clone());
                    let _ = std::thread::Builder::new()
                        .name("cluster-answer".into())
                        .spawn(move || answer(stream, &from.to_string(), mine, &tx));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => tracing::debug!(error = %e, "accept failed"),
            }
        }
        if idle {
            std::thread::sleep(TICK / 2);
        }
    }
}

/// A listener's address, for messages.
fn local_addr(l: &TcpListener) -> String {
    l.local_addr().map_or_else(|_| "?".into(), |a| a.to_string())
}

/// Reads an accepted connection's hello and answers with ours (with the same role).
fn answer(mut stream: TcpStream, from: &str, mine: Hello, tx: &Sender<Event>) {
    let ready = stream.set_nonblocking(false).and_then(|()| stream.set_nodelay(true));
    if ready.and_then(|()| stream.set_read_timeout(Some(HELLO_TIMEOUT))).is_err() {
        return;
    }
    match read_frame(&mut stream) {
        Ok(Frame::Hello(theirs)) => {
            let reply = Frame::Hello(Hello { role: theirs.role, ..mine });
            if write_frame(&mut stream, &reply).and_then(|()| stream.set_read_timeout(None)).is_ok() {
                let _ = tx.send(Event::Connected { role: theirs.role, stream, hello: theirs });
            }
        }
        Ok(_) => {
            let detail = "sent another frame before its hello".into();
            let _ = tx.send(Event::Failed(ClusterError::Protocol { address: from.into(), detail }));
        }
        Err(FrameError::Foreign(detail)) => {
            let _ = tx.send(Event::Failed(ClusterError::Protocol { address: from.into(), detail: format!("a peer {detail}") }));
        }
        // A probe or a peer that left: not a member of this cluster, not an error.
        Err(FrameError::Closed) => tracing::debug!(from, "a connection closed without a hello"),
        Err(FrameError::Io(e)) => tracing::debug!(from, error = %e, "a connection sent no hello"),
    }
}

/// Dials one earlier process for one role, until it answers or start-up ends.
struct Dialer {
    /// The peer's index.
    process: usize,
    /// Its hostfile line.
    address: String,
    /// Our hello for this role.
    hello: Hello,
}

impl Dialer {
    /// Retries until connected (the peer may start later), then exchanges hellos.
    fn run(self, tx: &Sender<Event>, quit: &AtomicBool, last_errors: &Mutex<Vec<String>>) {
        while !quit.load(Ordering::Relaxed) {
            match connect_once(&self.address) {
                Ok(mut stream) => {
                    let _ = tx.send(match self.exchange(&mut stream) {
                        Ok(theirs) => Event::Connected { role: self.hello.role, stream, hello: theirs },
                        Err(e) => Event::Failed(e),
                    });
                    return;
                }
                Err(e) => {
                    if let Ok(mut errors) = last_errors.lock() {
                        errors[self.process] = e.to_string();
                    }
                }
            }
            std::thread::sleep(RETRY_EVERY);
        }
    }

    /// Sends our hello and reads the peer's.
    fn exchange(&self, stream: &mut TcpStream) -> Result<Hello, ClusterError> {
        let protocol = |detail: String| ClusterError::Protocol { address: self.address.clone(), detail };
        let p = self.process;
        stream
            .set_nodelay(true)
            .and_then(|()| stream.set_read_timeout(Some(HELLO_TIMEOUT)))
            .map_err(|e| protocol(e.to_string()))?;
        write_frame(stream, &Frame::Hello(self.hello.clone())).map_err(|e| protocol(format!("process {p}: {e}")))?;
        match read_frame(stream) {
            Ok(Frame::Hello(theirs)) if theirs.process == p => {
                stream.set_read_timeout(None).map_err(|e| protocol(e.to_string()))?;
                Ok(theirs)
            }
            Ok(Frame::Hello(theirs)) if theirs.fingerprint.first_difference(&self.hello.fingerprint).is_none() => Err(protocol(format!(
                "the process listening there says it is process {}, not {p}: check -p and the hostfiles",
                theirs.process
            ))),
            // Another layout or config: let the coordinator name the difference.
            Ok(Frame::Hello(theirs)) => Ok(theirs),
            Ok(Frame::Abort { reason }) => {
                Err(ClusterError::PeerGaveUp { process: p, address: self.address.clone(), reason })
            }
            Ok(Frame::Stop { signal }) => Err(ClusterError::PeerStopped { process: p, address: self.address.clone(), signal }),
            Ok(Frame::Bye) => Err(protocol(format!("process {p} said goodbye before hello"))),
            Err(FrameError::Foreign(detail)) => Err(protocol(format!("process {p} {detail}"))),
            Err(FrameError::Closed) => Err(protocol(format!("process {p} closed the connection without a handshake"))),
            Err(FrameError::Io(e)) => Err(protocol(format!(
                "process {p} accepted the connection but sent no handshake within {} s ({e}; a tweetoscope of another version, or another program?)",
                HELLO_TIMEOUT.as_secs()
            ))),
        }
    }
}

/// One TCP connection to a `host:port`, trying each of its resolved addresses.
fn connect_once(address: &str) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the name resolves to no address");
    for a in address.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, DIAL_TIMEOUT) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The connections gathered so far.
struct Gathering {
    /// This process's index.
    me: usize,
    /// Every process's hostfile line.
    addresses: Vec<String>,
    /// Data connections by process.
    data: Vec<Option<TcpStream>>,
    /// Control connections by process.
    control: Vec<Option<TcpStream>>,
    /// Hellos by process.
    hellos: Vec<Option<Hello>>,
    /// For the control connections' readers.
    tx: Sender<Event>,
}

impl Gathering {
    /// Nothing gathered yet.
    fn new(me: usize, addresses: Vec<String>, tx: Sender<Event>) -> Self {
        let n = addresses.len();
        Self {
            me,
            addresses,
            data: (0..n).map(|_| None).collect(),
            control: (0..n).map(|_| None).collect(),
            hellos: vec![None; n],
            tx,
        }
    }

    /// A peer's address for messages.
    fn address(&self, p: usize) -> String {
        self.addresses.get(p).cloned().unwrap_or_else(|| "not in this hostfile".into())
    }

    /// The first peer still missing a connection.
    fn first_missing(&self) -> Option<usize> {
        (0..self.addresses.len()).find(|&p| p != self.me && (self.data[p].is_none() || self.control[p].is_none()))
    }

    /// Waits for every connection, for the deadline, or for a reason to stop.
    #[allow(clippy::too_many_arguments)]
    fn gather(
        &mut self,
        events: &Receiver<Event>,
        mine: &Hello,
        deadline: Instant,
        shutdown: &AtomicBool,
        signal: &dyn Fn() -> i32,
        cluster: &Cluster,
        last_errors: &Mutex<Vec<String>>,
    ) -> Result<(), ClusterError> {
        loop {
            let Some(missing) = self.first_missing() else { return Ok(()) };
            if shutdown.load(Ordering::Relaxed) {
                return Err(ClusterError::Interrupted { signal: signal() });
            }
            if Instant::now() >= deadline {
                let last = last_errors.lock().map(|e| e[missing].clone()).unwrap_or_default();
                return Err(ClusterError::Missing {
                    process: missing,
                    address: self.address(missing),
                    what: if missing < self.me { "did not answer" } else { "did not connect" },
                    seconds: cluster.connect_timeout().as_secs(),
                    detail: if last.is_empty() { String::new() } else { format!("; last attempt: {last}") },
                });
            }
            match events.recv_timeout(TICK) {
                Ok(event) => self.handle(event, mine)?,
                Err(RecvTimeoutError::Timeout) => {}
                // Cannot happen (`self.tx` is a sender); never spin if it did.
                Err(RecvTimeoutError::Disconnected) => std::thread::sleep(TICK),
            }
        }
    }

    /// One start-up event.
    fn handle(&mut self, event: Event, mine: &Hello) -> Result<(), ClusterError> {
        match event {
            Event::Connected { role, stream, hello } => self.admit(role, stream, hello, mine),
            Event::Failed(e) => Err(e),
            Event::Frame { process, frame: Frame::Stop { signal } } => {
                Err(ClusterError::PeerStopped { process, address: self.address(process), signal })
            }
            Event::Frame { process, frame: Frame::Abort { reason } } => {
                Err(ClusterError::PeerGaveUp { process, address: self.address(process), reason })
            }
            Event::Frame { process, frame } => Err(ClusterError::Protocol {
                address: self.address(process),
                detail: format!("process {process} sent {frame:?} during start-up"),
            }),
            Event::Closed { process } => Err(ClusterError::PeerClosed { process, address: self.address(process) }),
        }
    }

    /// Checks a connected peer's hello and keeps its connection.
    fn admit(&mut self, role: Role, stream: TcpStream, hello: Hello, mine: &Hello) -> Result<(), ClusterError> {
        let p = hello.process;
        let peer = stream.peer_addr().map_or_else(|_| "?".into(), |a| a.to_string());
        if let Some(d) = mine.fingerprint.first_difference(&hello.fingerprint) {
            return Err(ClusterError::Disagree { process: p, address: self.address(p), difference: Box::new(d) });
        }
        if p == self.me || p >= self.addresses.len() {
            let detail =
                format!("a peer says it is process {p}, and this is process {} of {}: check -p", self.me, self.addresses.len());
            return Err(ClusterError::Protocol { address: peer, detail });
        }
        let slot = match role {
            Role::Data => &mut self.data[p],
            Role::Control => &mut self.control[p],
        };
        if slot.is_some() {
            let detail = format!("two processes say they are process {p}: check -p");
            return Err(ClusterError::Protocol { address: peer, detail });
        }
        if role == Role::Control {
            let reader =
                stream.try_clone().map_err(|e| ClusterError::Protocol { address: peer.clone(), detail: e.to_string() })?;
            let tx = self.tx.clone();
            std::thread::Builder::new()
                .name(format!("cluster-control-{p}"))
                .spawn(move || read_control(p, reader, &tx))
                .map_err(|e| spawn_failed(&peer, &e))?;
        }
        *slot = Some(stream);
        self.hellos[p] = Some(hello);
        Ok(())
    }
}

/// Forwards a control connection's frames until it ends (the end included).
fn read_control(process: usize, mut stream: TcpStream, tx: &Sender<Event>) {
    loop {
        let event = match read_frame(&mut stream) {
            Ok(frame) => Event::Frame { process, frame },
            Err(_) => Event::Closed { process },
        };
        let closed = matches!(event, Event::Closed { .. });
        if tx.send(event).is_err() || closed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_foreign_bytes_are_named_not_misread() {
        let mut bytes = Vec::new();
        write_frame(&mut bytes, &Frame::Stop { signal: 15 }).unwrap();
        write_frame(&mut bytes, &Frame::Bye).unwrap();
        let mut r = &bytes[..];
        assert!(matches!(read_frame(&mut r), Ok(Frame::Stop { signal: 15 })));
        assert!(matches!(read_frame(&mut r), Ok(Frame::Bye)));
        assert!(matches!(read_frame(&mut r), Err(FrameError::Closed)));
        // What an older tweetoscope's timely sends first: its index as a big-endian u64.
        let mut old = &[0u8, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0][..];
        assert!(matches!(read_frame(&mut old), Err(FrameError::Foreign(m)) if m.contains("not a tweetoscope")));
        let mut other = magic().to_vec();
        other[7] += 1;
        other.extend_from_slice(&[0, 0, 0, 2, b'{', b'}']);
        assert!(matches!(read_frame(&mut &other[..]), Err(FrameError::Foreign(m)) if m.contains("protocol")));
        let mut huge = magic().to_vec();
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(read_frame(&mut &huge[..]), Err(FrameError::Foreign(m)) if m.contains("frame")));
        assert!(matches!(read_frame(&mut &bytes[..5]), Err(FrameError::Io(_))));
    }
}
