//! The controller's YAML configuration (`controller.md`, "Configuration"): one file, usually
//! mounted from a ConfigMap. Unknown keys, malformed values and inconsistent settings are errors
//! that name the file and the key path (`nodeGroups[0].minNodes: …`).
//!
//! Every key has a default except inside `nodeGroups`, where `name`, `minNodes` and `maxNodes`
//! are required; a group's `offering` is optional (without it the group's nodes are never
//! considered drifted). `cluster` defaults to the empty string.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// The VPSie cluster identifier.
    #[serde(default)]
    pub cluster: String,
    /// How often the online loop scans.
    #[serde(default = "defaults::scan_interval", deserialize_with = "duration")]
    pub scan_interval: Duration,
    /// Ask the rebalancer to plan and report only: no VPSie or Kubernetes write.
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub scale_down: ScaleDown,
    #[serde(default)]
    pub node_groups: Vec<NodeGroup>,
    #[serde(default)]
    pub rebalance: Rebalance,
}

/// `scaleDown`: removing underutilised nodes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScaleDown {
    #[serde(default = "defaults::enabled")]
    pub enabled: bool,
    /// A node is a candidate when max(cpu, memory) requests / allocatable is below this;
    /// in (0, 1].
    #[serde(default = "defaults::utilization_threshold")]
    pub utilization_threshold: f64,
    /// How long a node must stay removable, without interruption, before it is removed.
    #[serde(default = "defaults::unneeded_time", deserialize_with = "duration")]
    pub unneeded_time: Duration,
    /// Nodes removed at once, cluster-wide (removals in flight included); at least 1.
    #[serde(default = "defaults::max_parallel")]
    pub max_parallel: u32,
    #[serde(default)]
    pub drain: Drain,
}

/// `scaleDown.drain`: passed to `RemoveNodes` (and to rebalance plans).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Drain {
    /// How long a drain may take; at least one second, whole seconds (rounded up).
    #[serde(default = "defaults::drain_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// `null` (the default): each pod's own grace period.
    #[serde(default)]
    pub pod_grace_period_seconds: Option<u32>,
}

/// One entry of `nodeGroups`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeGroup {
    /// Matches the `autoscaler.vpsie.com/nodegroup` label.
    pub name: String,
    pub min_nodes: u32,
    pub max_nodes: u32,
    /// The desired VPSie offering; nodes labelled otherwise have drifted. Without it the group's
    /// nodes never drift.
    #[serde(default)]
    pub offering: Option<String>,
}

/// `rebalance`: replacing drifted nodes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rebalance {
    #[serde(default = "defaults::enabled")]
    pub enabled: bool,
    #[serde(default)]
    pub strategy: Strategy,
    /// Nodes replaced per batch; at least 1.
    #[serde(default = "defaults::batch_size")]
    pub batch_size: u32,
}

/// How the rebalancer replaces a plan's nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Replace one batch after the other: new machine, drain, delete.
    #[default]
    Rolling,
    /// Provision a whole batch's replacements first.
    Surge,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Rolling => "rolling",
            Strategy::Surge => "surge",
        }
    }
}

mod defaults {
    use std::time::Duration;

    pub fn scan_interval() -> Duration {
        Duration::from_secs(10)
    }
    pub fn enabled() -> bool {
        true
    }
    pub fn utilization_threshold() -> f64 {
        0.5
    }
    pub fn unneeded_time() -> Duration {
        Duration::from_secs(10 * 60)
    }
    pub fn max_parallel() -> u32 {
        1
    }
    pub fn drain_timeout() -> Duration {
        Duration::from_secs(5 * 60)
    }
    pub fn batch_size() -> u32 {
        1
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cluster: String::new(),
            scan_interval: defaults::scan_interval(),
            dry_run: false,
            scale_down: ScaleDown::default(),
            node_groups: Vec::new(),
            rebalance: Rebalance::default(),
        }
    }
}

impl Default for ScaleDown {
    fn default() -> Self {
        ScaleDown {
            enabled: true,
            utilization_threshold: defaults::utilization_threshold(),
            unneeded_time: defaults::unneeded_time(),
            max_parallel: defaults::max_parallel(),
            drain: Drain::default(),
        }
    }
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            timeout: defaults::drain_timeout(),
            pod_grace_period_seconds: None,
        }
    }
}

impl Default for Rebalance {
    fn default() -> Self {
        Rebalance {
            enabled: true,
            strategy: Strategy::Rolling,
            batch_size: defaults::batch_size(),
        }
    }
}

