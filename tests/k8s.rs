//! The Kubernetes deployment, checked rather than trusted (k8s/, scripts/k8s-check):
//! - the ConfigMaps of every rendered overlay hold the repo's own files, byte for byte;
//! - the command lines of the manifests parse with this binary's CLI, and the StatefulSet,
//!   its headless Service, -n and the entrypoint agree;
//! - three local processes, each with the hostfile the entrypoint renders for its pod (the
//!   pods' DNS names mapped to 127.0.0.1 ports), form one timely cluster whose outputs equal
//!   a single-process run's;
//! - what the manifests let in (issue 22): the NetworkPolicies, evaluated for every pair of
//!   endpoints, allow exactly the dataflow's graph; prod exposes nothing outside the cluster
//!   and Grafana's admin comes from a Secret; the timely cluster and Kafka have a
//!   PodDisruptionBudget and required anti-affinity; every pod is non-root with a read-only
//!   root filesystem, explicit writable volumes and ephemeral-storage limits; readiness and
//!   liveness probes differ, and the tweetoscope ones are endpoints the binary serves;
//! - Kafka over SASL_SSL (issues 19 and 22, k8s/components/kafka-sasl-ssl, listed by prod only):
//!   the broker's only network listener for clients is SASL_SSL with SCRAM-SHA-512, its keystore
//!   from a Secret and its JAAS file password-free; every Kafka client mounts the Secret
//!   kafka-client read-only and the CA from a ConfigMap, and its config points at that listener;
//!   no rendered manifest holds a password; dev stays PLAINTEXT.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use clap::Parser;
use common::*;
use serde_json::Value;
use tweetoscope::commands::{Cli, Command as Sub};
use tweetoscope::config::DataflowConfig;

/// Renders every overlay once per test binary (`scripts/k8s-check render`, which installs
/// the pinned kustomize and the YAML-to-JSON helper into .cache on first use).
fn rendered() -> &'static BTreeMap<String, Vec<Value>> {
    static RENDERED: OnceLock<BTreeMap<String, Vec<Value>>> = OnceLock::new();
    RENDERED.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("k8s-rendered-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        run_ok(Command::new(root().join("scripts/k8s-check")).arg("render").arg(&dir));
        let mut overlays = BTreeMap::new();
        for entry in std::fs::read_dir(root().join("k8s/overlays")).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if !root().join("k8s/overlays").join(&name).join("kustomization.yaml").exists() {
                continue;
            }
            let json = std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap();
            let objects: Vec<Value> = serde_json::from_str(&json).unwrap();
            overlays.insert(name, objects);
        }
        let _ = std::fs::remove_dir_all(&dir);
        assert!(overlays.contains_key("dev") && overlays.contains_key("prod"), "overlays: {:?}", overlays.keys());
        overlays
    })
}

fn objects<'a>(all: &'a [Value], kind: &str) -> impl Iterator<Item = &'a Value> + 'a {
    let kind = kind.to_owned();
    all.iter().filter(move |o| o["kind"] == kind.as_str())
}

fn named<'a>(all: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects(all, kind).find(|o| o["metadata"]["name"] == name).unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// A generated ConfigMap: its name is `NAME-<hash>`.
fn config_map<'a>(all: &'a [Value], name: &str) -> &'a Value {
    let hashed = |n: &str| n.strip_prefix(name).and_then(|r| r.strip_prefix('-')).is_some_and(|h| !h.contains('-'));
    let found: Vec<_> = objects(all, "ConfigMap").filter(|o| hashed(o["metadata"]["name"].as_str().unwrap_or(""))).collect();
    assert_eq!(found.len(), 1, "ConfigMap {name}-<hash>: {} found", found.len());
    found[0]
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every file of a repo folder with this extension, by file name.
fn files_of(dir: &str, ext: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(root().join(dir)).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == ext) {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            out.insert(name, std::fs::read_to_string(&path).unwrap());
        }
    }
    assert!(!out.is_empty(), "no *.{ext} in {dir}");
    out
}

/// The ConfigMap's data, which must be exactly these files (names and bytes).
fn assert_holds(overlay: &str, cm: &Value, files: &BTreeMap<String, String>) {
    let data = cm["data"].as_object().unwrap_or_else(|| panic!("{overlay}: {} has no data", cm["metadata"]["name"]));
    let keys: Vec<_> = data.keys().cloned().collect();
    assert_eq!(keys, files.keys().cloned().collect::<Vec<_>>(), "{overlay}: {} keys", cm["metadata"]["name"]);
    for (name, text) in files {
        assert!(
            data[name].as_str() == Some(text.as_str()),
            "{overlay}: {}/{name} differs from the repo's file",
            cm["metadata"]["name"]
        );
    }
}

fn one(name: &str, path: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(name.to_owned(), read(path))])
}

/// The overlays that list the SASL_SSL component, from their kustomization.yaml (uncommented).
fn secured_overlays() -> BTreeSet<String> {
    rendered()
        .keys()
        .filter(|o| {
            read(&format!("k8s/overlays/{o}/kustomization.yaml")).lines().any(|l| {
                !l.trim_start().starts_with('#') && l.trim().trim_start_matches("- ").trim() == "../../components/kafka-sasl-ssl"
            })
        })
        .cloned()
        .collect()
}

/// The dataflow config an overlay's Kafka clients run with: the SASL_SSL one where the
/// component is listed.
fn kafka_dataflow_of(overlay: &str) -> &'static str {
    if secured_overlays().contains(overlay) {
        "dataflows/kafka-sasl-ssl.toml"
    } else {
        "dataflows/kafka.toml"
    }
}

#[test]
fn config_maps_hold_the_repos_own_files_byte_for_byte() {
    // Prod runs Kafka over SASL_SSL, dev over PLAINTEXT (issue 22).
    assert_eq!(secured_overlays(), BTreeSet::from(["prod".to_owned()]));
    for (overlay, all) in rendered() {
        // Under the key every client's --config names, whichever file the overlay deploys.
        assert_holds(overlay, config_map(all, "tweetoscope-config"), &one("kafka.toml", kafka_dataflow_of(overlay)));
        if secured_overlays().contains(overlay) {
            assert_holds(
                overlay,
                config_map(all, "kafka-sasl"),
                &BTreeMap::from([
                    ("kafka_server_jaas.conf".to_owned(), read("k8s/components/kafka-sasl-ssl/kafka_server_jaas.conf")),
                    ("upsert-scram-user.sh".to_owned(), read("k8s/components/kafka-sasl-ssl/upsert-scram-user.sh")),
                ]),
            );
        }
        assert_holds(overlay, config_map(all, "prometheus-rules"), &files_of("ops/prometheus/rules", "yml"));
        assert_holds(
            overlay,
            config_map(all, "alertmanager-config"),
            &one("alertmanager.yml", "ops/alertmanager/alertmanager.yml"),
        );
        assert_holds(overlay, config_map(all, "grafana-dashboards"), &files_of("ops/grafana/dashboards", "json"));
        assert_holds(
            overlay,
            config_map(all, "grafana-dashboard-providers"),
            &files_of("ops/grafana/provisioning/dashboards", "yml"),
        );
        // The two cluster-specific files (discovery instead of 127.0.0.1) live in k8s/base.
        assert_holds(overlay, config_map(all, "prometheus-config"), &one("prometheus.yml", "k8s/base/monitoring/prometheus.yml"));
        assert_holds(
            overlay,
            config_map(all, "grafana-datasources"),
            &one("tweetoscope.yml", "k8s/base/monitoring/grafana-datasource.yml"),
        );
    }
}

/// The `key: value` of a YAML line (enough for the few scalar settings compared below).
fn yaml_scalars(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().trim_start_matches("- ").strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .collect()
}

#[test]
fn cluster_specific_monitoring_files_agree_with_the_ops_ones() {
    // The in-cluster datasource keeps the uid the dashboard and the ops datasource use.
    let k8s_ds = read("k8s/base/monitoring/grafana-datasource.yml");
    let ops_ds = files_of("ops/grafana/provisioning/datasources", "yml").into_values().collect::<String>();
    assert_eq!(yaml_scalars(&k8s_ds, "uid"), yaml_scalars(&ops_ds, "uid"));
    assert_eq!(yaml_scalars(&k8s_ds, "url"), vec!["http://prometheus:9090"]);
    // The scrape job is `tweetoscope` as in ops (the rules say up{job="tweetoscope"}), and the
    // rules are read from where the rules ConfigMap is mounted.
    let k8s_prom = read("k8s/base/monitoring/prometheus.yml");
    let ops_prom = read("ops/prometheus/prometheus.yml");
    for job in yaml_scalars(&ops_prom, "job_name") {
        assert!(yaml_scalars(&k8s_prom, "job_name").contains(&job), "job {job} of ops/prometheus/prometheus.yml");
    }
    assert!(k8s_prom.contains("rules/*.yml"));
    for (overlay, all) in rendered() {
        let prom = named(all, "Deployment", "prometheus");
        let mounts = &prom["spec"]["template"]["spec"]["containers"][0]["volumeMounts"];
        assert!(mounts.as_array().unwrap().iter().any(|m| m["mountPath"] == "/etc/prometheus/rules"), "{overlay}");
        // Grafana mounts the dashboards where the ops provider file says they are.
        let providers = files_of("ops/grafana/provisioning/dashboards", "yml").into_values().collect::<String>();
        let grafana = named(all, "Deployment", "grafana");
        let mounts = grafana["spec"]["template"]["spec"]["containers"][0]["volumeMounts"].as_array().unwrap();
        for path in yaml_scalars(&providers, "path") {
            assert!(mounts.iter().any(|m| m["mountPath"] == path.as_str()), "{overlay}: grafana does not mount {path}");
        }
    }
}

#[test]
fn the_kafka_dataflow_has_the_embedded_pipeline_settings_and_the_in_cluster_broker() {
    let kafka = DataflowConfig::load(&root().join("dataflows/kafka.toml")).unwrap();
    let embedded = DataflowConfig::load(&root().join("dataflows/embedded.toml")).unwrap();
    assert_eq!(kafka.input, embedded.input);
    // The same collector semantics; only the timestamp granularity differs, on purpose: live
    // keeps 1-second granules (a granule's predictions wait for its end), replays use coarser.
    assert_eq!(kafka.pipeline.granularity, 1, "live predictions would wait for coarser granules");
    let pipeline = tweetoscope::config::PipelineConfig { granularity: kafka.pipeline.granularity, ..embedded.pipeline.clone() };
    assert_eq!(kafka.pipeline, pipeline);
    assert_eq!(kafka.hawkes, embedded.hawkes);
    assert_eq!(kafka.forest, embedded.forest);
    assert_eq!(kafka.kafka.topics, tweetoscope::io::kafka::TopicNames::default(), "the topics Job creates the default names");
    kafka.kafka.validate().unwrap();
    // The SASL_SSL variant differs in the [kafka] connection settings only: the same pipeline,
    // the same topics, the same source limits.
    let secured = DataflowConfig::load(&root().join("dataflows/kafka-sasl-ssl.toml")).unwrap();
    let mut same = secured.clone();
    let k = &mut same.kafka;
    (k.brokers, k.security_protocol, k.sasl_mechanism, k.sasl_username, k.sasl_password_file, k.ssl_ca_location) =
        (kafka.kafka.brokers.clone(), kafka.kafka.security_protocol.clone(), None, None, None, None);
    assert_eq!(
        same, kafka,
        "dataflows/kafka-sasl-ssl.toml differs from dataflows/kafka.toml beyond the [kafka] connection settings"
    );
    assert_eq!(secured.kafka.security_protocol, "sasl_ssl");
    // The brokers are the Kafka Service of the manifests, on a port the Service has.
    for (overlay, all) in rendered() {
        let config =
            DataflowConfig::parse(config_map(all, "tweetoscope-config")["data"]["kafka.toml"].as_str().unwrap()).unwrap();
        let (host, port) = config.kafka.brokers.split_once(':').unwrap();
        let svc = named(all, "Service", host);
        assert!(
            svc["spec"]["ports"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["port"].as_u64().map(|n| n.to_string()).as_deref() == Some(port)),
            "{overlay}: {host} has no port {port}"
        );
    }
}

