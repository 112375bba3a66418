//! The Kubernetes entrypoint: a pod of the tweetoscope StatefulSet finds its timely process
//! index and renders its hostfile, then becomes `tweetoscope live -n N -p I --hostfile FILE …`.
//!
//! In a StatefulSet, pod `NAME-i` is process `i` (timely's `-p`), the replica count is `-n`,
//! and each peer is reached by its stable DNS name through the headless Service
//! (`NAME-j.SERVICE.NAMESPACE.svc.cluster.local`). A process listens on its own line and
//! dials the others, so every pod gets its own hostfile: its own line is `0.0.0.0:2101`
//! (listen on every interface), the others are the peers' names (TIMELY-NOTES §3).
//!
//! Everything is a pure function of the settings and the environment (passed in as a
//! look-up), except [`entrypoint`], which writes the file and `exec`s the command.

use std::path::PathBuf;

use clap::Args;

/// The port of the timely connections.
pub const TIMELY_PORT: u16 = 2101;
/// The cluster DNS domain (`--cluster-domain`).
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";
/// Environment: the pod's ordinal (downward API, label `apps.kubernetes.io/pod-index`).
pub const ENV_POD_INDEX: &str = "POD_INDEX";
/// Environment: the pod's name; `NAME-i` gives the StatefulSet name and the ordinal.
pub const ENV_HOSTNAME: &str = "HOSTNAME";
/// Environment: the StatefulSet's replica count (`-n`).
pub const ENV_REPLICAS: &str = "TWEETOSCOPE_REPLICAS";
/// Environment: the pod's namespace (downward API, `metadata.namespace`).
pub const ENV_NAMESPACE: &str = "POD_NAMESPACE";
/// Environment: the headless Service's name (default: the StatefulSet's name).
pub const ENV_SERVICE: &str = "TWEETOSCOPE_SERVICE";

/// `tweetoscope hostfile`: the options. Each one falls back on the environment, so that in
/// a pod `tweetoscope hostfile --out FILE -- live …` is all it takes.
#[derive(Debug, Clone, Default, Args)]
pub struct HostfileArgs {
    /// This pod's ordinal (else $POD_INDEX, else the suffix of $HOSTNAME `NAME-i`).
    #[arg(long)]
    pub ordinal: Option<usize>,
    /// Number of pods, timely's -n (else $TWEETOSCOPE_REPLICAS).
    #[arg(long)]
    pub replicas: Option<usize>,
    /// The StatefulSet's name (else $HOSTNAME without its `-i` suffix).
    #[arg(long)]
    pub statefulset: Option<String>,
    /// The headless Service (else $TWEETOSCOPE_SERVICE, else the StatefulSet's name).
    #[arg(long)]
    pub service: Option<String>,
    /// The namespace (else $POD_NAMESPACE).
    #[arg(long)]
    pub namespace: Option<String>,
    /// The cluster DNS domain.
    #[arg(long, default_value = DEFAULT_CLUSTER_DOMAIN)]
    pub cluster_domain: String,
    /// The timely port of every pod.
    #[arg(long, default_value_t = TIMELY_PORT)]
    pub port: u16,
    /// Where this pod listens (its own line is BIND:PORT).
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: String,
    /// Replace a rendered line FROM by TO (repeatable; every FROM must occur), e.g. to run
    /// the pods' hostfiles on one machine: `--resolve NAME-1.SVC.NS.svc.cluster.local:2101=127.0.0.1:4102`.
    #[arg(long, value_name = "FROM=TO")]
    pub resolve: Vec<String>,
    /// Write the hostfile here (else print it on stdout).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// After `--`: a command (`live`, `run` or `backtest` and its options) to exec with
    /// `-n N -p I --hostfile OUT` appended. Needs --out.
    #[arg(last = true, value_name = "COMMAND")]
    pub exec: Vec<String>,
}