/// Why a configuration cannot be used. The Display names the file and, for a bad value, the
/// key path: `config.yaml: nodeGroups[0].minNodes: 5 is greater than maxNodes (3)`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{file}: cannot read the configuration: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML, has an unknown key or a bad value, or is inconsistent.
    #[error("{file}: {}", located(path, message))]
    Invalid {
        file: String,
        /// The key path, e.g. `scaleDown.drain.timeout` or `nodeGroups[1].name`; empty when the
        /// document as a whole is wrong (a YAML syntax error).
        path: String,
        message: String,
    },
}

fn located(path: &str, message: &str) -> String {
    if path.is_empty() {
        message.to_owned()
    } else {
        format!("{path}: {message}")
    }
}

impl ConfigError {
    /// The key path of an invalid value (empty for syntax and read errors).
    pub fn path(&self) -> &str {
        match self {
            ConfigError::Read { .. } => "",
            ConfigError::Invalid { path, .. } => path,
        }
    }
}

impl Config {
    /// Reads and validates the file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        Config::from_yaml(&text, &file)
    }

    /// Parses and validates YAML text; `file` only names the source in errors. An empty
    /// document is every default.
    pub fn from_yaml(text: &str, file: &str) -> Result<Config, ConfigError> {
        let invalid = |path: String, message: String| ConfigError::Invalid {
            file: file.to_owned(),
            path,
            message,
        };
        let is_empty = text
            .lines()
            .map(|line| line.split('#').next().unwrap_or("").trim())
            .all(|line| line.is_empty() || line == "---");
        let config = if is_empty {
            Config::default()
        } else {
            let deserializer = serde_norway::Deserializer::from_str(text);
            serde_path_to_error::deserialize(deserializer).map_err(|error| {
                let path = error.path().to_string();
                let path = if path == "." { String::new() } else { path };
                let message = error.into_inner().to_string();
                // serde_norway puts the path (or its parent) in front of some messages itself.
                let message = match message.split_once(": ") {
                    Some((head, rest))
                        if !head.is_empty() && !head.contains(' ') && path.starts_with(head) =>
                    {
                        rest.to_owned()
                    }
                    _ => message,
                };
                invalid(path, message)
            })?
        };
        config
            .validate()
            .map_err(|(path, message)| invalid(path, message))?;
        Ok(config)
    }

    /// Checks what the types alone do not: returns the key path and what is wrong.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.scan_interval.is_zero() {
            return Err(("scanInterval".into(), "must be greater than zero".into()));
        }
        let threshold = self.scale_down.utilization_threshold;
        if !(threshold > 0.0 && threshold <= 1.0) {
            return Err((
                "scaleDown.utilizationThreshold".into(),
                format!("must be greater than 0 and at most 1, got {threshold}"),
            ));
        }
        if self.scale_down.max_parallel == 0 {
            return Err(("scaleDown.maxParallel".into(), "must be at least 1".into()));
        }
        if self.scale_down.drain.timeout < Duration::from_secs(1) {
            return Err((
                "scaleDown.drain.timeout".into(),
                "must be at least 1s".into(),
            ));
        }
        if self.scale_down.drain.timeout.as_secs() > i32::MAX as u64 {
            return Err((
                "scaleDown.drain.timeout".into(),
                format!("must be at most {}s", i32::MAX),
            ));
        }
        if let Some(grace) = self.scale_down.drain.pod_grace_period_seconds
            && grace > i32::MAX as u32
        {
            return Err((
                "scaleDown.drain.podGracePeriodSeconds".into(),
                format!("must be at most {}, got {grace}", i32::MAX),
            ));
        }
        if self.rebalance.batch_size == 0 {
            return Err(("rebalance.batchSize".into(), "must be at least 1".into()));
        }
        if self.rebalance.batch_size > i32::MAX as u32 {
            return Err((
                "rebalance.batchSize".into(),
                format!("must be at most {}", i32::MAX),
            ));
        }
        for (i, group) in self.node_groups.iter().enumerate() {
            let at = |key: &str| format!("nodeGroups[{i}].{key}");
            if group.name.is_empty() {
                return Err((at("name"), "must not be empty".into()));
            }
            if let Some(first) = self.node_groups[..i]
                .iter()
                .position(|other| other.name == group.name)
            {
                return Err((
                    at("name"),
                    format!(
                        "duplicate node group {:?} (also nodeGroups[{first}])",
                        group.name
                    ),
                ));
            }
            if group.min_nodes > group.max_nodes {
                return Err((
                    at("minNodes"),
                    format!(
                        "{} is greater than maxNodes ({})",
                        group.min_nodes, group.max_nodes
                    ),
                ));
            }
            if group.offering.as_deref() == Some("") {
                return Err((
                    at("offering"),
                    "must not be empty (leave it out to disable drift detection)".into(),
                ));
            }
        }
        Ok(())
    }

    /// The configured group of that name.
    pub fn group(&self, name: &str) -> Option<&NodeGroup> {
        self.node_groups.iter().find(|group| group.name == name)
    }
}

