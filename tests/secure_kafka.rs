//! Kafka over TLS and SASL, against the real broker's secured listeners: `scripts/kafka start`
//! opens SASL_SSL (SCRAM-SHA-512, SCRAM-SHA-256, PLAIN) and mutual-TLS listeners beside the
//! plaintext one, with a CA, certificates and a random password generated at first start
//! (`scripts/test` starts it). The same topics are reachable through every listener, so a
//! run over TLS is compared record for record with a plaintext run of the same topic.
//! Every wait is bounded; every test uses fresh, uniquely prefixed topics.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::kafka::*;
use common::*;

/// A unique topic prefix (the topics are created by the test, over TLS or plaintext).
fn prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{test}_{}_{nanos}_", std::process::id())
}

/// The embedded pipeline settings plus a `[kafka]` table for the SASL_SSL listener, with NO
/// password in it (plus `extra` lines in that table).
fn secure_config(dir: &Path, name: &str, s: &Secure, extra: &str) -> PathBuf {
    let base = std::fs::read_to_string(root().join("dataflows/embedded.toml")).unwrap();
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "{base}\n[kafka]\nbrokers = \"{}\"\nsecurity_protocol = \"sasl_ssl\"\nsasl_mechanism = \"SCRAM-SHA-512\"\nsasl_username = \"{}\"\nssl_ca_location = \"{}\"\n{extra}",
            s.sasl_ssl,
            s.user,
            s.file("ca.crt")
        ),
    )
    .unwrap();
    path
}

/// `tweetoscope SUBCOMMAND --config CONFIG --topic-prefix PREFIX ARGS…` with no Kafka setting
/// from the test's environment.
fn with_config(config: &Path, prefix: &str, args: &[&str]) -> Command {
    let mut cmd = without_kafka_env(binary());
    cmd.arg(args[0]).arg("--config").arg(config).args(["--topic-prefix", prefix]).args(&args[1..]);
    cmd
}

/// Everything a command printed, kept to grep for the password.
#[derive(Default)]
struct Printed(Vec<(String, String)>);

impl Printed {
    fn keep(&mut self, what: &str, out: &Output) {
        self.0.push((format!("{what} (stdout)"), String::from_utf8_lossy(&out.stdout).into_owned()));
        self.0.push((format!("{what} (stderr)"), String::from_utf8_lossy(&out.stderr).into_owned()));
    }

    fn run_ok(&mut self, what: &str, cmd: &mut Command) -> Output {
        let out = run_ok(cmd);
        self.keep(what, &out);
        out
    }

    fn assert_without(&self, secret: &str) {
        assert!(self.0.len() > 4, "nothing was collected");
        for (what, text) in &self.0 {
            assert!(!text.contains(secret), "{what} shows the password:\n{}", tail(text.as_bytes()));
        }
    }
}

/// GET http://ADDR/PATH, bounded; None while the server is not up.
fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    Some(body)
}