/// A pod's place in the cluster, and what its hostfile says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodPlan {
    /// This pod's process index (`-p`).
    pub ordinal: usize,
    /// The number of processes (`-n`).
    pub replicas: usize,
    /// The hostfile's lines, in process order.
    pub lines: Vec<String>,
}

impl PodPlan {
    /// The hostfile's text: one line per process, each ending in a newline.
    pub fn hostfile(&self) -> String {
        self.lines.iter().map(|l| format!("{l}\n")).collect()
    }

    /// Timely's flags for this pod: `-n N -p I --hostfile FILE` (`-h` is help).
    pub fn timely_flags(&self, hostfile: &str) -> Vec<String> {
        vec!["-n".into(), self.replicas.to_string(), "-p".into(), self.ordinal.to_string(), "--hostfile".into(), hostfile.into()]
    }
}

/// Errors of the entrypoint.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum K8sError {
    /// A setting is missing or inconsistent.
    #[error("hostfile: {0}")]
    Invalid(String),
    /// The hostfile could not be written, or the command could not be started.
    #[error("hostfile: {0}")]
    Io(String),
}

fn invalid<T>(message: impl Into<String>) -> Result<T, K8sError> {
    Err(K8sError::Invalid(message.into()))
}

/// Splits a StatefulSet pod name `NAME-i` (or the first label of an FQDN) into the
/// StatefulSet's name and the ordinal.
pub fn split_pod_name(hostname: &str) -> Result<(String, usize), K8sError> {
    let name = hostname.trim().split('.').next().unwrap_or("");
    match name.rsplit_once('-') {
        Some((set, i)) if !set.is_empty() && !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()) => match i.parse() {
            Ok(ordinal) => Ok((set.to_owned(), ordinal)),
            Err(_) => invalid(format!("the ordinal of {hostname:?} is too large")),
        },
        _ => invalid(format!(
            "${ENV_HOSTNAME} {hostname:?} has no ordinal suffix: StatefulSet pods are named NAME-i (e.g. tweetoscope-0); \
             outside a StatefulSet pass --ordinal and --statefulset"
        )),
    }
}

/// The stable DNS name of pod `j`: `STATEFULSET-j.SERVICE.NAMESPACE.svc.DOMAIN`.
pub fn peer_host(statefulset: &str, j: usize, service: &str, namespace: &str, domain: &str) -> String {
    format!("{statefulset}-{j}.{service}.{namespace}.svc.{domain}")
}

/// Parses `FROM=TO`.
pub fn parse_resolve(spec: &str) -> Result<(String, String), K8sError> {
    match spec.split_once('=') {
        Some((from, to)) if !from.trim().is_empty() && !to.trim().is_empty() => Ok((from.trim().into(), to.trim().into())),
        _ => invalid(format!("--resolve {spec:?}: expected FROM=TO")),
    }
}