/// Every container running the tweetoscope image, with its object's kind and name.
fn tweetoscope_containers(all: &[Value]) -> Vec<(String, &Value)> {
    let mut out = Vec::new();
    for o in all {
        let spec = &o["spec"]["template"]["spec"];
        for list in ["initContainers", "containers"] {
            for c in spec[list].as_array().into_iter().flatten() {
                if c["image"].as_str().is_some_and(|i| i.starts_with("tweetoscope:")) {
                    out.push((
                        format!(
                            "{}/{}/{}",
                            o["kind"].as_str().unwrap(),
                            o["metadata"]["name"].as_str().unwrap(),
                            c["name"].as_str().unwrap()
                        ),
                        c,
                    ));
                }
            }
        }
    }
    out
}

fn args_of(c: &Value) -> Vec<String> {
    c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_owned()).collect()
}

fn env_of(c: &Value) -> BTreeMap<String, String> {
    c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| Some((e["name"].as_str()?.to_owned(), e["value"].as_str()?.to_owned())))
        .collect()
}

#[test]
fn manifests_command_lines_parse_and_the_statefulset_service_and_n_agree() {
    for (overlay, all) in rendered() {
        let namespace = objects(all, "Namespace").next().unwrap()["metadata"]["name"].as_str().unwrap().to_owned();
        let containers = tweetoscope_containers(all);
        assert!(containers.len() >= 4, "{overlay}: {} tweetoscope containers", containers.len());
        for (what, c) in &containers {
            // The image is this version of the binary.
            assert_eq!(c["image"], format!("tweetoscope:{}", env!("CARGO_PKG_VERSION")).as_str(), "{overlay} {what}");
            let args = args_of(c);
            let cli = Cli::try_parse_from(std::iter::once("tweetoscope".to_owned()).chain(args.clone()))
                .unwrap_or_else(|e| panic!("{overlay} {what}: {args:?} does not parse: {e}"));
            assert!(cli.command.is_some(), "{overlay} {what}");
        }
        let set = named(all, "StatefulSet", "tweetoscope");
        let spec = &set["spec"];
        let replicas = spec["replicas"].as_u64().unwrap() as usize;
        assert_eq!(spec["podManagementPolicy"], "Parallel", "{overlay}");
        let service = named(all, "Service", spec["serviceName"].as_str().unwrap());
        assert_eq!(service["spec"]["clusterIP"], "None", "{overlay}: the Service must be headless");
        assert_eq!(service["spec"]["publishNotReadyAddresses"], true, "{overlay}");
        assert!(service["spec"]["ports"].as_array().unwrap().iter().any(|p| p["port"] == 2101), "{overlay}");
        let main = &spec["template"]["spec"]["containers"][0];
        let env = env_of(main);
        assert_eq!(env["TWEETOSCOPE_REPLICAS"], replicas.to_string(), "{overlay}: -n must equal the replica count");
        assert_eq!(env["TWEETOSCOPE_SERVICE"], service["metadata"]["name"].as_str().unwrap(), "{overlay}");
        let mounts = main["volumeMounts"].as_array().unwrap();
        // What each pod's entrypoint does: render its hostfile, then exec `live -n -p -h`.
        let Some(Sub::Hostfile(args)) =
            Cli::try_parse_from(std::iter::once("tweetoscope".to_owned()).chain(args_of(main))).unwrap().command
        else {
            panic!("{overlay}: the StatefulSet's container must run `tweetoscope hostfile … -- live …`")
        };
        for ordinal in 0..replicas {
            let pod = format!("tweetoscope-{ordinal}");
            let pod_env = |name: &str| match name {
                "HOSTNAME" => Some(pod.clone()),
                "POD_INDEX" => Some(ordinal.to_string()),
                "POD_NAMESPACE" => Some(namespace.clone()),
                other => env.get(other).cloned(),
            };
            let plan = tweetoscope::commands::hostfile::plan(&args, pod_env).unwrap();
            assert_eq!((plan.ordinal, plan.replicas), (ordinal, replicas));
            for (j, line) in plan.lines.iter().enumerate() {
                let expected = if j == ordinal {
                    "0.0.0.0:2101".to_owned()
                } else {
                    format!(
                        "tweetoscope-{j}.{}.{namespace}.svc.cluster.local:2101",
                        service["metadata"]["name"].as_str().unwrap()
                    )
                };
                assert_eq!(line, &expected, "{overlay} pod {ordinal}");
            }
            let out = args.out.as_ref().unwrap().display().to_string();
            assert!(
                mounts.iter().any(|m| out.starts_with(m["mountPath"].as_str().unwrap())),
                "{overlay}: {out} is not on a volume"
            );
            let exec: Vec<String> =
                std::iter::once("tweetoscope".to_owned()).chain(args.exec.clone()).chain(plan.timely_flags(&out)).collect();
            let Some(Sub::Live { run, .. }) = Cli::try_parse_from(&exec).unwrap().command else { panic!("{overlay}: {exec:?}") };
            assert_eq!((run.processes, run.process), (replicas, ordinal));
            // --config names the mounted kafka.toml.
            let config = run.config.unwrap().display().to_string();
            let mount = mounts.iter().find(|m| m["name"] == "config").unwrap()["mountPath"].as_str().unwrap();
            assert_eq!(config, format!("{mount}/kafka.toml"), "{overlay}");
            assert!(run.metrics_addr.starts_with("0.0.0.0:"), "{overlay}: metrics must be reachable by Prometheus");
        }
    }
    // dev runs one process, prod three.
    let count = |o: &str| named(&rendered()[o], "StatefulSet", "tweetoscope")["spec"]["replicas"].as_u64();
    assert_eq!((count("dev"), count("prod")), (Some(1), Some(3)));
}

/// Children killed when the test ends, passed or failed.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_all(children: &mut Children, limit: Duration) -> Vec<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    let mut status = vec![None; children.0.len()];
    while status.iter().any(Option::is_none) {
        for (i, c) in children.0.iter_mut().enumerate() {
            if status[i].is_none() {
                status[i] = c.try_wait().unwrap();
            }
        }
        if Instant::now() > deadline {
            panic!("the processes did not finish within {limit:?}: {status:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    status.into_iter().map(Option::unwrap).collect()
}

fn stderr_of(dir: &Path, i: usize) -> String {
    std::fs::read_to_string(dir.join(format!("stderr-{i}"))).unwrap_or_default()
}

#[test]
fn three_pods_hostfiles_form_one_cluster_on_loopback() {
    const N: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(N);
    let pod_env = |cmd: &mut Command, i: usize| {
        cmd.env("HOSTNAME", format!("tweetoscope-{i}"))
            .env("POD_INDEX", i.to_string())
            .env("POD_NAMESPACE", "tweetoscope")
            .env("TWEETOSCOPE_REPLICAS", N.to_string())
            .env("TWEETOSCOPE_SERVICE", "tweetoscope");
    };
    let dns = |j: usize| format!("tweetoscope-{j}.tweetoscope.tweetoscope.svc.cluster.local:2101");
    // What the entrypoint renders in pod i, as is: its own line, the peers by name.
    for i in 0..N {
        let mut cmd = binary();
        cmd.arg("hostfile");
        pod_env(&mut cmd, i);
        let out = String::from_utf8(run_ok(&mut cmd).stdout).unwrap();
        let expected: String =
            (0..N).map(|j| if j == i { "0.0.0.0:2101\n".to_owned() } else { format!("{}\n", dns(j)) }).collect();
        assert_eq!(out, expected, "pod {i}");
    }
    // The same hostfiles with every pod name (and the own line) mapped to a loopback port,
    // and the entrypoint exec'ing a bounded replay in place of `live`.
    let mut children = Children(Vec::new());
    for i in 0..N {
        let mut cmd = binary();
        cmd.arg("hostfile").arg("--out").arg(dir.path().join(format!("hosts-{i}")));
        for (j, port) in ports.iter().enumerate() {
            let from = if j == i { "0.0.0.0:2101".to_owned() } else { dns(j) };
            cmd.arg("--resolve").arg(format!("{from}=127.0.0.1:{port}"));
        }
        cmd.args(["--", "run", "--input"])
            .arg(bundled_sample())
            .args(["-w", "1", "--metrics-addr", "off", "--out"])
            .arg(dir.path().join(format!("out-{i}")));
        pod_env(&mut cmd, i);
        let stderr = std::fs::File::create(dir.path().join(format!("stderr-{i}"))).unwrap();
        children.0.push(cmd.stdout(Stdio::null()).stderr(stderr).spawn().unwrap());
    }
    let status = wait_all(&mut children, Duration::from_secs(180));
    for (i, s) in status.iter().enumerate() {
        assert!(s.success(), "process {i} exited with {s}:\n{}", stderr_of(dir.path(), i));
        let hosts = std::fs::read_to_string(dir.path().join(format!("hosts-{i}"))).unwrap();
        assert_eq!(hosts.lines().collect::<Vec<_>>(), ports.iter().map(|p| format!("127.0.0.1:{p}")).collect::<Vec<_>>());
        // The entrypoint said which process this is, and exec'd with those flags.
        assert!(
            stderr_of(dir.path(), i).contains(&format!("process {i} of {N}: -n {N} -p {i} --hostfile")),
            "{}",
            stderr_of(dir.path(), i)
        );
    }
    // One cluster: process 0's outputs are those of a single-process run.
    let single = dir.path().join("single");
    run_ok(binary().args(["run", "--input"]).arg(bundled_sample()).args(["--metrics-addr", "off", "--out"]).arg(&single));
    assert_same_outputs(&single, &dir.path().join("out-0"));
}

// ---------------------------------------------------------------------------------------------
// What the manifests let in, and how they survive node maintenance (issue 22).

/// The pod templates of an overlay, by `Kind/name` of their controller.
fn pod_templates(all: &[Value]) -> Vec<(String, &Value)> {
    all.iter()
        .filter(|o| ["Deployment", "StatefulSet", "Job", "DaemonSet"].contains(&o["kind"].as_str().unwrap_or("")))
        .map(|o| (format!("{}/{}", o["kind"].as_str().unwrap(), o["metadata"]["name"].as_str().unwrap()), &o["spec"]["template"]))
        .collect()
}

/// Init containers, then containers.
fn containers_of(template: &Value) -> Vec<&Value> {
    let spec = &template["spec"];
    spec["initContainers"].as_array().into_iter().flatten().chain(spec["containers"].as_array().unwrap()).collect()
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object().into_iter().flatten().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())).collect()
}

