//! Per-cascade alerts pushed straight to Alertmanager (`tweetoscope --alertmanager URL`).
//!
//! Every prediction above the alert threshold (the ones [`crate::observe::live`] lists as alerts)
//! becomes one `PopularCascade` alert, POSTed to Alertmanager's API v2
//! (`POST {URL}/api/v2/alerts`, a JSON list of alerts), as the course's dashboard did. The
//! Prometheus rule `PopularCascades` (ops/prometheus/rules/tweetoscope.yml) is the aggregate
//! per window, from the bounded `tweetoscope_alerts_total{window}` counter.
//!
//! # Why the cascade id is a label here (and never a metric label)
//!
//! Alertmanager identifies an alert by its label set: two pushes with the same labels are the
//! same alert, and the later one overwrites the earlier one's annotations. With the cascade
//! id only in the annotations, every popular cascade of a window would collapse into a
//! single alert showing the last cascade pushed; the others would never be notified. So the
//! labels are `{alertname="PopularCascade", severity, window, cascade}` (severity `warning`
//! or `critical`, `Prediction::alert_severity`: the predicate of the alerts topic), and the
//! annotations repeat the cascade with the details (`cascade`, `predicted`, `events`,
//! `event_time`, `summary`, `tweet`).
//!
//! The cardinality rule of the metrics (never a cascade id as a Prometheus label) is about
//! time series, which a TSDB keeps and indexes for the retention period. An Alertmanager
//! alert is not a series: it is an in-memory entry that resolves at its `endsAt` (one hour
//! after it was raised, [`DEFAULT_TTL`]) and is garbage-collected after, so the number held
//! is bounded by the alert rate times one hour. Notifications stay bounded too: the shipped
//! route groups `PopularCascade` by `[alertname, window]`, so a burst of popular cascades is
//! one notification per window listing them, not one per cascade.
//!
//! # Delivery: the alerts topic's guarantee
//!
//! Alerts come from a dataflow sink (`dataflow::sink::push_alerts`, on worker 0 of process
//! 0). In exactly-once mode the pusher is [gated](Pusher::gate) on the output frontier
//! committed to Kafka: an alert made at event time `t` is held until every output before
//! some `B > t` is committed. After each POST the pusher records, beside the checkpoints,
//! the event time P before which every alert was pushed (P ≤ B), and the (cascade, window)
//! of the alerts it pushed at or after P; a restart recomputes from a checkpoint at or before
//! B and pushes the alerts from P on, but those. So a kill -9 and restart pushes every alert
//! of the alerts topic once: never twice, and none lost (what was committed but not pushed
//! is at or after P). An alert that failed twice is not retried after a restart either.
//!
//! # Never blocking the dataflow
//!
//! [`Pusher::push`] only `try_send`s onto a bounded queue ([`QUEUE_CAPACITY`]); a background
//! thread drains it in batches and POSTs them with short timeouts. When Alertmanager is slow
//! or down the queue fills and further alerts are dropped and counted ([`Stats`]); a failed
//! POST is retried once, then counted and logged (a warning when pushing starts failing, an
//! info line when it recovers). Nothing here panics or waits on a timely worker's thread.
//!
//! The client is `ureq` (blocking HTTP/1.1, every request bounded by the timeout), built
//! without TLS (`http://HOST:PORT[/PATH]`): Alertmanager's API is normally reached inside the
//! cluster or on loopback. For HTTPS, put a TLS-terminating proxy in front of it. A server
//! that does not speak HTTP (say a Kafka port) gets an error naming the URL and asking
//! whether it is Alertmanager.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use serde_json::json;

use crate::records::{Prediction, Severity};
use crate::Time;

/// The `alertname` label of the per-cascade alerts.
pub const ALERT_NAME: &str = "PopularCascade";
/// Alerts waiting to be sent at most; more are dropped (and counted).
pub const QUEUE_CAPACITY: usize = 4096;
/// Alerts per POST at most.
pub const MAX_BATCH: usize = 100;
/// How long an alert stays active in Alertmanager (its `endsAt` minus its `startsAt`).
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// Characters of the tweet's text kept in the `tweet` annotation.
const TWEET_CHARS: usize = 200;
/// Bytes of a response read at most (Alertmanager answers with an empty body or an error).
const MAX_RESPONSE: u64 = 64 * 1024;