/// Settles every setting from the options, then the environment (`env(NAME)`), and renders
/// the hostfile. Pure: the environment is a function.
pub fn plan(args: &HostfileArgs, env: impl Fn(&str) -> Option<String>) -> Result<PodPlan, K8sError> {
    let from_env = |name: &str| env(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let pod_name = from_env(ENV_HOSTNAME).map(|h| split_pod_name(&h));
    let index = match from_env(ENV_POD_INDEX) {
        Some(v) => Some(v.parse::<usize>().or_else(|_| invalid(format!("${ENV_POD_INDEX}={v:?} is not an ordinal")))?),
        None => None,
    };
    let ordinal = match (args.ordinal, index, &pod_name) {
        (Some(o), _, _) => o,
        (None, Some(i), Some(Ok((_, h)))) if i != *h => {
            return invalid(format!("${ENV_POD_INDEX}={i} but ${ENV_HOSTNAME} says ordinal {h}"));
        }
        (None, Some(i), _) => i,
        (None, None, Some(Ok((_, h)))) => *h,
        (None, None, Some(Err(e))) => return Err(e.clone()),
        (None, None, None) => {
            return invalid(format!(
                "no ordinal: pass --ordinal, or set ${ENV_POD_INDEX}, or ${ENV_HOSTNAME} to the pod name NAME-i"
            ))
        }
    };
    let replicas = match args.replicas {
        Some(r) => r,
        None => match from_env(ENV_REPLICAS) {
            Some(v) => v.parse().or_else(|_| invalid(format!("${ENV_REPLICAS}={v:?} is not a count")))?,
            None => return invalid(format!("no replica count: pass --replicas or set ${ENV_REPLICAS}")),
        },
    };
    let statefulset = match (&args.statefulset, &pod_name) {
        (Some(s), _) => s.clone(),
        (None, Some(Ok((s, _)))) => s.clone(),
        (None, Some(Err(e))) => return Err(e.clone()),
        (None, None) => return invalid(format!("no StatefulSet name: pass --statefulset or set ${ENV_HOSTNAME}")),
    };
    let service = args.service.clone().or_else(|| from_env(ENV_SERVICE)).unwrap_or_else(|| statefulset.clone());
    let namespace = match args.namespace.clone().or_else(|| from_env(ENV_NAMESPACE)) {
        Some(n) => n,
        None => return invalid(format!("no namespace: pass --namespace or set ${ENV_NAMESPACE} (downward API)")),
    };
    let resolve = args.resolve.iter().map(|r| parse_resolve(r)).collect::<Result<Vec<_>, _>>()?;
    render(&Layout {
        statefulset: &statefulset,
        service: &service,
        namespace: &namespace,
        domain: &args.cluster_domain,
        port: args.port,
        bind: &args.bind,
        replicas,
        ordinal,
        resolve: &resolve,
    })
}

/// Everything the hostfile depends on.
#[derive(Debug, Clone)]
pub struct Layout<'a> {
    /// The StatefulSet's name.
    pub statefulset: &'a str,
    /// The headless Service's name.
    pub service: &'a str,
    /// The namespace.
    pub namespace: &'a str,
    /// The cluster DNS domain.
    pub domain: &'a str,
    /// The timely port.
    pub port: u16,
    /// This pod's listen address.
    pub bind: &'a str,
    /// `-n`.
    pub replicas: usize,
    /// `-p`.
    pub ordinal: usize,
    /// Line replacements (FROM, TO).
    pub resolve: &'a [(String, String)],
}

/// Renders the hostfile of pod `ordinal`: its own line `BIND:PORT`, the others
/// `STATEFULSET-j.SERVICE.NAMESPACE.svc.DOMAIN:PORT`, then the replacements.
pub fn render(layout: &Layout<'_>) -> Result<PodPlan, K8sError> {
    let Layout { statefulset, service, namespace, domain, port, bind, replicas, ordinal, resolve } = layout.clone();
    if replicas == 0 {
        return invalid("the replica count must be at least 1");
    }
    if ordinal >= replicas {
        return invalid(format!(
            "ordinal {ordinal} is not below the replica count {replicas} (was the StatefulSet scaled without updating {ENV_REPLICAS}?)"
        ));
    }
    for (what, value) in [("statefulset", statefulset), ("service", service), ("namespace", namespace), ("bind", bind)] {
        if value.is_empty() || value.contains(|c: char| c.is_whitespace() || c == ':' || c == '/') {
            return invalid(format!("{what} {value:?} is not a DNS name or address"));
        }
    }
    let mut lines: Vec<String> = (0..replicas)
        .map(|j| {
            if j == ordinal {
                format!("{bind}:{port}")
            } else {
                format!("{}:{port}", peer_host(statefulset, j, service, namespace, domain))
            }
        })
        .collect();
    for (from, to) in resolve {
        let mut hit = false;
        for line in lines.iter_mut().filter(|l| *l == from) {
            *line = to.clone();
            hit = true;
        }
        if !hit {
            return invalid(format!("--resolve {from}={to}: {from:?} is not a line of the hostfile"));
        }
    }
    Ok(PodPlan { ordinal, replicas, lines })
}

