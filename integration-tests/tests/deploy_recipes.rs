//! The deployment recipes in deploy/: every YAML file parses, and the Kubernetes recipe's
//! worker environment is exactly what `leakscope env` prints for the paths inside the pod.

use std::path::{Path, PathBuf};
use std::process::Command;

use integration_tests::*;
use serde::Deserialize;
use serde_yaml::Value;

const LIB_DIR: &str = "/leakscope/lib";
const SOCKET: &str = "/leakscope/run/leakscope.sock";

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            out.push(path);
        }
    }
}

/// Every document of a (multi-document) YAML file.
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display())))
        .collect()
}

fn get<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, k| &v[*k])
}

fn named<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_sequence()
        .unwrap_or_else(|| panic!("not a list: {list:?}"))
        .iter()
        .find(|c| c["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("nothing named {name} in {list:?}"))
}

fn str_list(v: &Value) -> Vec<&str> {
    v.as_sequence().unwrap().iter().map(|s| s.as_str().unwrap()).collect()
}

#[test]
fn every_yaml_file_in_deploy_parses() {
    let mut files = Vec::new();
    yaml_files(&workspace_root().join("deploy"), &mut files);
    files.sort();
    let names: Vec<String> =
        files.iter().map(|f| f.strip_prefix(workspace_root()).unwrap().display().to_string()).collect();
    for expected in [
        "deploy/kubernetes/deployment-patch.yaml",
        "deploy/kubernetes/servicemonitor.yaml",
        "deploy/prometheus/leakscope-rules.yml",
        "deploy/prometheus/leakscope-rules.test.yml",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected} missing: {names:?}");
    }
    for file in &files {
        let docs = documents(file);
        assert!(!docs.is_empty() && docs.iter().all(|d| d.is_mapping()), "{}: {docs:?}", file.display());
    }
    // Kubernetes objects say what they are.
    for file in files.iter().filter(|f| f.starts_with(workspace_root().join("deploy/kubernetes"))) {
        for doc in documents(file) {
            assert!(doc["apiVersion"].is_string() && doc["kind"].is_string(), "{}: {doc:?}", file.display());
        }
    }
}

#[test]
fn kubernetes_env_block_is_what_leakscope_env_prints_and_the_pieces_agree() {
    let patch_path = workspace_root().join("deploy/kubernetes/deployment-patch.yaml");
    let patch = documents(&patch_path).remove(0);
    let spec = get(&patch, &["spec", "template", "spec"]);
    let worker = named(&spec["containers"], "orders");
    let service = named(&worker["env"], "LEAKSCOPE_SERVICE")["value"].as_str().unwrap().to_string();

    let out = Command::new(cli_path())
        .args(["env", "--lib-dir", LIB_DIR, "--socket", SOCKET, "--service", &service])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = stdout_of(&out);
    // The commented Kubernetes block of `leakscope env`, uncommented, is YAML.
    let block: String = text
        .lines()
        .skip_while(|l| *l != "#   env:")
        .map(|l| l.strip_prefix("# ").unwrap_or_else(|| panic!("not a comment: {l}")))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(!block.is_empty(), "no Kubernetes block in:\n{text}");
    let printed: Value = serde_yaml::from_str(&block).unwrap();
    assert_eq!(
        worker["env"],
        printed["env"],
        "the worker's env in {} differs from `leakscope env`:\n{text}",
        patch_path.display()
    );

    // The init container copies both libraries into the volume the worker reads them from.
    let env_value = |k: &str| named(&worker["env"], k)["value"].as_str().unwrap().to_string();
    let init = named(&spec["initContainers"], "leakscope-install");
    let lib_mount = named(&init["volumeMounts"], "leakscope-lib")["mountPath"].as_str().unwrap();
    assert_eq!(lib_mount, LIB_DIR);
    assert_eq!(named(&worker["volumeMounts"], "leakscope-lib")["mountPath"].as_str(), Some(LIB_DIR));
    let copy = str_list(&init["command"]);
    assert_eq!(copy[0], "cp");
    assert_eq!(copy.last().unwrap().trim_end_matches('/'), LIB_DIR);
    for var in ["CORECLR_PROFILER_PATH", "LD_PRELOAD"] {
        let file = Path::new(&env_value(var)).file_name().unwrap().to_str().unwrap().to_string();
        assert!(copy.iter().any(|c| c.ends_with(&format!("/{file}"))), "{var}: {file} is not copied by {copy:?}");
    }

    // The sidecar listens on the worker's socket, in a directory both mount, and serves the
    // metrics on the port the pod declares and the annotations name.
    let sidecar = named(&spec["containers"], "leakscope");
    let args = str_list(&sidecar["args"]);
    let after = |flag: &str| args[args.iter().position(|a| *a == flag).unwrap() + 1];
    assert_eq!(args[0], "listen");
    assert_eq!(after("--socket"), env_value("LEAKSCOPE_SOCKET"));
    let run_dir = Path::new(SOCKET).parent().unwrap().to_str().unwrap();
    assert_eq!(named(&worker["volumeMounts"], "leakscope-run")["mountPath"].as_str(), Some(run_dir));
    assert_eq!(named(&sidecar["volumeMounts"], "leakscope-run")["mountPath"].as_str(), Some(run_dir));
    let port = after("--metrics").rsplit(':').next().unwrap();
    assert_eq!(named(&sidecar["ports"], "leakscope")["containerPort"].as_u64().unwrap().to_string(), port);
    let annotations = get(&patch, &["spec", "template", "metadata", "annotations"]);
    assert_eq!(annotations["prometheus.io/port"].as_str(), Some(port));
    // The sidecar's flags are ones `leakscope listen` accepts.
    let help = Command::new(cli_path()).args(["listen", "--help"]).output().unwrap();
    for flag in args.iter().filter(|a| a.starts_with("--")) {
        assert!(stdout_of(&help).contains(flag), "listen has no {flag}");
    }

    // Every volume mounted is declared, and the Service targets the sidecar's port by name.
    let volumes: Vec<&str> =
        spec["volumes"].as_sequence().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    for c in [worker, sidecar, init] {
        for m in c["volumeMounts"].as_sequence().unwrap() {
            assert!(volumes.contains(&m["name"].as_str().unwrap()), "{m:?} not in {volumes:?}");
        }
    }
    let monitor = documents(&workspace_root().join("deploy/kubernetes/servicemonitor.yaml"));
    let svc = monitor.iter().find(|d| d["kind"].as_str() == Some("Service")).unwrap();
    assert_eq!(svc["spec"]["ports"][0]["targetPort"].as_str(), Some("leakscope"));
    let sm = monitor.iter().find(|d| d["kind"].as_str() == Some("ServiceMonitor")).unwrap();
    assert_eq!(sm["spec"]["endpoints"][0]["port"].as_str(), Some("leakscope"));
    assert_eq!(sm["spec"]["endpoints"][0]["path"].as_str(), Some("/metrics"));
}