/// Errors of the client.
#[derive(Debug, thiserror::Error)]
pub enum AlertmanagerError {
    /// The URL is not `http://HOST[:PORT][/PATH]`.
    #[error("alertmanager URL {url:?}: {why} (expected http://HOST:PORT, e.g. http://127.0.0.1:9093)")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Connecting, writing or reading failed.
    #[error("alertmanager {addr}")]
    Io {
        /// `host:port`.
        addr: String,
        /// The error.
        source: std::io::Error,
    },
    /// The server answered with a non-2xx status.
    #[error("{url} answered {status}{}{}", if body.is_empty() { "" } else { ": " }, body)]
    Status {
        /// The URL posted to.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The start of the body (Alertmanager explains a 400 there).
        body: String,
    },
    /// The server does not speak HTTP, or hung up without answering.
    #[error(
        "{url} did not answer like Alertmanager ({detail}): check that --alertmanager names Alertmanager's \
         address (its default port, 9093, is also the Kafka controller's in some setups)"
    )]
    NotHttp {
        /// The URL posted to.
        url: String,
        /// What the client saw.
        detail: String,
    },
    /// Another HTTP client failure.
    #[error("{url}: {detail}")]
    Http {
        /// The URL posted to.
        url: String,
        /// What the client said.
        detail: String,
    },
}

/// Where alerts are POSTed, parsed from the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port (80 when the URL has none).
    pub port: u16,
    /// `host:port` as written in the URL (the `Host` header).
    pub authority: String,
    /// The request path: the URL's path without its trailing `/`, then `/api/v2/alerts`.
    pub path: String,
}