/// The commands that take timely's flags.
const EXECUTABLE: [&str; 3] = ["live", "run", "backtest"];

/// Checks the command to exec: a dataflow command, without timely's cluster flags (the
/// entrypoint supplies them).
pub fn check_exec(command: &[String]) -> Result<(), K8sError> {
    let Some(first) = command.first() else { return Ok(()) };
    if !EXECUTABLE.contains(&first.as_str()) {
        return invalid(format!("the command after -- must be one of {EXECUTABLE:?}, not {first:?}"));
    }
    for a in &command[1..] {
        let long = ["--processes", "--process", "--hostfile"].iter().any(|f| a == f || a.starts_with(&format!("{f}=")));
        let short = ["-n", "-p"].iter().any(|f| a.starts_with(f)) && !a.starts_with("--");
        if long || short {
            return invalid(format!("{a:?}: the entrypoint sets -n, -p and --hostfile itself"));
        }
    }
    Ok(())
}

/// The machine's host name, for when `$HOSTNAME` is not in the environment: shells set it
/// without exporting it, while Kubernetes makes it the pod's name in both places.
fn system_hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_owned()).filter(|h| !h.is_empty())
}

/// `tweetoscope hostfile`: renders the hostfile from the options and the process
/// environment, writes it (or prints it), and with a command after `--` execs this binary
/// with that command and `-n N -p I --hostfile OUT` (so that the dataflow is the pod's main process
/// and receives SIGTERM itself). Returns only when there is no command, or on error.
pub fn entrypoint(args: &HostfileArgs) -> Result<(), K8sError> {
    let plan =
        plan(args, |name| std::env::var(name).ok().or_else(|| if name == ENV_HOSTNAME { system_hostname() } else { None }))?;
    check_exec(&args.exec)?;
    let text = plan.hostfile();
    match &args.out {
        Some(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| K8sError::Io(format!("{}: {e}", dir.display())))?;
            }
            std::fs::write(path, &text).map_err(|e| K8sError::Io(format!("{}: {e}", path.display())))?;
        }
        None if !args.exec.is_empty() => return invalid("a command after -- needs --out FILE"),
        None => print!("{text}"),
    }
    let flags = plan.timely_flags(&args.out.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "-".into()));
    eprintln!("process {} of {}: {}", plan.ordinal, plan.replicas, flags.join(" "));
    if args.exec.is_empty() {
        return Ok(());
    }
    let exe = std::env::current_exe().map_err(|e| K8sError::Io(format!("locating this executable: {e}")))?;
    let mut command = std::process::Command::new(exe);
    command.args(&args.exec).args(&flags);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let e = command.exec(); // returns only on failure
        Err(K8sError::Io(format!("exec {:?}: {e}", args.exec)))
    }
    #[cfg(not(unix))]
    {
        let status = command.status().map_err(|e| K8sError::Io(format!("{:?}: {e}", args.exec)))?;
        std::process::exit(status.code().unwrap_or(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    fn pod_env(hostname: &str) -> impl Fn(&str) -> Option<String> {
        env(&[(ENV_HOSTNAME, hostname), (ENV_REPLICAS, "3"), (ENV_NAMESPACE, "prod")])
    }

    #[test]
    fn pod_names_split_into_statefulset_and_ordinal() {
        assert_eq!(split_pod_name("tweetoscope-0").unwrap(), ("tweetoscope".into(), 0));
        assert_eq!(split_pod_name("tweet-o-scope-12").unwrap(), ("tweet-o-scope".into(), 12));
        assert_eq!(split_pod_name("tweetoscope-2.tweetoscope.ns.svc.cluster.local").unwrap(), ("tweetoscope".into(), 2));
        for bad in ["tweetoscope", "tweetoscope-", "-3", "tweetoscope-x1", "tweetoscope-+1", "", "a-99999999999999999999999"] {
            assert!(split_pod_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn each_pod_listens_on_its_own_line_and_dials_the_others_by_name() {
        for ordinal in 0..3 {
            let plan = plan(
                &HostfileArgs {
                    cluster_domain: "cluster.local".into(),
                    port: 2101,
                    bind: "0.0.0.0".into(),
                    ..Default::default()
                },
                pod_env(&format!("tweetoscope-{ordinal}")),
            )
            .unwrap();
            assert_eq!((plan.ordinal, plan.replicas), (ordinal, 3));
            let expected: Vec<String> = (0..3)
                .map(|j| {
                    if j == ordinal {
                        "0.0.0.0:2101".to_string()
                    } else {
                        format!("tweetoscope-{j}.tweetoscope.prod.svc.cluster.local:2101")
                    }
                })
                .collect();
            assert_eq!(plan.lines, expected);
            assert_eq!(plan.hostfile(), expected.iter().map(|l| format!("{l}\n")).collect::<String>());
        }
    }

    fn defaults() -> HostfileArgs {
        HostfileArgs {
            cluster_domain: DEFAULT_CLUSTER_DOMAIN.into(),
            port: TIMELY_PORT,
            bind: "0.0.0.0".into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_downward_api_index_is_used_and_must_agree_with_the_hostname() {
        let p =
            plan(&defaults(), env(&[(ENV_POD_INDEX, "1"), (ENV_HOSTNAME, "tp-1"), (ENV_REPLICAS, "2"), (ENV_NAMESPACE, "n")]))
                .unwrap();
        assert_eq!(p.ordinal, 1);
        assert_eq!(p.lines, vec!["tp-0.tp.n.svc.cluster.local:2101", "0.0.0.0:2101"]);
        let e =
            plan(&defaults(), env(&[(ENV_POD_INDEX, "0"), (ENV_HOSTNAME, "tp-1"), (ENV_REPLICAS, "2"), (ENV_NAMESPACE, "n")]));
        assert!(matches!(e, Err(K8sError::Invalid(m)) if m.contains("POD_INDEX")));
        // The index alone is enough with an explicit StatefulSet name.
        let args = HostfileArgs { statefulset: Some("tp".into()), ..defaults() };
        let p = plan(&args, env(&[(ENV_POD_INDEX, "0"), (ENV_REPLICAS, "1"), (ENV_NAMESPACE, "n")])).unwrap();
        assert_eq!(p.lines, vec!["0.0.0.0:2101"]);
        assert!(plan(&args, env(&[(ENV_POD_INDEX, "x"), (ENV_REPLICAS, "1"), (ENV_NAMESPACE, "n")])).is_err());
    }

    #[test]
    fn options_override_the_environment() {
        let args = HostfileArgs {
            ordinal: Some(2),
            replicas: Some(4),
            statefulset: Some("s".into()),
            service: Some("h".into()),
            namespace: Some("x".into()),
            cluster_domain: "example.org".into(),
            port: 7000,
            bind: "10.0.0.1".into(),
            ..Default::default()
        };
        let p = plan(&args, pod_env("tweetoscope-0")).unwrap();
        assert_eq!((p.ordinal, p.replicas), (2, 4));
        assert_eq!(
            p.lines,
            vec!["s-0.h.x.svc.example.org:7000", "s-1.h.x.svc.example.org:7000", "10.0.0.1:7000", "s-3.h.x.svc.example.org:7000"]
        );
        // The service also comes from the environment.
        let p = plan(
            &defaults(),
            env(&[(ENV_HOSTNAME, "a-1"), (ENV_REPLICAS, "2"), (ENV_NAMESPACE, "n"), (ENV_SERVICE, "a-headless")]),
        )
        .unwrap();
        assert_eq!(p.lines[0], "a-0.a-headless.n.svc.cluster.local:2101");
    }

    /// A case: the arguments, the environment, and a phrase the error must contain.
    type ErrorCase = (HostfileArgs, Vec<(&'static str, &'static str)>, &'static str);

    #[test]
    fn missing_or_inconsistent_settings_are_errors() {
        let cases: Vec<ErrorCase> = vec![
            (defaults(), vec![(ENV_REPLICAS, "3"), (ENV_NAMESPACE, "n")], "no ordinal"),
            (defaults(), vec![(ENV_HOSTNAME, "t-0"), (ENV_NAMESPACE, "n")], "no replica count"),
            (defaults(), vec![(ENV_HOSTNAME, "t-0"), (ENV_REPLICAS, "3")], "no namespace"),
            (defaults(), vec![(ENV_HOSTNAME, "t-3"), (ENV_REPLICAS, "3"), (ENV_NAMESPACE, "n")], "not below the replica count"),
            (defaults(), vec![(ENV_HOSTNAME, "t-0"), (ENV_REPLICAS, "0"), (ENV_NAMESPACE, "n")], "at least 1"),
            (defaults(), vec![(ENV_HOSTNAME, "t-0"), (ENV_REPLICAS, "three"), (ENV_NAMESPACE, "n")], "not a count"),
            (
                defaults(),
                vec![(ENV_HOSTNAME, "laptop"), (ENV_REPLICAS, "3"), (ENV_NAMESPACE, "n")],
                "$HOSTNAME \"laptop\" has no ordinal suffix",
            ),
            (
                HostfileArgs { ordinal: Some(0), ..defaults() },
                vec![(ENV_REPLICAS, "1"), (ENV_NAMESPACE, "n")],
                "no StatefulSet name",
            ),
            (defaults(), vec![(ENV_HOSTNAME, "t-0"), (ENV_REPLICAS, "1"), (ENV_NAMESPACE, "a b")], "not a DNS name"),
        ];
        for (args, vars, needle) in cases {
            match plan(&args, env(&vars)) {
                Err(K8sError::Invalid(m)) => assert!(m.contains(needle), "{vars:?}: {m:?} lacks {needle:?}"),
                other => panic!("{vars:?}: expected an error with {needle:?}, got {other:?}"),
            }
        }
    }

    #[test]
    fn resolve_maps_rendered_lines_and_every_mapping_must_hit() {
        let args = HostfileArgs {
            resolve: vec!["0.0.0.0:2101=127.0.0.1:4001".into(), "t-1.t.n.svc.cluster.local:2101=127.0.0.1:4002".into()],
            ..defaults()
        };
        let p = plan(&args, env(&[(ENV_HOSTNAME, "t-0"), (ENV_REPLICAS, "2"), (ENV_NAMESPACE, "n")])).unwrap();
        assert_eq!(p.lines, vec!["127.0.0.1:4001", "127.0.0.1:4002"]);
        let typo = HostfileArgs { resolve: vec!["t-9.t.n.svc.cluster.local:2101=127.0.0.1:1".into()], ..defaults() };
        assert!(plan(&typo, env(&[(ENV_HOSTNAME, "t-0"), (ENV_REPLICAS, "2"), (ENV_NAMESPACE, "n")])).is_err());
        for bad in ["x", "=y", "x=", ""] {
            assert!(parse_resolve(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_resolve("a:1=b:2").unwrap(), ("a:1".into(), "b:2".into()));
    }

    #[test]
    fn the_command_to_exec_is_a_dataflow_command_without_cluster_flags() {
        let v = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert!(check_exec(&[]).is_ok());
        assert!(check_exec(&v("live --config /etc/tweetoscope/kafka.toml --metrics-addr 0.0.0.0:9464 -w 2")).is_ok());
        assert!(check_exec(&v("run --input data -w 1")).is_ok());
        assert!(check_exec(&v("generate --speed 500")).is_err());
        for bad in
            ["live -n 3", "live -p0", "live --hostfile=f", "live --processes=2", "backtest --hostfile f", "run --process 1"]
        {
            assert!(check_exec(&v(bad)).is_err(), "{bad}");
        }
        let plan = PodPlan { ordinal: 1, replicas: 3, lines: vec![] };
        assert_eq!(plan.timely_flags("/run/hosts"), v("-n 3 -p 1 --hostfile /run/hosts"));
    }
}