/// Deserializes a duration written as humantime text: `10s`, `5m`, `1h 30m`, `250ms`.
fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    struct DurationText;

    impl Visitor<'_> for DurationText {
        type Value = Duration;

        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str("a duration such as \"10s\", \"5m\" or \"1h 30m\"")
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
            humantime::parse_duration(text).map_err(|error| {
                E::custom(format_args!(
                    "invalid duration {text:?}: {error} (write e.g. \"10s\", \"5m\" or \"1h 30m\")"
                ))
            })
        }
    }

    deserializer.deserialize_str(DurationText)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(yaml: &str) -> ConfigError {
        Config::from_yaml(yaml, "config.yaml").expect_err("the configuration must be refused")
    }

    const FULL: &str = r#"
cluster: my-cluster-identifier      # VPSie cluster identifier
scanInterval: 10s
dryRun: false
scaleDown:
  enabled: true
  utilizationThreshold: 0.5
  unneededTime: 10m
  maxParallel: 1
  drain:
    timeout: 5m
    podGracePeriodSeconds: null
nodeGroups:
  - name: general
    minNodes: 2
    maxNodes: 10
    offering: "2-4"
rebalance:
  enabled: true
  strategy: rolling
  batchSize: 1
"#;

    #[test]
    fn the_documented_example_parses() {
        let config = Config::from_yaml(FULL, "config.yaml").unwrap();
        assert_eq!(config.cluster, "my-cluster-identifier");
        assert_eq!(config.scan_interval, Duration::from_secs(10));
        assert_eq!(config.scale_down.unneeded_time, Duration::from_secs(600));
        assert_eq!(config.scale_down.drain.timeout, Duration::from_secs(300));
        assert_eq!(config.scale_down.drain.pod_grace_period_seconds, None);
        assert_eq!(
            config.node_groups,
            vec![NodeGroup {
                name: "general".into(),
                min_nodes: 2,
                max_nodes: 10,
                offering: Some("2-4".into()),
            }]
        );
        assert_eq!(config.rebalance.strategy, Strategy::Rolling);
        // The documented example is the set of defaults, apart from cluster and groups.
        let defaults = Config {
            cluster: config.cluster.clone(),
            node_groups: config.node_groups.clone(),
            ..Config::default()
        };
        assert_eq!(config, defaults);
    }

    #[test]
    fn missing_keys_take_the_defaults() {
        let config = Config::from_yaml("scaleDown:\n  maxParallel: 3\n", "c.yaml").unwrap();
        assert_eq!(config.scale_down.max_parallel, 3);
        assert_eq!(config.scale_down.utilization_threshold, 0.5);
        assert!(config.scale_down.enabled);
        assert!(config.rebalance.enabled);
        assert_eq!(config.rebalance.batch_size, 1);
        assert_eq!(Config::from_yaml("", "c.yaml").unwrap(), Config::default());
        assert_eq!(
            Config::from_yaml("# nothing\n---\n", "c.yaml").unwrap(),
            Config::default()
        );
    }

    #[test]
    fn surge_and_durations_in_other_units_parse() {
        let config = Config::from_yaml(
            "rebalance:\n  strategy: surge\n  batchSize: 3\nscaleDown:\n  unneededTime: 1h 30m\n  drain:\n    podGracePeriodSeconds: 30\n",
            "c.yaml",
        )
        .unwrap();
        assert_eq!(config.rebalance.strategy, Strategy::Surge);
        assert_eq!(config.scale_down.unneeded_time, Duration::from_secs(5400));
        assert_eq!(config.scale_down.drain.pod_grace_period_seconds, Some(30));
    }

    #[test]
    fn an_unknown_key_is_named_with_its_path() {
        let error = error_of("scaleDown:\n  drain:\n    timeoutt: 5m\n");
        assert_eq!(error.path(), "scaleDown.drain.timeoutt");
        let text = error.to_string();
        assert!(
            text.starts_with(
                "config.yaml: scaleDown.drain.timeoutt: unknown field `timeoutt`, expected `timeout` or `podGracePeriodSeconds`"
            ),
            "{text}"
        );

        let text = error_of("clusterr: x\n").to_string();
        assert!(text.starts_with("config.yaml: clusterr: "), "{text}");
        assert!(text.contains("unknown field `clusterr`"), "{text}");

        let text =
            error_of("nodeGroups:\n  - name: a\n    minNodes: 1\n    maxNodes: 2\n    size: 3\n")
                .to_string();
        assert!(
            text.starts_with("config.yaml: nodeGroups[0].size: "),
            "{text}"
        );
        assert!(text.contains("unknown field `size`"), "{text}");
    }

    #[test]
    fn a_bad_duration_is_named_with_its_path() {
        let error = error_of("scaleDown:\n  unneededTime: 10 parsecs\n");
        assert_eq!(error.path(), "scaleDown.unneededTime");
        let text = error.to_string();
        assert!(
            text.starts_with(
                "config.yaml: scaleDown.unneededTime: invalid duration \"10 parsecs\""
            ),
            "{text}"
        );
        assert_eq!(error_of("scanInterval: 10\n").path(), "scanInterval");
        assert_eq!(error_of("scanInterval: 0s\n").path(), "scanInterval");
        assert_eq!(
            error_of("scaleDown:\n  drain:\n    timeout: 0s\n").path(),
            "scaleDown.drain.timeout"
        );
    }

    #[test]
    fn min_nodes_above_max_nodes_names_the_group_entry() {
        let error = error_of(
            "nodeGroups:\n  - name: a\n    minNodes: 1\n    maxNodes: 2\n  - name: b\n    minNodes: 5\n    maxNodes: 3\n",
        );
        assert_eq!(error.path(), "nodeGroups[1].minNodes");
        assert_eq!(
            error.to_string(),
            "config.yaml: nodeGroups[1].minNodes: 5 is greater than maxNodes (3)"
        );
    }

    #[test]
    fn a_threshold_outside_zero_to_one_is_refused() {
        for bad in ["0", "0.0", "-0.1", "1.01", "2", ".nan"] {
            let error = error_of(&format!("scaleDown:\n  utilizationThreshold: {bad}\n"));
            assert_eq!(error.path(), "scaleDown.utilizationThreshold", "{bad}");
        }
        for good in ["1", "0.01", "0.75"] {
            Config::from_yaml(
                &format!("scaleDown:\n  utilizationThreshold: {good}\n"),
                "c",
            )
            .unwrap();
        }
    }

    #[test]
    fn duplicate_group_names_are_refused() {
        let error = error_of(
            "nodeGroups:\n  - {name: a, minNodes: 1, maxNodes: 2}\n  - {name: a, minNodes: 1, maxNodes: 2}\n",
        );
        assert_eq!(error.path(), "nodeGroups[1].name");
        assert!(error.to_string().contains("duplicate node group \"a\""));
    }

    #[test]
    fn zero_max_parallel_and_batch_size_are_refused() {
        assert_eq!(
            error_of("scaleDown:\n  maxParallel: 0\n").path(),
            "scaleDown.maxParallel"
        );
        assert_eq!(
            error_of("rebalance:\n  batchSize: 0\n").path(),
            "rebalance.batchSize"
        );
    }

    #[test]
    fn bad_types_and_values_are_named() {
        assert_eq!(
            error_of("scaleDown:\n  maxParallel: -1\n").path(),
            "scaleDown.maxParallel"
        );
        assert_eq!(
            error_of("rebalance:\n  strategy: blue-green\n").path(),
            "rebalance.strategy"
        );
        assert_eq!(
            error_of("nodeGroups:\n  - {name: a, minNodes: 1}\n").path(),
            "nodeGroups[0]"
        );
        assert_eq!(
            error_of("nodeGroups:\n  - {name: '', minNodes: 1, maxNodes: 1}\n").path(),
            "nodeGroups[0].name"
        );
        assert_eq!(error_of("dryRun: perhaps\n").path(), "dryRun");
    }

    #[test]
    fn a_yaml_syntax_error_names_the_file() {
        let text = error_of("scaleDown:\n\tmaxParallel: 1\n").to_string();
        assert!(text.starts_with("config.yaml: "), "{text}");
        assert!(text.contains("line 2 column 1"), "{text}");
    }

    #[test]
    fn an_unreadable_file_names_the_file() {
        let error = Config::load(Path::new("/nonexistent/controller.yaml")).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("/nonexistent/controller.yaml: cannot read"),
            "{error}"
        );
    }
}