/// A label selector (matchLabels and matchExpressions; `{}` selects everything).
fn selects(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    let by_label =
        selector["matchLabels"].as_object().into_iter().flatten().all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str());
    let by_expression = selector["matchExpressions"].as_array().into_iter().flatten().all(|e| {
        let key = e["key"].as_str().unwrap();
        let values: Vec<&str> = e["values"].as_array().into_iter().flatten().map(|v| v.as_str().unwrap()).collect();
        match e["operator"].as_str().unwrap() {
            "In" => labels.get(key).is_some_and(|v| values.contains(&v.as_str())),
            "NotIn" => labels.get(key).is_none_or(|v| !values.contains(&v.as_str())),
            "Exists" => labels.contains_key(key),
            "DoesNotExist" => !labels.contains_key(key),
            op => panic!("selector operator {op}"),
        }
    });
    by_label && by_expression
}

/// Where an endpoint of the graph is: a pod, or an address outside the cluster's pods.
#[derive(Debug, Clone)]
enum Place {
    Pod { namespace: String, namespace_labels: BTreeMap<String, String>, labels: BTreeMap<String, String> },
    Address(std::net::Ipv4Addr),
}

/// A node of the graph and the ports it listens on, as (protocol, port).
#[derive(Debug, Clone)]
struct Endpoint {
    name: String,
    place: Place,
    ports: Vec<(&'static str, u16)>,
}

fn in_cidr(ip: std::net::Ipv4Addr, cidr: &Value) -> bool {
    let (net, bits) = cidr.as_str().unwrap().split_once('/').unwrap();
    let (net, bits): (std::net::Ipv4Addr, u32) = (net.parse().unwrap(), bits.parse().unwrap());
    let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
    u32::from(ip) & mask == u32::from(net) & mask
}

/// One `from`/`to` entry of a rule, for an endpoint. An ipBlock is taken to match addresses
/// outside the pod network only: what it does to pod addresses depends on the CNI, and the
/// policies here never rely on it.
fn peer_matches(peer: &Value, policy_namespace: &str, endpoint: &Endpoint) -> bool {
    match &endpoint.place {
        Place::Pod { namespace, namespace_labels, labels } => {
            if peer.get("ipBlock").is_some() {
                return false;
            }
            let namespace_ok = match peer.get("namespaceSelector") {
                Some(selector) => selects(selector, namespace_labels),
                None => namespace == policy_namespace,
            };
            namespace_ok && peer.get("podSelector").is_none_or(|selector| selects(selector, labels))
        }
        Place::Address(ip) => peer.get("ipBlock").is_some_and(|block| {
            in_cidr(*ip, &block["cidr"]) && !block["except"].as_array().into_iter().flatten().any(|c| in_cidr(*ip, c))
        }),
    }
}

fn port_matches(ports: &Value, protocol: &str, port: u16) -> bool {
    let Some(list) = ports.as_array().filter(|l| !l.is_empty()) else { return true };
    list.iter().any(|p| {
        p["protocol"].as_str().unwrap_or("TCP") == protocol
            && match &p["port"] {
                Value::Null => true,
                Value::Number(n) => {
                    let low = n.as_u64().unwrap() as u16;
                    (low..=p["endPort"].as_u64().map_or(low, |e| e as u16)).contains(&port)
                }
                named => panic!("named port {named} in a NetworkPolicy: this test models numbers only"),
            }
    })
}

fn policy_types(policy: &Value) -> Vec<String> {
    match policy["spec"]["policyTypes"].as_array() {
        Some(types) => types.iter().map(|t| t.as_str().unwrap().to_owned()).collect(),
        // The API's default: Ingress always, Egress when there are egress rules.
        None if policy["spec"].get("egress").is_some() => vec!["Ingress".into(), "Egress".into()],
        None => vec!["Ingress".into()],
    }
}

/// Whether `pod`'s policies let `peer` through in `direction` ("Ingress": from the peer;
/// "Egress": to it) on that port. A pod that no policy selects for that direction is not
/// isolated in it (nor is anything outside the policies' namespace).
fn admits(policies: &[&Value], pod: &Endpoint, direction: &str, peer: &Endpoint, protocol: &str, port: u16) -> bool {
    let Place::Pod { namespace, labels, .. } = &pod.place else { return true };
    let applying: Vec<&Value> = policies
        .iter()
        .copied()
        .filter(|p| p["metadata"]["namespace"] == namespace.as_str() && selects(&p["spec"]["podSelector"], labels))
        .filter(|p| policy_types(p).iter().any(|t| t == direction))
        .collect();
    if applying.is_empty() {
        return true;
    }
    let (rules, peers) = if direction == "Ingress" { ("ingress", "from") } else { ("egress", "to") };
    applying.iter().any(|p| {
        p["spec"][rules].as_array().into_iter().flatten().any(|rule| {
            let peer_ok = rule[peers].as_array().filter(|l| !l.is_empty()).is_none_or(|list| {
                list.iter().any(|entry| peer_matches(entry, p["metadata"]["namespace"].as_str().unwrap(), peer))
            });
            peer_ok && port_matches(&rule["ports"], protocol, port)
        })
    })
}

/// Every connection the policies allow between these endpoints, as `from -> to:port/PROTO`,
/// leaving out pairs where neither end is a pod of `namespace` (not governed by them).
fn network_graph(policies: &[&Value], endpoints: &[Endpoint], namespace: &str) -> BTreeSet<String> {
    let ours = |e: &Endpoint| matches!(&e.place, Place::Pod { namespace: n, .. } if n == namespace);
    let mut edges = BTreeSet::new();
    for from in endpoints {
        for to in endpoints.iter().filter(|to| ours(from) || ours(to)) {
            for &(protocol, port) in &to.ports {
                if admits(policies, from, "Egress", to, protocol, port) && admits(policies, to, "Ingress", from, protocol, port) {
                    edges.insert(format!("{} -> {}:{port}/{protocol}", from.name, to.name));
                }
            }
        }
    }
    edges
}

/// The overlay's workloads (labels and container ports of their pod templates), plus what
/// else a connection could come from or go to: a stranger pod in the namespace (a debug pod,
/// a new workload), the cluster DNS, a pod of another namespace, the API server, the cloud
/// metadata service, a host on the private network and an address on the internet.
fn network_endpoints(all: &[Value]) -> (String, Vec<Endpoint>) {
    let ns = objects(all, "Namespace").next().unwrap();
    let namespace = ns["metadata"]["name"].as_str().unwrap().to_owned();
    let mut namespace_labels = string_map(&ns["metadata"]["labels"]);
    namespace_labels.insert("kubernetes.io/metadata.name".into(), namespace.clone()); // set by the API server
    let pod = |namespace: &str, namespace_labels: &BTreeMap<String, String>, labels: BTreeMap<String, String>| Place::Pod {
        namespace: namespace.to_owned(),
        namespace_labels: namespace_labels.clone(),
        labels,
    };
    let mut endpoints = Vec::new();
    for (what, template) in pod_templates(all) {
        let ports = template["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["ports"].as_array().into_iter().flatten())
            .map(|p| {
                let protocol = match p["protocol"].as_str().unwrap_or("TCP") {
                    "TCP" => "TCP",
                    "UDP" => "UDP",
                    other => panic!("{what}: protocol {other}"),
                };
                (protocol, p["containerPort"].as_u64().unwrap() as u16)
            })
            .collect();
        let name = what.split_once('/').unwrap().1.to_owned();
        endpoints.push(Endpoint {
            name,
            place: pod(&namespace, &namespace_labels, string_map(&template["metadata"]["labels"])),
            ports,
        });
    }
    let labels = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>();
    endpoints.push(Endpoint {
        name: "stranger".into(),
        place: pod(&namespace, &namespace_labels, labels(&[("app.kubernetes.io/name", "debug")])),
        ports: vec![("TCP", 8080)],
    });
    endpoints.push(Endpoint {
        name: "kube-dns".into(),
        place: pod("kube-system", &labels(&[("kubernetes.io/metadata.name", "kube-system")]), labels(&[("k8s-app", "kube-dns")])),
        ports: vec![("UDP", 53), ("TCP", 53)],
    });
    endpoints.push(Endpoint {
        name: "elsewhere".into(),
        place: pod("elsewhere", &labels(&[("kubernetes.io/metadata.name", "elsewhere")]), labels(&[("app", "elsewhere")])),
        ports: vec![("TCP", 443), ("TCP", 8080)],
    });
    let address = |name: &str, ip: [u8; 4], ports: &[u16]| Endpoint {
        name: name.into(),
        place: Place::Address(ip.into()),
        ports: ports.iter().map(|&p| ("TCP", p)).collect(),
    };
    endpoints.push(address("api-server", [10, 0, 0, 2], &[443, 6443]));
    endpoints.push(address("metadata", [169, 254, 169, 254], &[80]));
    endpoints.push(address("private-host", [10, 1, 2, 3], &[443]));
    endpoints.push(address("internet", [203, 0, 113, 10], &[80, 443, 587]));
    (namespace, endpoints)
}

fn network_policies(all: &[Value]) -> Vec<&Value> {
    objects(all, "NetworkPolicy").collect()
}

/// The endpoints of `network_endpoints` outside the overlay's namespace.
const OUTSIDE: [&str; 6] = ["api-server", "elsewhere", "internet", "kube-dns", "metadata", "private-host"];

/// The edges of the dataflow's graph (k8s/base/network-policies.yaml) with Kafka's client
/// port: 9092 (PLAINTEXT) in base, 9094 (SASL_SSL) with k8s/components/kafka-sasl-ssl.
fn dataflow_graph(kafka_port: u16) -> BTreeSet<String> {
    let mut expected: BTreeSet<String> = [
        // timely's processes dial each other; the pipeline reads and writes Kafka, pushes alerts.
        "tweetoscope -> tweetoscope:2101/TCP",
        "tweetoscope -> kafka:KAFKA/TCP",
        "tweetoscope -> alertmanager:9093/TCP",
        // The Jobs create the topics and replay the sample.
        "kafka-topics -> kafka:KAFKA/TCP",
        "generator -> kafka:KAFKA/TCP",
        // Broker to broker and to the controller (several nodes).
        "kafka -> kafka:KAFKA/TCP",
        "kafka -> kafka:9093/TCP",
        // Monitoring.
        "prometheus -> tweetoscope:9464/TCP",
        "prometheus -> alertmanager:9093/TCP",
        "grafana -> prometheus:9090/TCP",
        // Prometheus's API-server rule is by port (the server's address is the cluster's): it
        // also opens 443 elsewhere, which the graph shows rather than hides.
        "prometheus -> api-server:443/TCP",
        "prometheus -> api-server:6443/TCP",
        "prometheus -> elsewhere:443/TCP",
        "prometheus -> internet:443/TCP",
        "prometheus -> private-host:443/TCP",
        // Alertmanager's receivers: public addresses only (not the private network, not the
        // metadata service).
        "alertmanager -> internet:443/TCP",
        "alertmanager -> internet:587/TCP",
    ]
    .into_iter()
    .map(|e| e.replace("KAFKA", &kafka_port.to_string()))
    .collect();
    // DNS for every pod of the namespace, the stranger included (and nothing else for it).
    for pod in ["tweetoscope", "kafka", "kafka-topics", "generator", "prometheus", "alertmanager", "grafana", "stranger"] {
        expected.insert(format!("{pod} -> kube-dns:53/UDP"));
        expected.insert(format!("{pod} -> kube-dns:53/TCP"));
    }
    expected
}

#[test]
fn network_policies_allow_exactly_the_dataflows_graph() {
    for (overlay, all) in rendered() {
        let secured = secured_overlays().contains(overlay);
        let expected = dataflow_graph(if secured { 9094 } else { 9092 });
        let (namespace, mut endpoints) = network_endpoints(all);
        if secured {
            // The PLAINTEXT listener is on the broker pod's loopback (not a port of the pod):
            // no policy may open 9092 either, should it ever listen on the pod's address.
            let kafka = endpoints.iter_mut().find(|e| e.name == "kafka").unwrap();
            assert!(!kafka.ports.contains(&("TCP", 9092)), "{overlay}: kafka still declares 9092");
            kafka.ports.push(("TCP", 9092));
        }
        let names: BTreeSet<&str> = endpoints.iter().map(|e| e.name.as_str()).collect();
        assert!(OUTSIDE.iter().all(|o| names.contains(o)), "{overlay}: {names:?}");
        for workload in ["tweetoscope", "kafka", "kafka-topics", "generator", "prometheus", "alertmanager", "grafana"] {
            assert!(names.contains(workload), "{overlay}: no workload {workload}");
        }
        let mut want = expected.clone();
        if overlay == "dev" {
            // Dev's NodePorts: anything outside the namespace (any address, any other
            // namespace's pod) reaches the three UIs, on those ports only; nothing inside the
            // namespace gains anything.
            for from in OUTSIDE {
                for to in ["prometheus:9090", "grafana:3000", "alertmanager:9093"] {
                    want.insert(format!("{from} -> {to}/TCP"));
                }
            }
        }
        let policies = network_policies(all);
        let got = network_graph(&policies, &endpoints, &namespace);
        let extra: Vec<_> = got.difference(&want).collect();
        let missing: Vec<_> = want.difference(&got).collect();
        assert!(
            extra.is_empty() && missing.is_empty(),
            "{overlay}: allowed but not in the graph: {extra:#?}\nin the graph but refused: {missing:#?}"
        );
        if overlay != "dev" {
            let inbound: Vec<_> = got.iter().filter(|e| OUTSIDE.iter().any(|o| e.starts_with(&format!("{o} ->")))).collect();
            assert!(inbound.is_empty(), "{overlay}: reachable from outside the namespace: {inbound:?}");
        }
        // The evaluation sees isolation: without the default deny, the stranger pod (which no
        // other policy admits anything to) is open to the world.
        let without: Vec<&Value> = policies.iter().copied().filter(|p| p["metadata"]["name"] != "default-deny").collect();
        assert!(without.len() < policies.len(), "{overlay}: no default-deny policy");
        let opened = network_graph(&without, &endpoints, &namespace);
        for edge in ["internet -> stranger:8080/TCP", "elsewhere -> stranger:8080/TCP"] {
            assert!(opened.contains(edge) && !got.contains(edge), "{overlay}: {edge} should depend on default-deny");
        }
        // Default deny covers every pod, in both directions.
        let deny = named(all, "NetworkPolicy", "default-deny");
        assert_eq!(deny["spec"]["podSelector"], serde_json::json!({}), "{overlay}");
        assert_eq!(policy_types(deny), ["Ingress", "Egress"], "{overlay}");
        assert!(
            deny["spec"].get("ingress").is_none() && deny["spec"].get("egress").is_none(),
            "{overlay}: default-deny allows something"
        );
    }
}

#[test]
fn prod_exposes_nothing_outside_the_cluster_and_grafana_has_no_default_login() {
    let prod = &rendered()["prod"];
    // No Service of type NodePort or LoadBalancer, no external address, no Ingress: the UIs
    // (none of which authenticates by itself except Grafana) are reached by port-forward.
    for svc in objects(prod, "Service") {
        let name = svc["metadata"]["name"].as_str().unwrap();
        let kind = svc["spec"]["type"].as_str().unwrap_or("ClusterIP");
        assert_eq!(kind, "ClusterIP", "prod Service {name} is a {kind}");
        assert!(svc["spec"].get("externalIPs").is_none(), "prod Service {name} has externalIPs");
        assert!(svc["spec"]["ports"].as_array().unwrap().iter().all(|p| p.get("nodePort").is_none()), "prod Service {name}");
    }
    for kind in ["Ingress", "Gateway", "HTTPRoute"] {
        assert_eq!(objects(prod, kind).count(), 0, "prod has an {kind}: it needs authentication in front (k8s/README.md)");
    }
    // Grafana: no anonymous access, the admin login from the operator's Secret, which is not
    // in the repository (no Secret at all is rendered).
    let grafana = named(prod, "Deployment", "grafana");
    let spec = &grafana["spec"]["template"]["spec"];
    let container = &spec["containers"][0];
    let env = env_of(container);
    assert_eq!(env.get("GF_AUTH_ANONYMOUS_ENABLED").map(String::as_str), Some("false"));
    assert!(
        !env.contains_key("GF_SECURITY_ADMIN_PASSWORD") && !env.contains_key("GF_SECURITY_ADMIN_USER"),
        "a literal Grafana login"
    );
    let admin_volume = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["secret"]["secretName"] == "grafana-admin")
        .expect("the grafana-admin Secret volume");
    let mount = container["volumeMounts"].as_array().unwrap().iter().find(|m| m["name"] == admin_volume["name"]).unwrap();
    assert_eq!(mount["readOnly"], true);
    for (var, key) in [("GF_SECURITY_ADMIN_USER__FILE", "admin-user"), ("GF_SECURITY_ADMIN_PASSWORD__FILE", "admin-password")] {
        assert_eq!(env.get(var), Some(&format!("{}/{key}", mount["mountPath"].as_str().unwrap())), "{var}");
    }
    assert_eq!(objects(prod, "Secret").count(), 0, "prod renders a Secret: credentials do not belong in the repository");

    // Dev differs on purpose (k8s/README.md): the course's NodePorts, an anonymous viewer,
    // and a generated admin/admin Secret.
    let dev = &rendered()["dev"];
    for (name, port) in [("prometheus", 30187), ("grafana", 30188), ("alertmanager", 30189)] {
        let svc = named(dev, "Service", name);
        assert_eq!(
            (svc["spec"]["type"].as_str(), svc["spec"]["ports"][0]["nodePort"].as_u64()),
            (Some("NodePort"), Some(port)),
            "dev {name}"
        );
    }
    let env = env_of(&named(dev, "Deployment", "grafana")["spec"]["template"]["spec"]["containers"][0]);
    assert_eq!((env["GF_AUTH_ANONYMOUS_ENABLED"].as_str(), env["GF_AUTH_ANONYMOUS_ORG_ROLE"].as_str()), ("true", "Viewer"));
    let secret_name = named(dev, "Deployment", "grafana")["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|v| v["secret"]["secretName"].as_str())
        .unwrap()
        .to_owned();
    assert!(secret_name.starts_with("grafana-admin-"), "dev: the generated Secret: {secret_name}");
    let secret = named(dev, "Secret", &secret_name);
    assert!(secret["data"]["admin-user"].is_string() && secret["data"]["admin-password"].is_string());
}

#[test]
fn the_timely_cluster_and_kafka_have_a_disruption_budget_and_one_pod_per_node() {
    for (overlay, all) in rendered() {
        for set_name in ["tweetoscope", "kafka"] {
            let set = named(all, "StatefulSet", set_name);
            let template = &set["spec"]["template"];
            let labels = string_map(&template["metadata"]["labels"]);
            // Exactly one budget covers these pods, and it refuses every voluntary eviction
            // (fail-stop timely cluster; one Kafka broker): `kubectl drain` waits for the
            // operator's procedure (k8s/README.md, "Draining a node").
            let budgets: Vec<&Value> =
                objects(all, "PodDisruptionBudget").filter(|b| selects(&b["spec"]["selector"], &labels)).collect();
            assert_eq!(budgets.len(), 1, "{overlay}: {set_name} is covered by {} PodDisruptionBudgets", budgets.len());
            let budget = &budgets[0]["spec"];
            let replicas = set["spec"]["replicas"].as_u64().unwrap();
            let refuses_all = budget["maxUnavailable"] == 0 || budget["minAvailable"].as_u64() == Some(replicas);
            assert!(refuses_all, "{overlay}: {set_name}'s budget allows an eviction: {budget}");
            // A pod that is not Ready may go: blocking on it protects nothing.
            assert_eq!(budget["unhealthyPodEvictionPolicy"], "AlwaysAllow", "{overlay}: {set_name}");
            // The budget covers no other workload's pods.
            for (what, other) in pod_templates(all) {
                if what != format!("StatefulSet/{set_name}") {
                    assert!(
                        !selects(&budget["selector"], &string_map(&other["metadata"]["labels"])),
                        "{overlay}: {set_name}'s budget also covers {what}"
                    );
                }
            }
            // Required (not preferred) anti-affinity: never two of these pods on one node.
            let anti = &template["spec"]["affinity"]["podAntiAffinity"];
            let required = anti["requiredDuringSchedulingIgnoredDuringExecution"]
                .as_array()
                .unwrap_or_else(|| panic!("{overlay}: {set_name} has no required anti-affinity"));
            assert!(
                required
                    .iter()
                    .any(|term| term["topologyKey"] == "kubernetes.io/hostname" && selects(&term["labelSelector"], &labels)),
                "{overlay}: {set_name}'s anti-affinity does not keep its own pods on distinct nodes: {required:?}"
            );
            // And it does not repel the other workload's pods by accident (kafka and
            // tweetoscope may share a node).
            for term in required {
                let other = if set_name == "kafka" { "tweetoscope" } else { "kafka" };
                let other_labels = string_map(&named(all, "StatefulSet", other)["spec"]["template"]["metadata"]["labels"]);
                assert!(!selects(&term["labelSelector"], &other_labels), "{overlay}: {set_name} repels {other}");
            }
        }
    }
}

/// A Kubernetes quantity in bytes (the suffixes the manifests use).
fn quantity_bytes(q: &Value) -> u64 {
    let q = q.as_str().map(str::to_owned).unwrap_or_else(|| q.to_string());
    let split = q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len());
    let (number, unit) = q.split_at(split);
    let factor: u64 = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        other => panic!("quantity unit {other} in {q}"),
    };
    number.parse::<u64>().unwrap() * factor
}

