//! The workspace's binaries for end-to-end tests, and a clean environment to run them in.
//!
//! [`workspace_binary`] runs `cargo build -p NAME --bin NAME` once per test executable and
//! binary (a no-op when it is up to date), so that a test never runs a stale binary of another
//! package: `cargo test -p controller` builds only the controller's own targets. Cargo does not
//! hold its lock while tests run, so this does not deadlock. `E2E_NO_BUILD=1` skips the build
//! (the binaries must then be there).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// `target/<profile>`: where cargo puts the workspace's binaries (a test executable is in
/// `target/<profile>/deps`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    exe.parent()
        .and_then(Path::parent)
        .expect("the test executable is in target/<profile>/deps")
        .to_path_buf()
}

/// The path of the workspace binary `name` (its package has the same name), built for this
/// test executable's profile. Panics with cargo's output when it cannot be built.
pub fn workspace_binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<BTreeMap<String, Result<(), String>>>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let result = built.entry(name.to_owned()).or_insert_with(|| build(name));
    if let Err(error) = result {
        panic!("building {name}: {error}");
    }
    let path = profile_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(path.exists(), "no {name} binary at {}", path.display());
    path
}

fn build(name: &str) -> Result<(), String> {
    if std::env::var_os("E2E_NO_BUILD").is_some_and(|v| v == "1") {
        return Ok(());
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command
        .args(["build", "--quiet", "-p", name, "--bin", name])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir().file_name().is_some_and(|p| p == "release") {
        command.arg("--release");
    }
    match command.output() {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => Err(format!(
            "{command:?} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )),
        Err(error) => Err(format!("running {command:?}: {error}")),
    }
}

/// Removes from a spawned binary's environment every variable our binaries read (flags' `env`,
/// OpenTelemetry, logs, kubeconfig), so that what the machine running the tests has set (a CI
/// with `OTEL_EXPORTER_OTLP_ENDPOINT`, say) cannot change what a test runs. The tests set what
/// they need afterwards.
pub fn clean_env(command: &mut Command) {
    const PREFIXES: [&str; 7] = [
        "VPSIE_",
        "SAFETY_",
        "REBALANCER_",
        "CONTROLLER_",
        "OTEL_",
        "LEADER_",
        "KUBERNETES_SERVICE_",
    ];
    const NAMES: [&str; 7] = [
        "METRICS_LISTEN",
        "POD_NAMESPACE",
        "POD_NAME",
        "LOG_FORMAT",
        "RUST_LOG",
        "KUBECONFIG",
        "NO_COLOR",
    ];
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if NAMES.contains(&key) || PREFIXES.iter().any(|p| key.starts_with(p)) {
            command.env_remove(key);
        }
    }
}