impl Endpoint {
    /// The URL alerts are POSTed to.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.authority, self.path)
    }

    /// Parses `http://HOST[:PORT][/PATH]`.
    pub fn parse(url: &str) -> Result<Self, AlertmanagerError> {
        let bad = |why| AlertmanagerError::Url { url: url.to_owned(), why };
        let rest = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => {
                return Err(bad("https is not supported (put a TLS-terminating proxy in front, or use http)"))
            }
            _ => return Err(bad("the scheme must be http://")),
        };
        let (authority, base) = match rest.find(['/', '?', '#']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if base.contains(['?', '#']) {
            return Err(bad("no query or fragment allowed"));
        }
        if authority.contains('@') {
            return Err(bad("credentials in the URL are not supported"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed [ in the host"))?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| bad("junk after the IPv6 host"))?),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            None => 80,
            Some(p) => p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(|| bad("the port is not a number in 1..=65535"))?,
        };
        Ok(Self {
            host: host.to_owned(),
            port,
            authority: authority.to_owned(),
            path: format!("{}/api/v2/alerts", base.trim_end_matches('/')),
        })
    }
}

/// One popular cascade at one window, as pushed.
#[derive(Debug, Clone, PartialEq)]
pub struct PopularCascade {
    /// Cascade id.
    pub cascade: String,
    /// Observation window (s).
    pub window: Time,
    /// Events seen by the window.
    pub events: usize,
    /// Predicted final size (corrected).
    pub predicted: f64,
    /// Event time at which the prediction was made.
    pub event_time: Time,
    /// The original tweet's text (truncated in the annotation).
    pub tweet: String,
    /// Wall-clock time the alert was raised (its `startsAt`).
    pub raised: SystemTime,
    /// Its severity (a label: Alertmanager routes on it).
    pub severity: Severity,
}

impl PopularCascade {
    /// The alert for a prediction made at event time `time`, raised now.
    pub fn from_prediction(time: Time, p: &Prediction, severity: Severity) -> Self {
        Self {
            cascade: p.cascade.to_string(),
            window: p.t_obs,
            events: p.n,
            predicted: p.n_pred,
            event_time: time,
            tweet: p.msg.clone(),
            raised: SystemTime::now(),
            severity,
        }
    }

    /// The alert in API v2's JSON (`postableAlert`), active from `raised` for `ttl`.
    pub fn to_json(&self, ttl: Duration) -> serde_json::Value {
        let predicted = format!("{:.0}", self.predicted);
        let tweet: String = self.tweet.chars().take(TWEET_CHARS).collect();
        json!({
            "labels": {
                "alertname": ALERT_NAME,
                "severity": self.severity.as_str(),
                "window": self.window.to_string(),
                "cascade": self.cascade,
            },
            "annotations": {
                "cascade": self.cascade,
                "predicted": predicted,
                "events": self.events.to_string(),
                "event_time": self.event_time.to_string(),
                "summary": format!(
                    "Cascade {} is predicted to reach {} retweets ({} seen by the {} s window)",
                    self.cascade, predicted, self.events, self.window
                ),
                "tweet": tweet,
            },
            "startsAt": rfc3339(self.raised),
            "endsAt": rfc3339(self.raised + ttl),
        })
    }
}

/// Counters of a pusher (all alerts, not requests).
#[derive(Debug, Default)]
pub struct Stats {
    /// Accepted onto the queue.
    pub queued: AtomicU64,
    /// Acknowledged by Alertmanager (2xx).
    pub sent: AtomicU64,
    /// In a POST that failed twice (Alertmanager down, slow, or refusing them).
    pub failed: AtomicU64,
    /// Not queued because the queue was full.
    pub dropped: AtomicU64,
}

/// A copy of [`Stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// Accepted onto the queue.
    pub queued: u64,
    /// Acknowledged by Alertmanager.
    pub sent: u64,
    /// In a failed POST.
    pub failed: u64,
    /// Dropped: the queue was full.
    pub dropped: u64,
}

impl Stats {
    fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            queued: self.queued.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

/// Settings of a pusher.
#[derive(Debug, Clone)]
pub struct PusherOptions {
    /// Queue capacity (alerts).
    pub capacity: usize,
    /// Connect, read and write timeout of one POST.
    pub timeout: Duration,
    /// Alert lifetime in Alertmanager.
    pub ttl: Duration,
    /// Pause before the one retry of a failed POST.
    pub retry_after: Duration,
}

impl Default for PusherOptions {
    fn default() -> Self {
        Self {
            capacity: QUEUE_CAPACITY,
            timeout: Duration::from_secs(5),
            ttl: DEFAULT_TTL,
            retry_after: Duration::from_millis(500),
        }
    }
}

enum Message {
    Alert(Box<PopularCascade>),
    /// Every alert before this event time has been queued.
    Progress(Time),
    /// Answered once everything queued before it was attempted.
    Flush(SyncSender<()>),
}

/// Pushes alerts from a background thread; see the module documentation.
pub struct Pusher {
    endpoint: Endpoint,
    queue: Option<SyncSender<Message>>,
    stats: Arc<Stats>,
    thread: Option<JoinHandle<()>>,
    /// Exactly-once mode: the committed output frontier alerts wait for.
    gate: Arc<OnceLock<Gate>>,
    /// Exactly-once mode: (cascade, window) pushed by the previous run at or after the time
    /// this run pushes from.
    skip: OnceLock<std::collections::HashSet<(String, Time)>>,
}

/// Exactly-once mode's state of the pusher.
#[derive(Debug)]
struct Gate {
    /// The output frontier committed to Kafka.
    committed: Arc<AtomicU64>,
    /// Where the pushed frontier P is recorded (a file beside the checkpoints).
    record: Option<std::path::PathBuf>,
}

impl Pusher {
    /// Parses the URL and starts the background thread (no request is made yet).
    pub fn start(url: &str, options: PusherOptions) -> Result<Self, AlertmanagerError> {
        let endpoint = Endpoint::parse(url)?;
        let (queue, rx) = sync_channel(options.capacity.max(1));
        let stats = Arc::new(Stats::default());
        let gate = Arc::new(OnceLock::new());
        let agent = client(options.timeout);
        let sender = Sender {
            endpoint: endpoint.clone(),
            agent,
            options,
            stats: stats.clone(),
            failing: false,
            gate: gate.clone(),
            held: Vec::new(),
            handed: 0,
            recorded: None,
            pushed: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("alertmanager".into())
            .spawn(move || sender.run(rx))
            .map_err(|source| AlertmanagerError::Io { addr: endpoint.authority.clone(), source })?;
        Ok(Self { endpoint, queue: Some(queue), stats, thread: Some(thread), gate, skip: OnceLock::new() })
    }

    /// Where alerts go.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Queues an alert; never blocks. False when the queue was full (the alert is dropped and
    /// counted).
    pub fn push(&self, alert: PopularCascade) -> bool {
        let Some(queue) = &self.queue else { return false };
        match queue.try_send(Message::Alert(Box::new(alert))) {
            Ok(()) => {
                self.stats.queued.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                if self.stats.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!(alertmanager = %self.endpoint.authority, "alert queue full: popular-cascade alerts are being dropped");
                }
                false
            }
        }
    }

    /// Waits (at most `timeout`) until every alert queued before the call was sent or failed.
    /// True when that happened in time.
    pub fn flush(&self, timeout: Duration) -> bool {
        let Some(queue) = &self.queue else { return true };
        let deadline = Instant::now() + timeout;
        let (done, wait) = sync_channel(1);
        let mut message = Message::Flush(done);
        loop {
            match queue.try_send(message) {
                Ok(()) => break,
                Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                    message = m;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(_) => return false,
            }
        }
        wait.recv_timeout(deadline.saturating_duration_since(Instant::now())).is_ok()
    }

    /// The counters so far.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }
}

impl Drop for Pusher {
    /// Sends what is queued (a few seconds at most), then stops the thread.
    fn drop(&mut self) {
        self.flush(Duration::from_secs(5));
        self.queue.take();
        if let Some(thread) = self.thread.take() {
            if thread.is_finished() {
                let _ = thread.join();
            }
            // Otherwise it is stuck in a POST: it ends by its own timeout, unjoined.
        }
    }
}

/// The background thread's side.
struct Sender {
    endpoint: Endpoint,
    /// The HTTP client (keeps a connection open between batches when the server allows).
    agent: ureq::Agent,
    options: PusherOptions,
    stats: Arc<Stats>,
    /// Whether the last POST failed (to log transitions, not every failure).
    failing: bool,
    /// The committed output frontier, in exactly-once mode.
    gate: Arc<OnceLock<Gate>>,
    /// Alerts waiting for their output to be committed.
    held: Vec<PopularCascade>,
    /// Every alert before this event time has been queued.
    handed: Time,
    /// What was last recorded: the pushed frontier and how many alerts after it.
    recorded: Option<(Time, usize)>,
    /// Alerts pushed at or after the last pushed frontier: (cascade, window, event time).
    pushed: Vec<(String, Time, Time)>,
}

impl Sender {
    fn run(mut self, rx: Receiver<Message>) {
        let mut batch: Vec<PopularCascade> = Vec::with_capacity(MAX_BATCH);
        let mut flushes: Vec<SyncSender<()>> = Vec::new();
        loop {
            // Block for the first message (polling while alerts wait for a commit), then
            // take what else is already waiting.
            let first = if self.held.is_empty() {
                rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
            } else {
                rx.recv_timeout(Duration::from_millis(50))
            };
            match first {
                Ok(m) => self.take(m, &mut batch, &mut flushes),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.release(&mut batch);
                    batch.chunks(MAX_BATCH).for_each(|chunk| self.send(chunk));
                    self.record();
                    return;
                }
            }
            while batch.len() < MAX_BATCH {
                match rx.recv_timeout(Duration::ZERO) {
                    Ok(m) => self.take(m, &mut batch, &mut flushes),
                    Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            self.release(&mut batch);
            batch.chunks(MAX_BATCH).for_each(|chunk| self.send(chunk));
            batch.clear();
            self.record();
            for done in flushes.drain(..) {
                let _ = done.try_send(());
            }
        }
    }

    fn take(&mut self, m: Message, batch: &mut Vec<PopularCascade>, flushes: &mut Vec<SyncSender<()>>) {
        match m {
            Message::Alert(a) if self.gate.get().is_some() => self.held.push(*a),
            Message::Alert(a) => batch.push(*a),
            Message::Progress(t) => self.handed = self.handed.max(t),
            Message::Flush(done) => flushes.push(done),
        }
    }

    /// Records the pushed frontier P (every alert before it was pushed, or failed for good):
    /// the committed frontier, the sink's progress and the oldest held alert bound it.
    fn record(&mut self) {
        let Some(Gate { committed, record: Some(path) }) = self.gate.get() else { return };
        let held = self.held.iter().map(|a| a.event_time).min().unwrap_or(Time::MAX);
        let frontier = committed.load(Ordering::Acquire).min(self.handed).min(held);
        self.pushed.retain(|(_, _, t)| *t >= frontier);
        let state = (frontier, self.pushed.len());
        if self.recorded.is_some_and(|r| r == state) {
            return;
        }
        let mut text = format!("{frontier}\n");
        for (cascade, window, _) in &self.pushed {
            text.push_str(&format!("{cascade} {window}\n"));
        }
        let tmp = path.with_extension("tmp");
        match std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path)) {
            Ok(()) => self.recorded = Some(state),
            Err(e) => tracing::warn!(error = %e, path = %path.display(), "recording the pushed alerts failed"),
        }
    }

    /// Moves the held alerts whose output is committed to `batch`.
    fn release(&mut self, batch: &mut Vec<PopularCascade>) {
        let Some(committed) = self.gate.get().map(|g| g.committed.load(Ordering::Acquire)) else { return };
        let mut i = 0;
        while i < self.held.len() {
            if self.held[i].event_time < committed {
                batch.push(self.held.remove(i));
            } else {
                i += 1;
            }
        }
    }

    fn send(&mut self, batch: &[PopularCascade]) {
        if self.gate.get().is_some() {
            // Recorded before the POST: a crash between the two loses these alerts rather than
            // pushing them twice after the restart (exactly once up to that instant).
            self.pushed.extend(batch.iter().map(|a| (a.cascade.clone(), a.window, a.event_time)));
            self.record();
        }
        let body = serde_json::Value::Array(batch.iter().map(|a| a.to_json(self.options.ttl)).collect()).to_string();
        let mut result = post_with(&self.agent, &self.endpoint, body.as_bytes());
        if result.is_err() {
            std::thread::sleep(self.options.retry_after);
            result = post_with(&self.agent, &self.endpoint, body.as_bytes());
        }
        let n = batch.len() as u64;
        match result {
            Ok(()) => {
                self.stats.sent.fetch_add(n, Ordering::Relaxed);
                if self.failing {
                    tracing::info!(alertmanager = %self.endpoint.authority, "pushing alerts works again");
                    self.failing = false;
                }
            }
            Err(e) => {
                let failed = self.stats.failed.fetch_add(n, Ordering::Relaxed) + n;
                if !self.failing {
                    tracing::warn!(alertmanager = %self.endpoint.authority, error = %crate::ErrorChain(&e), failed, "pushing alerts failed");
                    self.failing = true;
                } else {
                    tracing::debug!(error = %crate::ErrorChain(&e), failed, "pushing alerts still fails");
                }
            }
        }
    }
}

/// An HTTP client for [`post_with`]: every request bounded by `timeout` (connecting, sending,
/// answering), no redirects (Alertmanager never redirects its API), 4xx/5xx returned as
/// answers so that Alertmanager's explanation can be read.
pub fn client(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(format!("tweetoscope/{}", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// One `POST` of a JSON body with a fresh client; Ok on a 2xx answer.
pub fn post(endpoint: &Endpoint, body: &[u8], timeout: Duration) -> Result<(), AlertmanagerError> {
    post_with(&client(timeout), endpoint, body)
}

/// One `POST` of a JSON body; Ok on a 2xx answer.
pub fn post_with(agent: &ureq::Agent, endpoint: &Endpoint, body: &[u8]) -> Result<(), AlertmanagerError> {
    let url = endpoint.url();
    let mut answer = agent
        .post(&url)
        .header("Content-Type", "application/json")
        .header("Accept", "application/json")
        .send(body)
        .map_err(|e| AlertmanagerError::from_http(endpoint, e))?;
    let status = answer.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(());
    }
    // Alertmanager explains a 400 in the body; bounded, and best effort.
    let body = answer.body_mut().with_config().limit(MAX_RESPONSE).read_to_string().unwrap_or_default();
    Err(AlertmanagerError::Status { url, status, body: body.trim().chars().take(300).collect() })
}

impl AlertmanagerError {
    /// Names what went wrong with a request to `endpoint`: a server that is not speaking HTTP
    /// (or hangs up without answering) is most likely not Alertmanager at all.
    fn from_http(endpoint: &Endpoint, error: ureq::Error) -> Self {
        let url = endpoint.url();
        match error {
            ureq::Error::Protocol(e) => Self::NotHttp { url, detail: e.to_string() },
            ureq::Error::Io(e) if matches!(e.kind(), std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset) => {
                Self::NotHttp { url, detail: format!("the connection was closed without an answer ({e})") }
            }
            ureq::Error::Io(source) => Self::Io { addr: endpoint.authority.clone(), source },
            ureq::Error::Timeout(t) => Self::Io {
                addr: endpoint.authority.clone(),
                source: std::io::Error::new(std::io::ErrorKind::TimedOut, format!("timed out ({t})")),
            },
            ureq::Error::HostNotFound => Self::Io {
                addr: endpoint.authority.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "the host name does not resolve"),
            },
            other => Self::Http { url, detail: other.to_string() },
        }
    }
}

/// `2024-01-31T12:34:56.789Z` (UTC, milliseconds), as Alertmanager's API wants times.
pub fn rfc3339(t: SystemTime) -> String {
    // Times before 1970 or after 9999 do not occur for a wall clock; the epoch stands in.
    let ts = jiff::Timestamp::try_from(t).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    format!("{ts:.3}")
}

impl Pusher {
    /// Flushes what is queued (at most `timeout`) and logs whether every alert got through:
    /// the end of a run.
    pub fn finish(&self, timeout: Duration) {
        let flushed = self.flush(timeout);
        let s = self.stats();
        if !flushed || s.failed > 0 || s.dropped > 0 {
            tracing::warn!(
                alertmanager = %self.endpoint().authority, sent = s.sent, failed = s.failed, dropped = s.dropped,
                "not every popular-cascade alert reached Alertmanager"
            );
        } else {
            tracing::info!(sent = s.sent, "popular-cascade alerts pushed to Alertmanager");
        }
    }

    /// A prediction that raised an alert of `severity`, made at event time `time` (never
    /// blocks).
    pub fn popular_cascade(&self, time: Time, p: &Prediction, severity: Severity) {
        if self.skip.get().is_some_and(|s| s.contains(&(p.cascade.to_string(), p.t_obs))) {
            return;
        }
        self.push(PopularCascade::from_prediction(time, p, severity));
    }

    /// From now on, holds each alert until `committed` (the output frontier committed to
    /// Kafka) is past its event time, and records the pushed frontier in `record`:
    /// exactly-once mode. Set once, before the run. Returns the time from which alerts are to
    /// be pushed: the previous run's recorded pushed frontier (≤ `resume_from`, the output
    /// frontier it committed), else `resume_from`.
    pub fn gate(&self, committed: Arc<AtomicU64>, record: Option<std::path::PathBuf>, resume_from: Time) -> Time {
        let text = record.as_ref().and_then(|path| std::fs::read_to_string(path).ok()).unwrap_or_default();
        let mut lines = text.lines();
        let pushed = lines.next().and_then(|t| t.trim().parse::<Time>().ok());
        let skip = lines.filter_map(|l| l.split_once(' ')).filter_map(|(c, w)| Some((c.to_owned(), w.parse().ok()?))).collect();
        let _ = self.gate.set(Gate { committed, record });
        match pushed {
            Some(p) if p <= resume_from => {
                let _ = self.skip.set(skip);
                if p < resume_from {
                    tracing::info!(pushed = p, resume_from, "pushing the alerts committed but not pushed before the restart");
                }
                p
            }
            _ => resume_from,
        }
    }

    /// Every alert before event time `time` has been queued (never blocks; skipped when the
    /// queue is full: a later call says as much).
    pub fn progress(&self, time: Time) {
        if let Some(queue) = &self.queue {
            let _ = queue.try_send(Message::Progress(time));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;
    use std::time::UNIX_EPOCH;

    fn alert(cascade: &str, window: Time, predicted: f64) -> PopularCascade {
        PopularCascade {
            cascade: cascade.into(),
            window,
            events: 42,
            predicted,
            event_time: 1234,
            tweet: "hello".into(),
            raised: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            severity: Severity::Warning,
        }
    }

    /// A captured request: the request line, the headers (lower-cased names), the body.
    type Request = (String, Vec<(String, String)>, String);

    /// Serves `status` to every request on 127.0.0.1 and sends each request down the channel.
    fn server(status: &'static str) -> (String, mpsc::Receiver<Request>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let mut reader = std::io::BufReader::new(stream);
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut headers = Vec::new();
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    let h = h.trim_end();
                    if h.is_empty() {
                        break;
                    }
                    let (k, v) = h.split_once(':').unwrap();
                    headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
                }
                let len: usize = headers.iter().find(|(k, _)| k == "content-length").unwrap().1.parse().unwrap();
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                let mut stream = reader.into_inner();
                write!(stream, "HTTP/1.1 {status}\r\nContent-Length: 7\r\nConnection: close\r\n\r\nanswer\n").unwrap();
                let _ = tx.send((line.trim_end().to_owned(), headers, String::from_utf8(body).unwrap()));
            }
        });
        (url, rx)
    }

    fn quick() -> PusherOptions {
        PusherOptions { timeout: Duration::from_millis(500), retry_after: Duration::from_millis(10), ..PusherOptions::default() }
    }

    #[test]
    fn posts_alerts_in_the_api_v2_format() {
        let (url, requests) = server("200 OK");
        let pusher = Pusher::start(&url, quick()).unwrap();
        assert!(pusher.push(alert("36", 600, 442137.7)));
        assert!(pusher.push(alert("15", 1200, 330855.0)));
        assert!(pusher.flush(Duration::from_secs(10)));
        assert_eq!(pusher.stats(), StatsSnapshot { queued: 2, sent: 2, failed: 0, dropped: 0 });
        let mut alerts = Vec::new();
        while let Ok((line, headers, body)) = requests.try_recv() {
            assert_eq!(line, "POST /api/v2/alerts HTTP/1.1");
            assert!(headers.contains(&("content-type".into(), "application/json".into())), "{headers:?}");
            assert!(headers.iter().any(|(k, v)| k == "host" && url.ends_with(v.as_str())), "{headers:?}");
            let list: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
            alerts.extend(list);
        }
        assert_eq!(alerts.len(), 2);
        let a = &alerts[0];
        assert_eq!(a["labels"]["alertname"], "PopularCascade");
        assert_eq!(a["labels"]["severity"], "warning");
        assert_eq!(a["labels"]["window"], "600");
        assert_eq!(a["labels"]["cascade"], "36");
        assert_eq!(a["labels"].as_object().unwrap().len(), 4, "labels stay few and bounded per cascade");
        assert_eq!(a["annotations"]["cascade"], "36");
        assert_eq!(a["annotations"]["predicted"], "442138");
        assert_eq!(a["annotations"]["events"], "42");
        assert_eq!(a["annotations"]["tweet"], "hello");
        assert!(a["annotations"]["summary"].as_str().unwrap().contains("Cascade 36"));
        assert_eq!(a["startsAt"], "2023-11-14T22:13:20.000Z");
        assert_eq!(a["endsAt"], "2023-11-14T23:13:20.000Z");
        assert_eq!(alerts[1]["labels"]["window"], "1200");
    }

    #[test]
    fn keeps_the_url_path_prefix() {
        let (url, requests) = server("200 OK");
        let pusher = Pusher::start(&format!("{url}/alertmanager/"), quick()).unwrap();
        pusher.push(alert("1", 600, 200.0));
        assert!(pusher.flush(Duration::from_secs(10)));
        let (line, _, _) = requests.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(line, "POST /alertmanager/api/v2/alerts HTTP/1.1");
    }

    #[test]
    fn an_error_status_is_counted_as_failed() {
        let (url, requests) = server("400 Bad Request");
        let pusher = Pusher::start(&url, quick()).unwrap();
        pusher.push(alert("1", 600, 200.0));
        assert!(pusher.flush(Duration::from_secs(10)));
        assert_eq!(pusher.stats(), StatsSnapshot { queued: 1, sent: 0, failed: 1, dropped: 0 });
        // Tried twice.
        assert!(requests.recv_timeout(Duration::from_secs(5)).is_ok());
        assert!(requests.recv_timeout(Duration::from_secs(5)).is_ok());
        let e = post(&Endpoint::parse(&url).unwrap(), b"[]", Duration::from_secs(2)).unwrap_err();
        assert!(matches!(e, AlertmanagerError::Status { status: 400, ref body, .. } if body == "answer"), "{e}");
        assert!(e.to_string().contains(&format!("{url}/api/v2/alerts answered 400: answer")), "{e}");
    }

    #[test]
    fn a_down_alertmanager_is_counted_and_never_blocks() {
        // A port where nothing listens.
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let pusher = Pusher::start(&format!("http://127.0.0.1:{port}"), quick()).unwrap();
        let started = Instant::now();
        for i in 0..10 {
            pusher.push(alert(&i.to_string(), 600, 200.0));
        }
        assert!(started.elapsed() < Duration::from_millis(100), "push blocked");
        assert!(pusher.flush(Duration::from_secs(10)));
        let s = pusher.stats();
        assert_eq!((s.queued, s.sent, s.failed), (10, 0, 10), "{s:?}");
    }

    #[test]
    fn a_full_queue_drops_without_blocking() {
        // Accepts connections and never answers: every POST waits for its timeout.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for s in listener.incoming() {
                held.push(s);
            }
        });
        let options = PusherOptions { capacity: 4, timeout: Duration::from_millis(300), ..quick() };
        let pusher = Pusher::start(&url, options).unwrap();
        let started = Instant::now();
        for i in 0..1000 {
            pusher.push(alert(&i.to_string(), 600, 200.0));
        }
        assert!(started.elapsed() < Duration::from_millis(200), "push blocked: {:?}", started.elapsed());
        let s = pusher.stats();
        assert!(s.dropped >= 1000 - 4 - MAX_BATCH as u64, "{s:?}");
        assert_eq!(s.queued + s.dropped, 1000);
        drop(pusher);
    }

    /// What `--alertmanager` met when pointed at the Kafka controller on 9093: a server that
    /// reads the request and hangs up, or answers bytes that are not HTTP. Both are counted
    /// as failed, and the error names the URL and asks whether it is Alertmanager.
    #[test]
    fn a_server_that_is_not_alertmanager_is_named_as_such() {
        for reply in [&b""[..], &b"\x00\x00\x00\x12\x00\x00\x00\x01garbage"[..]] {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(mut stream) = stream else { continue };
                    let mut buf = [0u8; 4096];
                    let _ = stream.read(&mut buf);
                    let _ = stream.write_all(reply);
                }
            });
            let e = post(&Endpoint::parse(&url).unwrap(), b"[]", Duration::from_secs(2)).unwrap_err();
            let message = e.to_string();
            assert!(matches!(e, AlertmanagerError::NotHttp { .. }), "{reply:?}: {e:?}");
            assert!(message.contains(&format!("{url}/api/v2/alerts")) && message.contains("Alertmanager"), "{message}");
            let pusher = Pusher::start(&url, quick()).unwrap();
            pusher.push(alert("1", 600, 200.0));
            assert!(pusher.flush(Duration::from_secs(10)));
            assert_eq!(pusher.stats().failed, 1);
        }
    }

    #[test]
    fn parses_urls() {
        let e = Endpoint::parse("http://127.0.0.1:9093").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.authority.as_str(), e.path.as_str()),
            ("127.0.0.1", 9093, "127.0.0.1:9093", "/api/v2/alerts")
        );
        let e = Endpoint::parse("HTTP://alertmanager.monitoring/am/").unwrap();
        assert_eq!((e.host.as_str(), e.port, e.path.as_str()), ("alertmanager.monitoring", 80, "/am/api/v2/alerts"));
        let e = Endpoint::parse("http://[::1]:9093/").unwrap();
        assert_eq!((e.host.as_str(), e.port, e.authority.as_str()), ("::1", 9093, "[::1]:9093"));
        for bad in [
            "https://x:9093",
            "127.0.0.1:9093",
            "http://:9093",
            "http://x:0",
            "http://x:99999",
            "http://x:port",
            "http://u:p@x:9093",
            "http://x:9093/?a=b",
            "http://[::1",
        ] {
            assert!(matches!(Endpoint::parse(bad), Err(AlertmanagerError::Url { .. })), "{bad}");
        }
    }

    #[test]
    fn formats_rfc3339_in_utc() {
        let at = |s: u64, ms: u64| rfc3339(UNIX_EPOCH + Duration::from_secs(s) + Duration::from_millis(ms));
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(at(1_709_251_199, 999), "2024-02-29T23:59:59.999Z");
        assert_eq!(at(4_102_444_800, 0), "2100-01-01T00:00:00.000Z");
    }
}