#[test]
fn every_pod_is_non_root_read_only_and_bounded_on_disk() {
    for (overlay, all) in rendered() {
        // The namespace itself refuses any pod that is not `restricted` (Pod Security Admission).
        let ns = objects(all, "Namespace").next().unwrap();
        assert_eq!(ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "restricted", "{overlay}");
        let claims: BTreeSet<String> = objects(all, "StatefulSet")
            .flat_map(|s| {
                s["spec"]["volumeClaimTemplates"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| c["metadata"]["name"].as_str().unwrap().to_owned())
            })
            .collect();
        let mut uid_of_image: BTreeMap<String, i64> = BTreeMap::new();
        for (what, template) in pod_templates(all) {
            let spec = &template["spec"];
            let at = format!("{overlay} {what}");
            // Non-root with a fixed uid/gid above the host's range, RuntimeDefault seccomp,
            // no host namespaces.
            let sc = &spec["securityContext"];
            assert_eq!(sc["runAsNonRoot"], true, "{at}");
            for id in ["runAsUser", "runAsGroup"] {
                assert!(sc[id].as_i64().is_some_and(|v| v >= 10_000), "{at}: {id} {}", sc[id]);
            }
            assert!(sc["fsGroup"].is_null() || sc["fsGroup"].as_i64().unwrap() >= 10_000, "{at}: fsGroup");
            assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{at}");
            for host in ["hostNetwork", "hostPID", "hostIPC"] {
                assert!(spec[host] != true, "{at}: {host}");
            }
            // Only Prometheus talks to the Kubernetes API; no other pod gets a token.
            let token = spec["automountServiceAccountToken"].as_bool();
            if what == "Deployment/prometheus" {
                assert_eq!((token, spec["serviceAccountName"].as_str()), (Some(true), Some("prometheus")), "{at}");
            } else {
                assert_eq!(token, Some(false), "{at}: a service account token it does not need");
            }
            let volumes: BTreeMap<String, &Value> =
                spec["volumes"].as_array().into_iter().flatten().map(|v| (v["name"].as_str().unwrap().to_owned(), v)).collect();
            let mut empty_dirs = 0;
            for v in volumes.values() {
                assert!(v.get("hostPath").is_none(), "{at}: hostPath volume {}", v["name"]);
                if let Some(e) = v.get("emptyDir") {
                    // Every scratch volume is bounded: the kubelet evicts the pod past it.
                    empty_dirs += quantity_bytes(
                        e.get("sizeLimit").unwrap_or_else(|| panic!("{at}: emptyDir {} has no sizeLimit", v["name"])),
                    );
                }
            }
            let mut ephemeral_limits = 0;
            for c in containers_of(template) {
                let at = format!("{at}/{}", c["name"].as_str().unwrap());
                let csc = &c["securityContext"];
                assert_eq!(csc["allowPrivilegeEscalation"], false, "{at}");
                assert_eq!(csc["readOnlyRootFilesystem"], true, "{at}");
                assert_eq!(csc["capabilities"]["drop"], serde_json::json!(["ALL"]), "{at}");
                assert!(csc["capabilities"].get("add").is_none() && csc["privileged"] != true, "{at}");
                // One uid per image, a different one for each image: a container cannot read
                // another image's files on a shared volume or node.
                let uid = csc["runAsUser"].as_i64().unwrap_or_else(|| sc["runAsUser"].as_i64().unwrap());
                let image = c["image"].as_str().unwrap().to_owned();
                assert_eq!(*uid_of_image.entry(image.clone()).or_insert(uid), uid, "{at}: {image} runs under two uids");
                // Requests and limits: CPU requested (no CPU limit: scripts/k8s-check says
                // why), memory and ephemeral storage bounded.
                let r = &c["resources"];
                for (key, value) in [("cpu request", &r["requests"]["cpu"]), ("memory limit", &r["limits"]["memory"])] {
                    assert!(!value.is_null(), "{at}: no {key}");
                }
                let (request, limit) = (&r["requests"]["ephemeral-storage"], &r["limits"]["ephemeral-storage"]);
                assert!(!request.is_null() && !limit.is_null(), "{at}: ephemeral-storage request and limit");
                assert!(quantity_bytes(request) <= quantity_bytes(limit), "{at}: ephemeral-storage request above the limit");
                ephemeral_limits += quantity_bytes(limit);
                // A read-only root: whatever is writable is an explicit volume, a bounded
                // emptyDir or a claim; ConfigMaps and Secrets are mounted read-only.
                for m in c["volumeMounts"].as_array().into_iter().flatten() {
                    let name = m["name"].as_str().unwrap();
                    let writable = m["readOnly"] != true;
                    match volumes.get(name) {
                        Some(v) if v.get("configMap").is_some() || v.get("secret").is_some() => {
                            assert!(!writable, "{at}: {name} (ConfigMap/Secret) is mounted writable")
                        }
                        Some(v) => assert!(
                            v.get("emptyDir").is_some() || v.get("persistentVolumeClaim").is_some(),
                            "{at}: {name} is neither an emptyDir nor a claim: {v}"
                        ),
                        None => assert!(claims.contains(name), "{at}: {name} is no volume of the pod"),
                    }
                }
            }
            // The pod's scratch volumes fit in what its containers may use together.
            assert!(
                empty_dirs <= ephemeral_limits,
                "{at}: emptyDir sizeLimits {empty_dirs} B above the ephemeral-storage limits {ephemeral_limits} B"
            );
        }
        let uids: BTreeSet<i64> = uid_of_image.values().copied().collect();
        assert_eq!(uids.len(), uid_of_image.len(), "{overlay}: two images share a uid: {uid_of_image:?}");
    }
}