#[test]
fn generate_backtest_and_live_over_sasl_ssl_equal_the_plaintext_run_and_never_show_the_password() {
    let s = Secure::get();
    let prefix = prefix("tls");
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let mut printed = Printed::default();
    // No password in the config file; each command gets it another way.
    let config = secure_config(dir, "secure.toml", &s, "");
    let config_with_file =
        secure_config(dir, "secure-file.toml", &s, &format!("sasl_password_file = \"{}\"\n", s.password_file()));

    // 1. topics and generate: the password only in TWEETOSCOPE_KAFKA_SASL_PASSWORD.
    printed.run_ok("topics", with_config(&config, &prefix, &["topics"]).env("TWEETOSCOPE_KAFKA_SASL_PASSWORD", &s.password));
    printed.run_ok(
        "generate",
        with_config(&config, &prefix, &["generate", "--speed", "max", "--sources", "3", "--input"])
            .arg(bundled_sample())
            .env("TWEETOSCOPE_KAFKA_SASL_PASSWORD", &s.password)
            .env("RUST_LOG", "debug"),
    );

    // 2. backtest over TLS (password file given as a flag) and over plaintext: the same records.
    printed.run_ok(
        "backtest over TLS",
        with_config(
            &config,
            &prefix,
            &["backtest", "--metrics-addr", "off", "--sasl-password-file", &s.password_file(), "--out"],
        )
        .arg(dir.join("tls"))
        .arg("--summary")
        .arg(dir.join("tls.json"))
        .env("RUST_LOG", "debug"),
    );
    run_ok(tweetoscope(&prefix, &["backtest", "--metrics-addr", "off", "--out"]).arg(dir.join("plain")));
    assert_same_outputs(&dir.join("plain"), &dir.join("tls"));
    let summary = std::fs::read_to_string(dir.join("tls.json")).unwrap();
    printed.0.push(("the backtest's --summary".into(), summary));

    // 3. live over TLS (password file in the config), until the input is idle: the output
    //    topics, read over TLS, hold the plaintext backtest's records. Its page is fetched
    //    while it runs.
    let addr = format!("127.0.0.1:{}", free_port());
    let mut live =
        with_config(&config_with_file, &prefix, &["live", "-w", "2", "--until-idle", "3", "--metrics-addr", &addr, "--summary"])
            .arg(dir.join("live.json"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut pages = Vec::new();
    while pages.len() < 3 && Instant::now() < deadline && live.try_wait().unwrap().is_none() {
        for path in ["/", "/api/state", "/metrics"] {
            if let Some(body) = http_get(&addr, path) {
                pages.push((format!("live page {path}"), body));
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = wait_bounded(live, Duration::from_secs(120), "live over TLS --until-idle 3");
    assert!(out.status.success(), "live over TLS failed:\n{}", tail(&out.stderr));
    printed.keep("live", &out);
    assert!(!pages.is_empty(), "the live page could not be fetched at {addr}");
    printed.0.extend(pages);
    printed.0.push(("the live --summary".into(), std::fs::read_to_string(dir.join("live.json")).unwrap()));
    assert_same_multisets(
        &file_multisets(&dir.join("plain")),
        &topic_multisets(&s.client(&prefix)),
        "live over TLS vs the plaintext backtest",
    );

    // 4. --help of every command, with the password in the environment.
    for command in ["topics", "generate", "backtest", "live", "latency"] {
        let out = run_ok(binary().args([command, "--help"]).env("TWEETOSCOPE_KAFKA_SASL_PASSWORD", &s.password));
        let help = String::from_utf8_lossy(&out.stdout);
        for flag in ["--config", "--brokers", "--security-protocol", "--sasl-password-file", "--ssl-ca-location"] {
            assert!(help.contains(flag), "`{command} --help` has no {flag}");
        }
        printed.keep(&format!("{command} --help"), &out);
    }
    printed.assert_without(&s.password);
}

#[test]
fn every_sasl_mechanism_and_mutual_tls_connect() {
    let s = Secure::get();
    let prefix = prefix("mech");
    let dir = tempfile::tempdir().unwrap();
    let config = secure_config(dir.path(), "secure.toml", &s, "");
    for mechanism in ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] {
        let out = run_ok(
            with_config(&config, &prefix, &["topics", "--sasl-mechanism", mechanism])
                .env("TWEETOSCOPE_KAFKA_SASL_PASSWORD_FILE", s.password_file()),
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("topics ready"), "{mechanism}");
    }
    // Mutual TLS: a client certificate signed by the CA the broker trusts.
    let mtls = dir.path().join("mtls.toml");
    std::fs::write(
        &mtls,
        format!(
            "[kafka]\nbrokers = \"{}\"\nsecurity_protocol = \"ssl\"\nssl_ca_location = \"{}\"\nssl_certificate_location = \"{}\"\nssl_key_location = \"{}\"\n",
            s.mtls,
            s.file("ca.crt"),
            s.file("client.crt"),
            s.file("client.key")
        ),
    )
    .unwrap();
    run_ok(&mut with_config(&mtls, &prefix, &["topics"]));
    let consumer = tweetoscope::io::kafka::KafkaConfig {
        topics: tweetoscope::io::kafka::TopicNames::default().with_prefix(&prefix),
        ..s.client(&prefix)
    };
    assert_eq!(topic_len(&consumer, &consumer.topics.tweets), 0, "the topics made over mutual TLS are seen over SASL_SSL");
}

/// Runs a command that the brokers must refuse: non-zero within 15 s, and exactly one line on
/// stderr, `error: …` naming `problem` and a fix, without the password.
fn refused(what: &str, cmd: Command, problem: &str, password: &str) {
    let line = rejected(what, cmd, problem, password);
    assert!(line.contains("fix:"), "{what}: the line names no fix:\n{line}");
}

/// Runs a command that must fail: non-zero within 15 s, exactly one line on stderr,
/// `error: …` naming `problem`, without the password. Returns the line.
fn rejected(what: &str, mut cmd: Command, problem: &str, password: &str) -> String {
    let started = Instant::now();
    let child = cmd.env("RUST_LOG", "warn").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let out = wait_bounded(child, Duration::from_secs(15), what);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{what}: exited 0:\n{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{what}: expected one line on stderr, got {}:\n{stderr}", lines.len());
    let line = lines[0];
    assert!(
        line.starts_with("error: ") && line.contains(problem),
        "{what}: the line does not name the problem ({problem:?}):\n{line}"
    );
    assert!(
        !stderr.contains(password) && !String::from_utf8_lossy(&out.stdout).contains(password),
        "{what}: the password was printed"
    );
    eprintln!("{what}: {:.1} s: {line}", started.elapsed().as_secs_f64());
    line.to_owned()
}

/// Forwards connections to ADDR from another loopback address (127.0.0.2), which the broker's
/// certificate does not name; stops when dropped.
struct Proxy {
    addr: String,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start(to: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.2:0").expect("binding 127.0.0.2 (loopback)");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let (to, flag) = (to.to_owned(), stop.clone());
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let Ok(server) = TcpStream::connect(&to) else { continue };
                client.set_nonblocking(false).unwrap();
                for (mut from, mut into) in [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut into);
                        let _ = into.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Self { addr, stop }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn refused_connections_fail_fast_with_one_line_that_names_the_fix() {
    let s = Secure::get();
    let prefix = prefix("refused");
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let config = secure_config(dir, "secure.toml", &s, "");
    let topics = |extra: &[&str]| {
        let mut args = vec!["topics"];
        args.extend_from_slice(extra);
        with_config(&config, &prefix, &args)
    };

    let mut cmd = topics(&[]);
    cmd.env("TWEETOSCOPE_KAFKA_SASL_PASSWORD", "not-the-password-0123456789");
    refused("wrong password", cmd, "wrong password or unknown user", &s.password);

    let mut cmd = topics(&["--sasl-username", "nobody"]);
    cmd.env("TWEETOSCOPE_KAFKA_SASL_PASSWORD", &s.password);
    refused("unknown user", cmd, "wrong password or unknown user", &s.password);

    // A CA of our own that did not sign the broker's certificate.
    let other_ca = dir.join("other-ca.crt");
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=not the cluster CA", "-keyout"])
        .arg(dir.join("other-ca.key"))
        .arg("-out")
        .arg(&other_ca)
        .output()
        .expect("openssl (scripts/test installs it)");
    assert!(made.status.success(), "openssl: {}", String::from_utf8_lossy(&made.stderr));
    let mut cmd = topics(&["--ssl-ca-location", other_ca.to_str().unwrap()]);
    cmd.env("TWEETOSCOPE_KAFKA_SASL_PASSWORD", &s.password);
    refused("untrusted CA", cmd, "not signed by the CA in ssl_ca_location", &s.password);

    // The right broker under a name its certificate does not list.
    let proxy = Proxy::start(&s.sasl_ssl);
    let mut cmd = topics(&["--brokers", &proxy.addr]);
    cmd.env("TWEETOSCOPE_KAFKA_SASL_PASSWORD", &s.password);
    refused("wrong host name", cmd, "not valid for the host name", &s.password);
    drop(proxy);

    // Mutual TLS without a client certificate.
    let no_cert = dir.join("no-cert.toml");
    std::fs::write(
        &no_cert,
        format!("[kafka]\nbrokers = \"{}\"\nsecurity_protocol = \"ssl\"\nssl_ca_location = \"{}\"\n", s.mtls, s.file("ca.crt")),
    )
    .unwrap();
    refused("no client certificate", with_config(&no_cert, &prefix, &["topics"]), "requires a client certificate", &s.password);

    // A plaintext client on the TLS listener, and a TLS client on the plaintext one.
    let plain = dir.join("plain-to-tls.toml");
    std::fs::write(&plain, format!("[kafka]\nbrokers = \"{}\"\nsecurity_protocol = \"plaintext\"\n", s.sasl_ssl)).unwrap();
    refused(
        "plaintext client to the TLS listener",
        with_config(&plain, &prefix, &["topics"]),
        "the listener speaks TLS",
        &s.password,
    );
    let tls = dir.join("tls-to-plain.toml");
    std::fs::write(
        &tls,
        format!(
            "[kafka]\nbrokers = \"{}\"\nsecurity_protocol = \"ssl\"\nssl_ca_location = \"{}\"\n",
            brokers(),
            s.file("ca.crt")
        ),
    )
    .unwrap();
    refused("TLS client to the plaintext listener", with_config(&tls, &prefix, &["topics"]), "does not speak TLS", &s.password);

    // Settings that cannot work are refused before any connection, naming the setting.
    rejected("no password anywhere", topics(&[]), "TWEETOSCOPE_KAFKA_SASL_PASSWORD", &s.password);
    let mut cmd = topics(&["--ssl-ca-location", "/nonexistent/ca.crt"]);
    cmd.env("TWEETOSCOPE_KAFKA_SASL_PASSWORD", &s.password);
    rejected("missing CA file", cmd, "/nonexistent/ca.crt", &s.password);
}
