//! Settings: `settings.ini`, overridden by `LOAN_<SECTION>__<KEY>`
//! environment variables (for example `LOAN_HTTP__ADDRESS=0.0.0.0:8080`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use serde::Deserialize;

/// Environment variable naming the settings file, when it is not
/// `settings.ini` in the working directory.
pub const SETTINGS_FILE_VAR: &str = "LOAN_SETTINGS";

/// Every setting of the service.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// The HTTP API.
    pub http: HttpSettings,
    /// Where loans are stored.
    pub store: StoreSettings,
    /// How loans reach the workers.
    pub queue: QueueSettings,
    /// The credit bureau.
    pub bureau: BureauSettings,
    /// The credit policy and its sandbox.
    pub policy: PolicySettings,
}

/// The HTTP API.
#[derive(Debug, Clone, Deserialize)]
pub struct HttpSettings {
    /// Listen address, `host:port`.
    pub address: String,
}

/// Where loans are stored.
#[derive(Debug, Clone, Deserialize)]
pub struct StoreSettings {
    /// Comma-separated etcd endpoints; empty for the embedded store.
    #[serde(default)]
    pub etcd_endpoints: String,
    /// Key prefix under which every loan is kept in etcd.
    pub etcd_prefix: String,
    /// Folder of the embedded store's database file.
    pub data_dir: PathBuf,
}

impl StoreSettings {
    /// The etcd endpoints, or none for the embedded store.
    pub fn endpoints(&self) -> Vec<String> {
        split_list(&self.etcd_endpoints)
    }
}

/// How loans reach the workers.
#[derive(Debug, Clone, Deserialize)]
pub struct QueueSettings {
    /// AMQP URL of RabbitMQ; empty for the in-process queue.
    #[serde(default)]
    pub amqp_url: Secret,
    /// Name of the durable evaluation queue.
    pub name: String,
    /// Most deliveries a worker holds unacknowledged at once. Higher keeps a
    /// worker busy while it waits on the bureau; lower spreads work across
    /// workers and bounds what a slow bureau can pile up.
    pub prefetch: u16,
    /// Evaluations tried per loan before it becomes `failed`.
    pub max_attempts: u32,
    /// Delay before the first retry; each further retry doubles it.
    pub retry_delay_ms: u64,
}

impl QueueSettings {
    /// Delay before retrying after `attempt` failed evaluations.
    pub fn retry_delay(&self, attempt: u32) -> Duration {
        let factor = 1u64 << attempt.saturating_sub(1).min(16);
        Duration::from_millis(self.retry_delay_ms.saturating_mul(factor))
    }
}

/// The credit bureau.
#[derive(Debug, Clone, Deserialize)]
pub struct BureauSettings {
    /// Base URL; empty to run the built-in simulator in the same process.
    #[serde(default)]
    pub url: String,
    /// The secret sent as `x-api-key`.
    pub api_key: Secret,
    /// Timeout of one bureau call.
    pub timeout_ms: u64,
    /// Extra tries of a failed call within one evaluation, with backoff.
    pub retries: u32,
    /// Fixture file of the simulator: CPFs mapped to answers.
    #[serde(default)]
    pub fixtures: String,
    /// Listen address of `loan simulator`.
    pub simulator_address: String,
}

impl BureauSettings {
    /// Timeout of one bureau call.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// The simulator's fixture file, if one is set.
    pub fn fixtures_path(&self) -> Option<PathBuf> {
        (!self.fixtures.trim().is_empty()).then(|| PathBuf::from(self.fixtures.trim()))
    }
}

/// The credit policy and its sandbox.
#[derive(Debug, Clone, Deserialize)]
pub struct PolicySettings {
    /// Path of the policy component (`.wasm`).
    pub path: PathBuf,
    /// IANA time zone whose date is the evaluation date.
    pub time_zone: String,
    /// Longest an evaluation may run, bureau calls excluded; past it the
    /// evaluation is stopped and counts as a failed attempt.
    pub deadline_ms: u64,
    /// Most linear memory one evaluation may grow to, in MiB.
    pub memory_limit_mib: u64,
    /// Evaluations run at once per process; the pooling allocator reserves
    /// this many instance slots.
    pub max_instances: u32,
}

/// A setting that must never be printed: its `Debug` output is redacted.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether no value is set.
    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

/// Why the settings could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("cannot load settings: {0}")]
pub struct SettingsError(#[from] config::ConfigError);

/// The defaults, as shipped in `settings.ini`, so the service runs even
/// without the file.
const DEFAULTS: &str = include_str!("../../settings.ini");

impl Settings {
    /// Loads the defaults, then `file` (or the file named by `LOAN_SETTINGS`,
    /// or `settings.ini` when present), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, SettingsError> {
        let env_file = std::env::var_os(SETTINGS_FILE_VAR).map(PathBuf::from);
        let mut builder = Config::builder().add_source(File::from_str(DEFAULTS, FileFormat::Ini));
        match file.map(Path::to_path_buf).or(env_file) {
            Some(path) => {
                builder = builder.add_source(File::from(path).format(FileFormat::Ini));
            }
            None => {
                builder = builder.add_source(
                    File::with_name("settings.ini")
                        .format(FileFormat::Ini)
                        .required(false),
                );
            }
        }
        let config = builder
            .add_source(
                Environment::with_prefix("LOAN")
                    .prefix_separator("_")
                    .separator("__"),
            )
            .build()?;
        Ok(config.try_deserialize()?)
    }
}

fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_defaults_load_and_run_embedded() {
        let settings = Settings::load(Some(Path::new("../settings.ini"))).unwrap();
        assert!(settings.store.endpoints().is_empty());
        assert!(settings.queue.amqp_url.is_empty());
        assert_eq!(settings.policy.time_zone, "America/Sao_Paulo");
    }

    #[test]
    fn retry_delay_doubles() {
        let settings = Settings::load(Some(Path::new("../settings.ini"))).unwrap();
        let base = settings.queue.retry_delay(1);
        assert_eq!(settings.queue.retry_delay(2), base * 2);
        assert_eq!(settings.queue.retry_delay(3), base * 4);
    }

    #[test]
    fn secrets_are_redacted() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "\"***\"");
    }
}