#[test]
fn readiness_and_liveness_differ_for_every_long_running_container() {
    for (overlay, all) in rendered() {
        for (what, template) in pod_templates(all).into_iter().filter(|(w, _)| !w.starts_with("Job/")) {
            for c in template["spec"]["containers"].as_array().unwrap() {
                let at = format!("{overlay} {what}/{}", c["name"].as_str().unwrap());
                let (ready, live) = (&c["readinessProbe"], &c["livenessProbe"]);
                assert!(ready.is_object() && live.is_object(), "{at}: readiness and liveness probes");
                // The check itself (handler and target) must differ: the same probe for both
                // restarts a pod that is merely busy or not ready yet.
                let check = |p: &Value| {
                    ["httpGet", "tcpSocket", "exec", "grpc"]
                        .iter()
                        .find_map(|k| p.get(*k).map(|h| (k.to_string(), h.clone())))
                        .unwrap()
                };
                assert_ne!(check(ready), check(live), "{at}: the same check for readiness and liveness");
            }
        }
    }
}

/// The status code of `GET path` on a loopback port.
fn http_status(port: u16, path: &str) -> std::io::Result<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let code = response.split_whitespace().nth(1).and_then(|c| c.parse().ok());
    code.ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response:.80}")))
}

#[test]
fn the_tweetoscope_probes_are_endpoints_the_binary_serves() {
    let set = named(&rendered()["prod"], "StatefulSet", "tweetoscope");
    let main = &set["spec"]["template"]["spec"]["containers"][0];
    // The probes' port is the one `live --metrics-addr` binds.
    let args = args_of(main);
    let addr = &args[args.iter().position(|a| a == "--metrics-addr").unwrap() + 1];
    let metrics = main["ports"].as_array().unwrap().iter().find(|p| p["name"] == "metrics").unwrap();
    assert_eq!(addr, &format!("0.0.0.0:{}", metrics["containerPort"]));
    let (ready, live) = (&main["readinessProbe"]["httpGet"], &main["livenessProbe"]["httpGet"]);
    for probe in [ready, live] {
        assert!(probe["port"] == "metrics" || probe["port"] == metrics["containerPort"], "{probe}");
    }
    let (ready, live) = (ready["path"].as_str().unwrap(), live["path"].as_str().unwrap());
    assert_eq!(live, "/healthz", "liveness is the stuck-frontier check the HTTP server answers at /healthz");
    // The binary, serving as in the pod but on a loopback port: a replay at real-time pace
    // (so it is still running) with the HTTP server up.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = binary()
        .args(["run", "--input"])
        .arg(bundled_sample())
        .args(["--pace", "1", "--serve", "--metrics-addr", &format!("127.0.0.1:{port}"), "--out"])
        .arg(dir.path().join("out"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let _children = Children(vec![child]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_status(port, "/").is_err() {
        assert!(
            Instant::now() < deadline,
            "no HTTP server on 127.0.0.1:{port} after 60 s: {}",
            std::fs::read_to_string(dir.path().join("stderr")).unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(http_status(port, ready).unwrap(), 200, "readiness {ready}");
    assert_eq!(http_status(port, live).unwrap(), 200, "liveness {live} (nothing pending: healthy)");
    // The server tells paths apart, so a probe on a path it does not serve would fail.
    assert_eq!(http_status(port, "/no-such-probe").unwrap(), 404);
}

// ---------------------------------------------------------------------------------------------
// Kafka over SASL_SSL (issues 19 and 22): k8s/components/kafka-sasl-ssl, listed by prod.

/// Every container of the tweetoscope image (all of them talk to Kafka), with its pod
/// template, as `Kind/name/container`.
fn kafka_clients(all: &[Value]) -> Vec<(String, &Value, &Value)> {
    let mut out = Vec::new();
    for (what, template) in pod_templates(all) {
        for c in containers_of(template) {
            if c["image"].as_str().is_some_and(|i| i.starts_with("tweetoscope:")) {
                out.push((format!("{what}/{}", c["name"].as_str().unwrap()), template, c));
            }
        }
    }
    out
}

/// The volume mounted at the folder holding `path` in this container: (mount, volume).
fn mount_holding<'a>(template: &'a Value, container: &'a Value, path: &str) -> (&'a Value, &'a Value) {
    let dir = Path::new(path).parent().unwrap().to_str().unwrap();
    let mount = container["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["mountPath"] == dir)
        .unwrap_or_else(|| panic!("{}: nothing is mounted at {dir} (for {path})", container["name"]));
    let volume = template["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap_or_else(|| panic!("no volume {}", mount["name"]));
    (mount, volume)
}

/// The key of a Secret or ConfigMap volume source that appears as `file` (its items, else the
/// key itself), and that file's mode.
fn key_and_mode(source: &Value, file: &str) -> (String, u64) {
    let default_mode = source["defaultMode"].as_u64().unwrap_or(0o644);
    match source["items"].as_array() {
        Some(items) => {
            let item = items.iter().find(|i| i["path"] == file).unwrap_or_else(|| panic!("no item {file} in {source}"));
            (item["key"].as_str().unwrap().to_owned(), item["mode"].as_u64().unwrap_or(default_mode))
        }
        None => (file.to_owned(), default_mode),
    }
}

/// `NAME://host:port,…` (KAFKA_LISTENERS, KAFKA_ADVERTISED_LISTENERS) as NAME → (host, port).
fn kafka_listeners(value: &str) -> BTreeMap<String, (String, u16)> {
    value
        .split(',')
        .map(|l| {
            let (name, address) = l.split_once("://").unwrap_or_else(|| panic!("listener {l}"));
            let (host, port) = address.rsplit_once(':').unwrap();
            (name.to_owned(), (host.to_owned(), port.parse().unwrap()))
        })
        .collect()
}

/// `NAME:PROTOCOL,…` (KAFKA_LISTENER_SECURITY_PROTOCOL_MAP).
fn protocol_map(value: &str) -> BTreeMap<String, String> {
    value.split(',').map(|p| p.split_once(':').map(|(a, b)| (a.to_owned(), b.to_owned())).unwrap()).collect()
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.starts_with("127.")
}

/// The overlay's Kafka StatefulSet pod template and its broker container.
fn kafka_broker(all: &[Value]) -> (&Value, &Value) {
    let template = &named(all, "StatefulSet", "kafka")["spec"]["template"];
    let broker = template["spec"]["containers"].as_array().unwrap().iter().find(|c| c["name"] == "kafka").unwrap();
    (template, broker)
}

/// The client dataflow config an overlay deploys (the ConfigMap behind --config).
fn deployed_dataflow(all: &[Value]) -> DataflowConfig {
    DataflowConfig::parse(config_map(all, "tweetoscope-config")["data"]["kafka.toml"].as_str().unwrap()).unwrap()
}

/// The broker's SASL_SSL client listener: (name, port), checked to be its only listener that
/// a client outside the pod can reach (besides the KRaft controller's).
fn sasl_ssl_listener(overlay: &str, all: &[Value]) -> (String, u16) {
    let (_, broker) = kafka_broker(all);
    let env = env_of(broker);
    let listeners = kafka_listeners(&env["KAFKA_LISTENERS"]);
    let protocols = protocol_map(&env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]);
    let controllers: Vec<&str> = env["KAFKA_CONTROLLER_LISTENER_NAMES"].split(',').collect();
    let mut secured = Vec::new();
    for (name, (host, port)) in &listeners {
        let protocol = &protocols[name];
        if controllers.contains(&name.as_str()) {
            continue;
        }
        if protocol == "SASL_SSL" {
            secured.push((name.clone(), *port));
        } else {
            // Anything else (PLAINTEXT, SSL without SASL, SASL_PLAINTEXT) only on the loopback.
            assert!(is_loopback(host), "{overlay}: listener {name} ({protocol}) on {host:?}:{port}, reachable from other pods");
        }
    }
    assert_eq!(secured.len(), 1, "{overlay}: SASL_SSL listeners {secured:?}");
    secured.remove(0)
}

#[test]
fn every_kafka_client_reads_its_settings_from_the_mounted_config() {
    for (overlay, all) in rendered() {
        let clients = kafka_clients(all);
        let names: BTreeSet<&str> = clients.iter().map(|(w, ..)| w.as_str()).collect();
        let expected = [
            "Job/generator/generator",
            "Job/generator/topics",
            "Job/kafka-topics/topics",
            "StatefulSet/tweetoscope/topics",
            "StatefulSet/tweetoscope/tweetoscope",
        ];
        assert_eq!(names, BTreeSet::from(expected), "{overlay}: the Kafka clients");
        for (what, template, c) in &clients {
            let at = format!("{overlay} {what}");
            let args = args_of(c);
            // The [kafka] settings come from the file alone: no flag or variable overrides it
            // (a forgotten --brokers would bypass the secured listener).
            let config =
                &args[args.iter().position(|a| a == "--config").unwrap_or_else(|| panic!("{at}: no --config in {args:?}")) + 1];
            let (mount, volume) = mount_holding(template, c, config);
            assert_eq!(
                volume["configMap"]["name"],
                config_map(all, "tweetoscope-config")["metadata"]["name"],
                "{at}: {config} is not the generated config"
            );
            assert_eq!(mount["readOnly"], true, "{at}");
            assert_eq!(key_and_mode(&volume["configMap"], "kafka.toml").0, "kafka.toml");
            for flag in [
                "--brokers",
                "--security-protocol",
                "--sasl-mechanism",
                "--sasl-username",
                "--sasl-password-file",
                "--ssl-ca-location",
                "--topic-prefix",
            ] {
                assert!(
                    !args.iter().any(|a| a == flag || a.starts_with(&format!("{flag}="))),
                    "{at}: {flag} overrides the config"
                );
            }
            let env = c["env"].as_array().into_iter().flatten().filter_map(|e| e["name"].as_str());
            for var in env {
                assert!(!var.starts_with("TWEETOSCOPE_KAFKA_"), "{at}: {var} overrides the config");
            }
        }
    }
}

#[test]
fn prod_kafka_clients_mount_the_client_secret_read_only_and_point_at_the_sasl_ssl_listener() {
    for overlay in secured_overlays() {
        let all = &rendered()[&overlay];
        let config = deployed_dataflow(all);
        let k = &config.kafka;
        assert_eq!(k.security_protocol, "sasl_ssl", "{overlay}");
        assert_eq!(k.sasl_mechanism.as_deref(), Some("SCRAM-SHA-512"), "{overlay}");
        assert!(k.sasl_username.is_some() && k.sasl_password.is_none(), "{overlay}: a user, and the password only as a file");
        k.validate().unwrap();
        // The connection checks want the CA file to exist: it does in the pods (the ConfigMap
        // kafka-ca, checked below), not on this machine, so check a copy pointing at a file here.
        let here = tempfile::NamedTempFile::new().unwrap();
        let mut local = k.clone();
        local.ssl_ca_location = Some(here.path().to_str().unwrap().to_owned());
        local.validate_connection_settings().unwrap_or_else(|e| panic!("{overlay}: {e}"));
        let password = k.sasl_password_file.as_ref().expect("sasl_password_file").to_str().unwrap().to_owned();
        let ca = k.ssl_ca_location.clone().expect("ssl_ca_location");
        // The brokers: the Kafka Service's port onto the broker's SASL_SSL listener.
        let (listener, port) = sasl_ssl_listener(&overlay, all);
        let (host, client_port) = k.brokers.split_once(':').unwrap();
        assert_eq!(
            client_port,
            port.to_string(),
            "{overlay}: the clients connect to {}, the SASL_SSL listener {listener} is on {port}",
            k.brokers
        );
        let svc_port =
            named(all, "Service", host)["spec"]["ports"].as_array().unwrap().iter().find(|p| p["port"] == port).cloned().unwrap();
        let (_, broker) = kafka_broker(all);
        let container_port = broker["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["containerPort"] == port)
            .expect("the broker declares the client port");
        assert!(svc_port["targetPort"] == container_port["name"] || svc_port["targetPort"] == port, "{overlay}: {svc_port}");
        for (what, template, c) in kafka_clients(all) {
            let at = format!("{overlay} {what}");
            // The password: a file of the Secret kafka-client (key sasl-password), mounted
            // read-only, readable by the pod's group only.
            let (mount, volume) = mount_holding(template, c, &password);
            assert_eq!(volume["secret"]["secretName"], "kafka-client", "{at}: {password} is not from the Secret kafka-client");
            assert_eq!(mount["readOnly"], true, "{at}: the Secret is mounted writable");
            let (key, mode) = key_and_mode(&volume["secret"], Path::new(&password).file_name().unwrap().to_str().unwrap());
            assert_eq!(key, "sasl-password", "{at}");
            assert_eq!(mode & 0o007, 0, "{at}: the password file is world-readable (mode {mode:o})");
            let sc = &template["spec"]["securityContext"];
            assert!(
                sc["fsGroup"].is_i64() && sc["fsGroup"] == sc["runAsGroup"],
                "{at}: without fsGroup = runAsGroup the process cannot read a {mode:o} file"
            );
            // The CA: ca.crt of the ConfigMap kafka-ca.
            let (mount, volume) = mount_holding(template, c, &ca);
            assert_eq!(volume["configMap"]["name"], "kafka-ca", "{at}: {ca} is not from the ConfigMap kafka-ca");
            assert_eq!(mount["readOnly"], true, "{at}");
            assert_eq!(
                key_and_mode(&volume["configMap"], Path::new(&ca).file_name().unwrap().to_str().unwrap()).0,
                "ca.crt",
                "{at}"
            );
        }
        // Both are the operator's, created before the first apply: not in the repository.
        assert!(objects(all, "ConfigMap").all(|m| m["metadata"]["name"] != "kafka-ca"), "{overlay}: kafka-ca is rendered");
        assert_eq!(objects(all, "Secret").count(), 0, "{overlay}: a Secret is rendered");
    }
}

#[test]
fn prod_kafka_listens_for_clients_on_sasl_ssl_with_scram_and_a_keystore_from_a_secret() {
    let plain = kafka_broker(&rendered()["dev"]).1;
    for overlay in secured_overlays() {
        let all = &rendered()[&overlay];
        let (template, broker) = kafka_broker(all);
        let env = env_of(broker);
        let config = deployed_dataflow(all);
        let (listener, port) = sasl_ssl_listener(&overlay, all);
        // Clients learn the broker's stable name (the certificate's) on that listener.
        let advertised = kafka_listeners(&env["KAFKA_ADVERTISED_LISTENERS"]);
        assert_eq!(advertised[&listener], ("kafka-0.kafka.$(POD_NAMESPACE).svc.cluster.local".to_owned(), port), "{overlay}");
        // SCRAM-SHA-512 only, the clients' mechanism.
        assert_eq!(env.get("KAFKA_SASL_ENABLED_MECHANISMS"), config.kafka.sasl_mechanism.as_ref(), "{overlay}");
        // The controller listener and quorum as in base (dev).
        let plain_env = env_of(plain);
        for var in ["KAFKA_CONTROLLER_LISTENER_NAMES", "KAFKA_CONTROLLER_QUORUM_VOTERS", "KAFKA_PROCESS_ROLES"] {
            assert_eq!(env[var], plain_env[var], "{overlay}: {var}");
        }
        let controller = &env["KAFKA_CONTROLLER_LISTENER_NAMES"];
        assert_eq!(
            kafka_listeners(&env["KAFKA_LISTENERS"])[controller],
            kafka_listeners(&plain_env["KAFKA_LISTENERS"])[controller]
        );
        // Inter-broker traffic stays inside the pod (its listener is on the loopback) or is SASL_SSL.
        let inter = &env["KAFKA_INTER_BROKER_LISTENER_NAME"];
        let (inter_host, inter_port) = kafka_listeners(&env["KAFKA_LISTENERS"])[inter].clone();
        assert!(
            is_loopback(&inter_host) || protocol_map(&env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"])[inter] == "SASL_SSL",
            "{overlay}: {inter}"
        );
        // Nothing outside the pod is pointed at the loopback listener: neither a container
        // port nor a Service port.
        assert!(
            broker["ports"].as_array().unwrap().iter().all(|p| p["containerPort"] != inter_port),
            "{overlay}: port {inter_port} declared"
        );
        assert!(
            named(all, "Service", "kafka")["spec"]["ports"].as_array().unwrap().iter().all(|p| p["port"] != inter_port),
            "{overlay}"
        );
        // Ready when the clients' listener answers.
        let ready = &broker["readinessProbe"]["tcpSocket"]["port"];
        let named_port = broker["ports"].as_array().unwrap().iter().find(|p| p["containerPort"] == port).unwrap();
        assert!(*ready == named_port["name"] || *ready == port, "{overlay}: readiness on {ready}");
        // TLS: the keystore and its password files, by name, in the Secret kafka-tls mounted
        // read-only where the image reads them (/etc/kafka/secrets), group-readable only.
        assert_eq!(env["KAFKA_SSL_KEYSTORE_TYPE"], "PKCS12", "{overlay}");
        for var in ["KAFKA_SSL_KEYSTORE_FILENAME", "KAFKA_SSL_KEYSTORE_CREDENTIALS", "KAFKA_SSL_KEY_CREDENTIALS"] {
            let file = &env[var];
            let (mount, volume) = mount_holding(template, broker, &format!("/etc/kafka/secrets/{file}"));
            assert_eq!(
                (volume["secret"]["secretName"].as_str(), &mount["readOnly"]),
                (Some("kafka-tls"), &Value::Bool(true)),
                "{overlay}: {var}"
            );
            let (key, mode) = key_and_mode(&volume["secret"], file);
            assert_eq!((key.as_str(), mode & 0o007), (file.as_str(), 0), "{overlay}: {var}");
        }
        assert!(env.keys().all(|k| !k.ends_with("_PASSWORD")), "{overlay}: a password variable: {:?}", env.keys());
        // JAAS: the file KAFKA_OPTS names, from a ConfigMap, with the SCRAM login module and
        // no credential.
        let jaas = env["KAFKA_OPTS"].strip_prefix("-Djava.security.auth.login.config=").expect("KAFKA_OPTS names the JAAS file");
        let (mount, volume) = mount_holding(template, broker, jaas);
        assert_eq!(mount["readOnly"], true);
        let cm = named(all, "ConfigMap", volume["configMap"]["name"].as_str().expect("the JAAS file is a ConfigMap's"));
        let text = cm["data"][Path::new(jaas).file_name().unwrap().to_str().unwrap()].as_str().unwrap();
        let code: String = text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
        assert!(code.contains("org.apache.kafka.common.security.scram.ScramLoginModule required"), "{overlay}: {code}");
        assert!(
            !code.to_lowercase().contains("password") && !code.contains("username"),
            "{overlay}: credentials in the JAAS file: {code}"
        );
        // The client user's credential: set at start by the postStart hook from the Secret
        // kafka-client (read-only), for the user the clients log in as, through the loopback
        // listener.
        let hook: Vec<&str> = broker["lifecycle"]["postStart"]["exec"]["command"]
            .as_array()
            .expect("a postStart hook")
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(hook.len(), 2, "{overlay}: {hook:?}");
        assert_eq!(hook[0], "bash");
        let (mount, volume) = mount_holding(template, broker, hook[1]);
        assert_eq!(mount["readOnly"], true);
        let script = named(all, "ConfigMap", volume["configMap"]["name"].as_str().unwrap())["data"]
            [Path::new(hook[1]).file_name().unwrap().to_str().unwrap()]
        .as_str()
        .unwrap();
        assert!(
            script.contains("--add-config-file") && script.contains("SCRAM-SHA-512="),
            "{overlay}: the hook sets no SCRAM-SHA-512 credential"
        );
        assert!(
            script.contains(&format!("SCRAM_BOOTSTRAP:-{inter_host}:{inter_port}")),
            "{overlay}: the hook does not use the loopback listener"
        );
        assert_eq!(env.get("SCRAM_USER"), config.kafka.sasl_username.as_ref(), "{overlay}: the hook's user is not the clients'");
        let password = &env["SCRAM_PASSWORD_FILE"];
        let (mount, volume) = mount_holding(template, broker, password);
        assert_eq!(
            (volume["secret"]["secretName"].as_str(), &mount["readOnly"]),
            (Some("kafka-client"), &Value::Bool(true)),
            "{overlay}"
        );
        assert_eq!(
            key_and_mode(&volume["secret"], Path::new(password).file_name().unwrap().to_str().unwrap()).0,
            "sasl-password"
        );
    }
}

#[test]
fn dev_keeps_kafka_plaintext() {
    for (overlay, all) in rendered().iter().filter(|(o, _)| !secured_overlays().contains(*o)) {
        let (template, broker) = kafka_broker(all);
        let env = env_of(broker);
        assert!(protocol_map(&env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]).values().all(|p| p == "PLAINTEXT"), "{overlay}");
        assert_eq!(kafka_listeners(&env["KAFKA_LISTENERS"]).get("PLAINTEXT").map(|l| l.1), Some(9092), "{overlay}");
        assert!(
            env.keys().all(|k| !k.starts_with("KAFKA_SSL_") && !k.starts_with("KAFKA_SASL_") && k != "KAFKA_OPTS"),
            "{overlay}"
        );
        assert!(
            template["spec"]["volumes"].as_array().unwrap().iter().all(|v| v.get("secret").is_none()),
            "{overlay}: kafka mounts a Secret"
        );
        let config = deployed_dataflow(all);
        assert_eq!(
            (config.kafka.security_protocol.as_str(), config.kafka.brokers.as_str()),
            ("plaintext", "kafka:9092"),
            "{overlay}"
        );
        for (what, template, _) in kafka_clients(all) {
            for v in template["spec"]["volumes"].as_array().unwrap() {
                let name = v["secret"]["secretName"].as_str().or(v["configMap"]["name"].as_str()).unwrap_or("");
                assert!(!["kafka-client", "kafka-ca", "kafka-tls"].contains(&name), "{overlay} {what}: mounts {name}");
            }
        }
    }
}

/// Where a rendered manifest holds a password in the clear (Secrets aside: that is where one
/// belongs, and prod renders none): a `password = value`/`password: value` with a literal value
/// in any string (ConfigMap data, args, commands, env values; `$var` and `%s` are templates, a
/// `…_file` key a path), a password key in a TOML config, an environment variable named like a
/// password with a literal value that is not a file path, or a Secret copied into the
/// environment (`secretKeyRef`: visible in /proc and to `kubectl describe`-level tooling).
fn password_literals(all: &[Value]) -> Vec<String> {
    fn literal_after_password(text: &str) -> Option<String> {
        let lower = text.to_ascii_lowercase();
        let mut from = 0;
        while let Some(i) = lower[from..].find("password").map(|i| i + from) {
            from = i + "password".len();
            let rest = text[from..].trim_start_matches([' ', '\t']);
            let Some(rest) = rest.strip_prefix(['=', ':']) else { continue };
            let value = rest.trim_start_matches([' ', '\t', '"', '\'']);
            match value.chars().next() {
                None | Some('\n' | '\r' | '$' | '%' | '"' | '\'' | ',' | ';' | '}' | ']' | ')') => {}
                Some(_) => return Some(text[i..].lines().next().unwrap_or_default().chars().take(60).collect()),
            }
        }
        None
    }
    fn walk(v: &Value, at: &str, found: &mut Vec<String>) {
        match v {
            Value::String(s) => {
                if let Some(l) = literal_after_password(s) {
                    found.push(format!("{at}: {l}"));
                }
            }
            Value::Array(a) => a.iter().enumerate().for_each(|(i, x)| walk(x, &format!("{at}[{i}]"), found)),
            Value::Object(o) => o.iter().for_each(|(k, x)| walk(x, &format!("{at}.{k}"), found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    for o in all.iter().filter(|o| o["kind"] != "Secret") {
        let at = format!("{}/{}", o["kind"].as_str().unwrap_or("?"), o["metadata"]["name"].as_str().unwrap_or("?"));
        walk(o, &at, &mut found);
        if o["kind"] == "ConfigMap" {
            for (key, text) in o["data"].as_object().into_iter().flatten().filter(|(k, _)| k.ends_with(".toml")) {
                let table: toml::Table = toml::from_str(text.as_str().unwrap()).unwrap_or_else(|e| panic!("{at}/{key}: {e}"));
                fn keys(t: &toml::Table, at: &str, found: &mut Vec<String>) {
                    for (k, v) in t {
                        if k.contains("password") && !k.ends_with("_file") {
                            found.push(format!("{at}: key {k}"));
                        }
                        if let Some(sub) = v.as_table() {
                            keys(sub, &format!("{at}.{k}"), found);
                        }
                    }
                }
                keys(&table, &format!("{at}/{key}"), &mut found);
            }
        }
    }
    for (what, template) in pod_templates(all) {
        for c in containers_of(template) {
            for e in c["env"].as_array().into_iter().flatten() {
                let name = e["name"].as_str().unwrap();
                let at = format!("{what}/{} env {name}", c["name"].as_str().unwrap());
                if e["valueFrom"].get("secretKeyRef").is_some() {
                    found.push(format!("{at}: a Secret in the environment"));
                }
                let upper = name.to_ascii_uppercase();
                if let Some(value) =
                    e["value"].as_str().filter(|_| ["PASSWORD", "SECRET", "TOKEN", "JAAS"].iter().any(|w| upper.contains(w)))
                {
                    if !value.starts_with('/') {
                        found.push(format!("{at}: a literal value"));
                    }
                }
            }
        }
    }
    found
}

#[test]
fn no_password_literal_in_any_rendered_manifest() {
    for (overlay, all) in rendered() {
        let found = password_literals(all);
        assert!(found.is_empty(), "{overlay}: passwords in the clear:\n{}", found.join("\n"));
    }
    // The scan is not vacuous: each way a password could slip into prod's manifests is caught.
    let prod = &rendered()["prod"];
    let mutated = |edit: &dyn Fn(&mut Vec<Value>)| {
        let mut all = prod.clone();
        edit(&mut all);
        password_literals(&all)
    };
    fn find(all: &[Value], kind: &str, prefix: &str) -> usize {
        all.iter().position(|o| o["kind"] == kind && o["metadata"]["name"].as_str().unwrap().starts_with(prefix)).unwrap()
    }
    /// An edit of the rendered objects that slips a password in.
    type Edit = Box<dyn Fn(&mut Vec<Value>)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "TWEETOSCOPE_KAFKA_SASL_PASSWORD in the environment",
            Box::new(|all: &mut Vec<Value>| {
                let i = find(all, "StatefulSet", "tweetoscope");
                all[i]["spec"]["template"]["spec"]["containers"][0]["env"]
                    .as_array_mut()
                    .unwrap()
                    .push(serde_json::json!({"name": "TWEETOSCOPE_KAFKA_SASL_PASSWORD", "value": "hunter2"}));
            }),
        ),
        (
            "a Secret copied into the environment",
            Box::new(|all: &mut Vec<Value>| {
                let i = find(all, "Job", "generator");
                all[i]["spec"]["template"]["spec"]["containers"][0]["env"] = serde_json::json!([{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "kafka-client", "key": "sasl-password"}}}]);
            }),
        ),
        (
            "sasl_password in the dataflow config",
            Box::new(|all: &mut Vec<Value>| {
                let i = find(all, "ConfigMap", "tweetoscope-config-");
                let text = all[i]["data"]["kafka.toml"]
                    .as_str()
                    .unwrap()
                    .replace("sasl_password_file = ", "sasl_password = \"hunter2\"\nsasl_password_file = ");
                all[i]["data"]["kafka.toml"] = text.into();
            }),
        ),
        (
            "a password in the JAAS file",
            Box::new(|all: &mut Vec<Value>| {
                let i = find(all, "ConfigMap", "kafka-sasl-");
                let text = all[i]["data"]["kafka_server_jaas.conf"]
                    .as_str()
                    .unwrap()
                    .replace("required;", "required username=\"admin\" password=\"hunter2\";");
                all[i]["data"]["kafka_server_jaas.conf"] = text.into();
            }),
        ),
        (
            "a password on a command line",
            Box::new(|all: &mut Vec<Value>| {
                let i = find(all, "StatefulSet", "kafka");
                all[i]["spec"]["template"]["spec"]["containers"][0]["lifecycle"]["postStart"]["exec"]["command"] =
                    serde_json::json!(["sh", "-c", "kafka-configs.sh --add-config 'SCRAM-SHA-512=[password=hunter2]'"]);
            }),
        ),
        (
            "the keystore password in the broker's environment",
            Box::new(|all: &mut Vec<Value>| {
                let i = find(all, "StatefulSet", "kafka");
                all[i]["spec"]["template"]["spec"]["containers"][0]["env"]
                    .as_array_mut()
                    .unwrap()
                    .push(serde_json::json!({"name": "KAFKA_SSL_KEYSTORE_PASSWORD", "value": "changeit"}));
            }),
        ),
    ];
    for (what, edit) in &cases {
        assert!(!mutated(edit.as_ref()).is_empty(), "the scan misses {what}");
    }
}

/// The jars of the Kafka that scripts/kafka runs (the apache/kafka image's version), resolved
/// into .cache/kafka/lib on first use.
fn kafka_jars() -> PathBuf {
    let lib = root().join(".cache/kafka/lib");
    if !lib.join(".stamp").exists() {
        run_ok(Command::new(root().join("scripts/kafka")).args(["run", "org.apache.kafka.tools.ConfigCommand", "--version"]));
    }
    lib
}

/// The shell commands of the fenced block of k8s/README.md that makes the broker's keystore:
/// its `openssl …` and `printf …` lines (with their continuations), as an operator pastes them.
fn readme_openssl_commands() -> String {
    let readme = read("k8s/README.md");
    let start = readme.find("# 1. A CA for the cluster's Kafka.").expect("the PKI commands in k8s/README.md");
    let block = &readme[start..readme[start..].find("```").unwrap() + start];
    let mut out = String::new();
    let mut continued = false;
    for line in block.lines() {
        if continued || line.starts_with("openssl ") || line.starts_with("printf ") {
            out.push_str(line);
            out.push('\n');
            continued = line.ends_with('\\');
        }
    }
    assert!(out.matches("openssl ").count() >= 6, "{out}");
    out
}

/// Prod's broker settings on a real broker: the Kafka of scripts/kafka configured by the
/// apache/kafka image's own `KafkaDockerWrapper setup` (what the image's launch script runs)
/// from the rendered container's variables (ports moved to free loopback ports, the image's
/// folders to a scratch one, the keystore password files read as the image's `configure`
/// does), with a keystore made by k8s/README.md's openssl commands; then the rendered
/// postStart script sets the client user's credential from the password file, and
/// `tweetoscope topics` and `generate` with prod's rendered client config (its paths
/// substituted) connect over SASL_SSL, verifying the certificate (which is checked to name the
/// hosts prod's clients dial); a wrong password is refused.
#[test]
fn prod_kafka_settings_run_a_real_broker_that_prod_clients_reach_over_sasl_ssl() {
    require("java");
    require("openssl");
    let lib = kafka_jars();
    let classpath = format!("{}/*", lib.display());
    let prod = &rendered()["prod"];
    let (_, broker) = kafka_broker(prod);
    let dir = tempfile::tempdir().unwrap();
    let d = |p: &str| dir.path().join(p);
    for sub in ["pki", "sasl", "default", "mounted", "config", "data", "bin"] {
        std::fs::create_dir_all(d(sub)).unwrap();
    }
    // The operator's material, as k8s/README.md makes it.
    let mut openssl = Command::new("bash");
    let namespace = objects(prod, "Namespace").next().expect("prod's Namespace")["metadata"]["name"].as_str().unwrap().to_owned();
    openssl.args(["-euo", "pipefail", "-c", &readme_openssl_commands()]).env("NS", &namespace).current_dir(d("pki"));
    run_ok(&mut openssl);
    // The certificate in the keystore the broker loads names every host a prod client dials:
    // the bootstrap (the Service in the clients' config) and the name the broker advertises
    // (librdkafka checks the host name on both connections).
    let k = deployed_dataflow(prod).kafka;
    let advertised = kafka_listeners(&env_of(broker)["KAFKA_ADVERTISED_LISTENERS"]);
    let (listener, _) = sasl_ssl_listener("prod", prod);
    let dialed =
        [k.brokers.split_once(':').unwrap().0.to_owned(), advertised[&listener].0.replace("$(POD_NAMESPACE)", &namespace)];
    let keystore = &env_of(broker)["KAFKA_SSL_KEYSTORE_FILENAME"];
    let keystore_password = &env_of(broker)["KAFKA_SSL_KEYSTORE_CREDENTIALS"];
    for host in &dialed {
        let script = format!(
            "openssl pkcs12 -in {keystore} -passin file:{keystore_password} -nokeys -clcerts | openssl x509 -noout -checkhost {host}"
        );
        let out = run_ok(Command::new("bash").args(["-euo", "pipefail", "-c", &script]).current_dir(d("pki")));
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains(&format!("Hostname {host} does match certificate")), "{host}: {said}");
    }
    // …and not just any name (the check can fail).
    let out = run_ok(Command::new("bash").args(["-euo", "pipefail", "-c", &format!(
        "openssl pkcs12 -in {keystore} -passin file:{keystore_password} -nokeys -clcerts | openssl x509 -noout -checkhost kafka.example.com"
    )]).current_dir(d("pki")));
    assert!(String::from_utf8_lossy(&out.stdout).contains("does NOT match"), "{}", String::from_utf8_lossy(&out.stdout));
    // The component's ConfigMap, where the broker mounts it.
    let sasl = config_map(prod, "kafka-sasl");
    for (file, text) in sasl["data"].as_object().unwrap() {
        std::fs::write(d("sasl").join(file), text.as_str().unwrap()).unwrap();
    }
    // The broker's variables, moved onto this machine. Every port of the manifests must be
    // replaced: the broker of scripts/kafka may be on 9092-9095.
    let ports = free_ports(3);
    let moves = [
        ("//127.0.0.1:9092", format!("//127.0.0.1:{}", ports[0])),
        ("//:9093", format!("//127.0.0.1:{}", ports[1])),
        ("@localhost:9093", format!("@127.0.0.1:{}", ports[1])),
        ("//:9094", format!("//127.0.0.1:{}", ports[2])),
        ("//kafka-0.kafka.$(POD_NAMESPACE).svc.cluster.local:9094", format!("//localhost:{}", ports[2])),
        ("/etc/kafka/sasl/", format!("{}/", d("sasl").display())),
        ("/var/lib/kafka/data", d("data").display().to_string()),
    ];
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in env_of(broker) {
        if name.starts_with("KAFKA_") || name == "CLUSTER_ID" {
            let value = moves.iter().fold(value, |v, (from, to)| v.replace(from, to));
            let fixed_port =
                |p: &str| value.match_indices(p).any(|(i, _)| !value[i + p.len()..].starts_with(|c: char| c.is_ascii_digit()));
            assert!(![":9092", ":9093", ":9094", "/etc/", "$("].iter().any(|p| fixed_port(p)), "{name}={value} was not moved");
            env.insert(name, value);
        }
    }
    // What the image's configure script does with the SSL variables (the files are the Secret
    // kafka-tls's keys: here the README's files).
    let secret = |var: &str| std::fs::read_to_string(d("pki").join(&env[var])).unwrap().trim_end_matches('\n').to_owned();
    let ssl = [
        ("KAFKA_SSL_KEYSTORE_LOCATION", d("pki").join(&env["KAFKA_SSL_KEYSTORE_FILENAME"]).display().to_string()),
        ("KAFKA_SSL_KEYSTORE_PASSWORD", secret("KAFKA_SSL_KEYSTORE_CREDENTIALS")),
        ("KAFKA_SSL_KEY_PASSWORD", secret("KAFKA_SSL_KEY_CREDENTIALS")),
    ];
    env.extend(ssl.map(|(k, v)| (k.to_owned(), v)));
    let java = |cmd: &mut Command| {
        cmd.env_clear().env("PATH", std::env::var("PATH").unwrap()).env("HOME", dir.path()).envs(&env);
    };
    let mut setup = Command::new("java");
    setup.args(["-Xmx256m", "-cp", &classpath, "kafka.docker.KafkaDockerWrapper", "setup", "--default-configs-dir"]);
    setup.arg(d("default")).arg("--mounted-configs-dir").arg(d("mounted")).arg("--final-configs-dir").arg(d("config"));
    java(&mut setup);
    run_ok(&mut setup);
    let properties = std::fs::read_to_string(d("config/server.properties")).unwrap();
    assert!(
        properties.contains("sasl.enabled.mechanisms=SCRAM-SHA-512") && properties.contains("ssl.keystore.type=PKCS12"),
        "{properties}"
    );
    let log = d("kafka.log");
    let mut start = Command::new("java");
    start.args(["-Xmx320m", "-XX:+UseSerialGC"]).args(env["KAFKA_OPTS"].split_whitespace()).args([
        "-cp",
        &classpath,
        "kafka.Kafka",
    ]);
    start.arg(d("config/server.properties"));
    java(&mut start);
    let child = start.stdout(std::fs::File::create(&log).unwrap()).stderr(Stdio::null()).spawn().unwrap();
    let _broker = Children(vec![child]);
    let tail = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::net::TcpStream::connect(("127.0.0.1", ports[2])).is_err() {
        assert!(Instant::now() < deadline, "the broker did not open its SASL_SSL listener:\n{}", tail());
        std::thread::sleep(Duration::from_millis(200));
    }
    // The postStart hook, with the broker's SCRAM_* variables, the README's password file, and
    // kafka-configs on these jars.
    let tool = d("bin/kafka-configs.sh");
    std::fs::write(&tool, format!("#!/bin/sh\nexec java $KAFKA_HEAP_OPTS $KAFKA_JVM_PERFORMANCE_OPTS $KAFKA_OPTS -cp '{classpath}' org.apache.kafka.tools.ConfigCommand \"$@\"\n")).unwrap();
    run_ok(Command::new("chmod").arg("+x").arg(&tool));
    let broker_env = env_of(broker);
    let password = d("pki/sasl-password");
    let mut hook = Command::new("bash");
    hook.arg(d("sasl/upsert-scram-user.sh"))
        .env("SCRAM_USER", &broker_env["SCRAM_USER"])
        .env("SCRAM_PASSWORD_FILE", &password)
        .env("SCRAM_BOOTSTRAP", format!("127.0.0.1:{}", ports[0]))
        .env("SCRAM_UPSERT_TIMEOUT", "120")
        .env("KAFKA_CONFIGS", &tool);
    let out = run_ok(&mut hook);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("credential of user tweetoscope set"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Prod's client config, its two mounted paths here, the Service name the certificate's
    // localhost (the name the broker advertises here).
    let client = config_map(prod, "tweetoscope-config")["data"]["kafka.toml"].as_str().unwrap().to_owned();
    let k = deployed_dataflow(prod).kafka;
    let client = client
        .replace(&format!("\"{}\"", k.brokers), &format!("\"localhost:{}\"", ports[2]))
        .replace(k.sasl_password_file.as_ref().unwrap().to_str().unwrap(), password.to_str().unwrap())
        .replace(k.ssl_ca_location.as_ref().unwrap(), d("pki/ca.crt").to_str().unwrap());
    std::fs::write(d("client.toml"), &client).unwrap();
    // The file alone, as in the pods (the tests' environment may point Kafka elsewhere).
    let client_cmd = || {
        let mut cmd = binary();
        for var in tweetoscope::io::kafka::ENV_VARS {
            cmd.env_remove(var);
        }
        cmd
    };
    let out = run_ok(client_cmd().args(["topics", "--partitions", "1", "--config"]).arg(d("client.toml")));
    assert!(String::from_utf8_lossy(&out.stdout).contains("topics ready"), "{}", String::from_utf8_lossy(&out.stdout));
    // The producer path too (the generator Job's command): every message acknowledged.
    let out = run_ok(
        client_cmd()
            .args(["generate", "--input", "data/seismic-tideh100/raw/training/RT1.txt", "--speed", "max", "--config"])
            .arg(d("client.toml"))
            .current_dir(root()),
    );
    let said = String::from_utf8_lossy(&out.stdout);
    let counts: Vec<u64> = said.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    assert!(
        said.contains("acknowledged by the broker")
            && counts.len() == 3
            && counts[0] > 0
            && counts[1] == counts[0]
            && counts[2] == 0,
        "generate over SASL_SSL: {said}"
    );
    // The listener checks the password (and the test is not passing by accident).
    std::fs::write(d("wrong-password"), "not-the-password").unwrap();
    std::fs::write(d("wrong.toml"), client.replace(password.to_str().unwrap(), d("wrong-password").to_str().unwrap())).unwrap();
    let out = client_cmd().args(["topics", "--config"]).arg(d("wrong.toml")).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("SASL authentication failed"), "a wrong password: {stderr}");
}
