//! The Kubernetes deployment, checked rather than trusted (k8s/, scripts/k8s-check):
//! - the ConfigMaps of every rendered overlay hold the repo's own files, byte for byte;
//! - the command lines of the manifests parse with this binary's CLI, and the StatefulSet,
//!   its headless Service, -n and the entrypoint agree;
//! - three local processes, each with the hostfile the entrypoint renders for its pod (the
//!   pods' DNS names mapped to 127.0.0.1 ports), form one timely cluster whose outputs equal
//!   a single-process run's.

mod common;

use std::collections::BTreeMap;
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
        assert!(data[name].as_str() == Some(text.as_str()), "{overlay}: {}/{name} differs from the repo's file", cm["metadata"]["name"]);
    }
}

fn one(name: &str, path: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(name.to_owned(), read(path))])
}

#[test]
fn config_maps_hold_the_repos_own_files_byte_for_byte() {
    for (overlay, all) in rendered() {
        assert_holds(overlay, config_map(all, "tweetoscope-config"), &one("kafka.toml", "dataflows/kafka.toml"));
        assert_holds(overlay, config_map(all, "prometheus-rules"), &files_of("ops/prometheus/rules", "yml"));
        assert_holds(overlay, config_map(all, "alertmanager-config"), &one("alertmanager.yml", "ops/alertmanager/alertmanager.yml"));
        assert_holds(overlay, config_map(all, "grafana-dashboards"), &files_of("ops/grafana/dashboards", "json"));
        assert_holds(
            overlay,
            config_map(all, "grafana-dashboard-providers"),
            &files_of("ops/grafana/provisioning/dashboards", "yml"),
        );
        // The two cluster-specific files (discovery instead of 127.0.0.1) live in k8s/base.
        assert_holds(overlay, config_map(all, "prometheus-config"), &one("prometheus.yml", "k8s/base/monitoring/prometheus.yml"));
        assert_holds(overlay, config_map(all, "grafana-datasources"), &one("tweetoscope.yml", "k8s/base/monitoring/grafana-datasource.yml"));
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
        // NodePorts as in the course.
        assert_eq!(named(all, "Service", "prometheus")["spec"]["ports"][0]["nodePort"], 30187, "{overlay}");
        assert_eq!(named(all, "Service", "alertmanager")["spec"]["ports"][0]["nodePort"], 30189, "{overlay}");
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
    // The brokers are the Kafka Service of the manifests.
    let (host, port) = kafka.kafka.brokers.split_once(':').unwrap();
    for (overlay, all) in rendered() {
        let svc = named(all, "Service", host);
        assert!(svc["spec"]["ports"].as_array().unwrap().iter().any(|p| p["port"].as_u64().map(|n| n.to_string()).as_deref() == Some(port)), "{overlay}");
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
                    out.push((format!("{}/{}/{}", o["kind"].as_str().unwrap(), o["metadata"]["name"].as_str().unwrap(), c["name"].as_str().unwrap()), c));
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
    c["env"].as_array().into_iter().flatten().filter_map(|e| Some((e["name"].as_str()?.to_owned(), e["value"].as_str()?.to_owned()))).collect()
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
        let Some(Sub::Hostfile(args)) = Cli::try_parse_from(std::iter::once("tweetoscope".to_owned()).chain(args_of(main))).unwrap().command
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
                    format!("tweetoscope-{j}.{}.{namespace}.svc.cluster.local:2101", service["metadata"]["name"].as_str().unwrap())
                };
                assert_eq!(line, &expected, "{overlay} pod {ordinal}");
            }
            let out = args.out.as_ref().unwrap().display().to_string();
            assert!(mounts.iter().any(|m| out.starts_with(m["mountPath"].as_str().unwrap())), "{overlay}: {out} is not on a volume");
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
        let expected: String = (0..N).map(|j| if j == i { "0.0.0.0:2101\n".to_owned() } else { format!("{}\n", dns(j)) }).collect();
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
        assert!(stderr_of(dir.path(), i).contains(&format!("process {i} of {N}: -n {N} -p {i} -h")), "{}", stderr_of(dir.path(), i));
    }
    // One cluster: process 0's outputs are those of a single-process run.
    let single = dir.path().join("single");
    run_ok(binary().args(["run", "--input"]).arg(bundled_sample()).args(["--metrics-addr", "off", "--out"]).arg(&single));
    assert_same_outputs(&single, &dir.path().join("out-0"));
}
