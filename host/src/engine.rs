//! The one wasmtime engine of the process and everything built on it: the
//! instance pool, the deadline ticker, the linker with the WASI and loan
//! imports, the cache of loaded policies, and fresh stores for evaluations.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use loan_core::settings::PolicySettings;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline,
};

use crate::bindings;
use crate::imports::{Applicant, EvalState, LogTags};
use crate::policy::{self, Policy, PolicyError};
use crate::sandbox::{ComputeBudget, DeadlineExceeded};

/// Core instances one policy may create. Rust components have a handful;
/// components from interpreted languages link more modules. Only a count:
/// nothing is reserved per instance.
const CORE_INSTANCES_PER_POLICY: u32 = 64;
/// Linear memories one policy may have. Each reserves address space in the
/// pool for every instance slot, so this is kept low.
const MEMORIES_PER_POLICY: u32 = 2;
/// Tables one policy may have.
const TABLES_PER_POLICY: u32 = 16;
/// Largest memory limit accepted: a 32-bit linear memory holds 4 GiB.
const MAX_MEMORY_LIMIT_MIB: u64 = 4096;

/// Why the engine could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A policy setting is out of range.
    #[error("the policy setting {name} is invalid: {reason}")]
    Setting {
        /// The setting's key in `[policy]`.
        name: &'static str,
        /// What is accepted.
        reason: String,
    },
    /// The configured time zone is unknown.
    #[error("the policy time zone {name:?} is not a known IANA time zone: {reason}")]
    TimeZone {
        /// The configured name.
        name: String,
        /// What went wrong looking it up.
        reason: String,
    },
    /// wasmtime refused the configuration, or the ticker thread could not
    /// start.
    #[error("cannot start the policy engine: {0}")]
    Start(String),
}

/// The policy engine: one per process, cheap to clone.
///
/// Policies run with a fresh instance per evaluation from a pool of
/// `max_instances` slots (an evaluation waits for a free slot rather than
/// fail), stopped after `deadline_ms` of computing by epoch interruption,
/// and limited to `memory_limit_mib` of linear memory in all.
#[derive(Clone)]
pub struct PolicyEngine {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linker: Linker<EvalState>,
    policies: Mutex<HashMap<String, Arc<Policy>>>,
    deadline: Duration,
    memory_limit: usize,
    slots: Arc<Semaphore>,
    time_zone: TimeZone,
    time_zone_name: String,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("deadline", &self.inner.deadline)
            .field("memory_limit", &self.inner.memory_limit)
            .field("time_zone", &self.inner.time_zone_name)
            .finish_non_exhaustive()
    }
}

/// Largest policy component file loaded. Components built from interpreted
/// languages weigh 12 to 18 MB; compiled ones well under 1 MB.
pub const MAX_POLICY_BYTES: u64 = 128 * 1024 * 1024;

impl PolicyEngine {
    /// Builds the engine from the `[policy]` settings (all but `path`, which
    /// names what to [`load`](Self::load)).
    pub fn new(settings: &PolicySettings) -> Result<Self, EngineError> {
        let PolicySettings {
            path: _,
            time_zone,
            deadline_ms,
            memory_limit_mib,
            max_instances,
        } = settings;

        let setting = |name, reason: &str| EngineError::Setting {
            name,
            reason: reason.to_owned(),
        };
        if *deadline_ms == 0 {
            return Err(setting("deadline_ms", "must be at least 1"));
        }
        if !(1..=MAX_MEMORY_LIMIT_MIB).contains(memory_limit_mib) {
            return Err(setting("memory_limit_mib", "must be from 1 to 4096"));
        }
        if *max_instances == 0 {
            return Err(setting("max_instances", "must be at least 1"));
        }
        let tz = TimeZone::get(time_zone.trim()).map_err(|e| EngineError::TimeZone {
            name: time_zone.clone(),
            reason: e.to_string(),
        })?;
        let deadline = Duration::from_millis(*deadline_ms);
        // Fits: at most 4 GiB, checked above, on a 64-bit host.
        let memory_limit = usize::try_from(memory_limit_mib << 20)
            .map_err(|_| setting("memory_limit_mib", "does not fit this platform"))?;

        let engine = Engine::new(&config(*max_instances, memory_limit))
            .map_err(|e| EngineError::Start(e.to_string()))?;
        start_ticker(&engine, tick(deadline))?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .and_then(|()| {
                bindings::Policy::add_to_linker::<_, HasSelf<EvalState>>(&mut linker, |s| s)
            })
            .map_err(|e| EngineError::Start(e.to_string()))?;

        tracing::debug!(
            deadline_ms,
            memory_limit_mib,
            max_instances,
            time_zone = %time_zone.trim(),
            "policy engine started"
        );
        Ok(PolicyEngine {
            inner: Arc::new(Inner {
                engine,
                linker,
                policies: Mutex::new(HashMap::new()),
                deadline,
                memory_limit,
                slots: Arc::new(Semaphore::new(*max_instances as usize)),
                time_zone: tz,
                time_zone_name: time_zone.trim().to_owned(),
            }),
        })
    }

    /// Loads the policy component at `path`, or returns the already loaded
    /// one with the same digest.
    pub async fn load(&self, path: &Path) -> Result<Arc<Policy>, PolicyError> {
        use tokio::io::AsyncReadExt;

        let read_error = |source| PolicyError::Read {
            path: path.to_owned(),
            source,
        };
        let file = tokio::fs::File::open(path).await.map_err(read_error)?;
        // Read one byte past the limit to tell a file at the limit from a
        // larger one (or an endless one such as /dev/zero).
        let mut bytes = Vec::new();
        file.take(MAX_POLICY_BYTES + 1)
            .read_to_end(&mut bytes)
            .await
            .map_err(read_error)?;
        if bytes.len() as u64 > MAX_POLICY_BYTES {
            return Err(PolicyError::TooLarge {
                path: path.to_owned(),
                limit: MAX_POLICY_BYTES,
            });
        }
        self.load_bytes(bytes).await
    }

    /// Loads a policy component from its bytes, or returns the already
    /// loaded one with the same digest. Compiles on a blocking thread, links
    /// it against the host's imports, and asks it for its name and version.
    ///
    /// Two concurrent loads of the same new component may both compile it;
    /// the first to finish is kept.
    pub async fn load_bytes(&self, bytes: Vec<u8>) -> Result<Arc<Policy>, PolicyError> {
        let digest = policy::digest(&bytes);
        if let Some(policy) = self.cached(&digest) {
            return Ok(policy);
        }

        let engine = self.inner.engine.clone();
        let compiled = tokio::task::spawn_blocking(move || Component::new(&engine, &bytes)).await;
        let component = match compiled {
            Ok(Ok(component)) => component,
            Ok(Err(error)) => return Err(PolicyError::compile(&digest, &error)),
            Err(join) => {
                return Err(PolicyError::Compile {
                    digest,
                    reason: join.to_string(),
                });
            }
        };
        let pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .and_then(bindings::PolicyPre::new)
            .map_err(|e| PolicyError::link(&digest, &e))?;
        let policy = Policy::introduce(self, digest, pre).await?;

        let mut policies = self.lock_policies();
        let policy = policies
            .entry(policy.digest().to_owned())
            .or_insert_with(|| Arc::new(policy))
            .clone();
        drop(policies);
        tracing::info!(
            policy = %policy.digest(),
            name = %policy.name(),
            version = %policy.version(),
            "policy loaded"
        );
        Ok(policy)
    }

    /// Today's date in the configured time zone: the evaluation date.
    pub fn today(&self) -> Date {
        Timestamp::now()
            .to_zoned(self.inner.time_zone.clone())
            .date()
    }

    /// The configured time zone's IANA name.
    pub fn time_zone(&self) -> &str {
        &self.inner.time_zone_name
    }

    /// The longest an evaluation may compute.
    pub fn deadline(&self) -> Duration {
        self.inner.deadline
    }

    fn cached(&self, digest: &str) -> Option<Arc<Policy>> {
        self.lock_policies().get(digest).cloned()
    }

    fn lock_policies(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Policy>>> {
        // Only map operations run under the lock, and they do not panic, so
        // it is never poisoned; recover the map anyway rather than panic.
        self.inner
            .policies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a free instance slot; held for the whole evaluation.
    pub(crate) async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        // The semaphore is never closed, so this only waits.
        self.inner.slots.clone().acquire_owned().await.ok()
    }

    /// A fresh store for one run of a policy, with its limits, its deadline
    /// and a WASI context that grants nothing.
    pub(crate) fn store(
        &self,
        applicant: Option<Applicant>,
        today: Date,
        tags: LogTags,
    ) -> Store<EvalState> {
        let deadline = self.inner.deadline;
        let budget = ComputeBudget::start(deadline);
        let state = EvalState::new(
            applicant,
            today,
            &self.inner.time_zone_name,
            tags,
            self.inner.memory_limit,
            budget,
        );
        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|state| &mut state.memory);
        // Every tick: stop if the computing time is up, otherwise let other
        // tasks on this thread run and check again at the next tick.
        store.epoch_deadline_callback(move |store| {
            if store.data().budget.exhausted() {
                Err(wasmtime::Error::new(DeadlineExceeded { deadline }))
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store.set_epoch_deadline(1);
        store
    }
}

/// Bytes of each pool slot reset in place between instances; see
/// [`config`].
const KEEP_RESIDENT: usize = 64 << 10;

/// The engine configuration: components, epoch interruption, and a pool of
/// `instances` slots whose memories are sized to the limit.
fn config(instances: u32, memory_limit: usize) -> Config {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(CORE_INSTANCES_PER_POLICY))
        .max_core_instances_per_component(CORE_INSTANCES_PER_POLICY)
        .total_memories(instances.saturating_mul(MEMORIES_PER_POLICY))
        .max_memories_per_component(MEMORIES_PER_POLICY)
        .total_tables(instances.saturating_mul(TABLES_PER_POLICY))
        .max_tables_per_component(TABLES_PER_POLICY)
        .total_stacks(instances)
        .max_memory_size(memory_limit)
        // Reset the first pages of a slot by zeroing them in place rather
        // than handing them back to the kernel: a fresh instance then takes
        // no page faults on the memory a small policy touches. The cost is
        // that much resident memory per slot in use.
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT / 16)
        .async_stack_keep_resident(KEEP_RESIDENT / 4);

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        // Reserve only what the limit allows rather than the default 4 GiB
        // per memory: a thousand slots of 4 GiB would take most of the
        // address space. The cost is an explicit bounds check per access.
        .memory_reservation(memory_limit as u64)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// The epoch tick for a deadline: fine enough to stop within a few percent
/// of it, coarse enough to cost nothing.
fn tick(deadline: Duration) -> Duration {
    (deadline / 20).clamp(Duration::from_millis(1), Duration::from_millis(10))
}

/// Advances the engine's epoch every `tick` on a thread of its own, until
/// the engine is dropped.
fn start_ticker(engine: &Engine, tick: Duration) -> Result<(), EngineError> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("policy-epoch".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(tick);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })
        .map(drop)
        .map_err(|e| EngineError::Start(format!("cannot start the epoch ticker: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> PolicySettings {
        PolicySettings {
            path: "unused.wasm".into(),
            time_zone: "America/Sao_Paulo".into(),
            deadline_ms: 1000,
            memory_limit_mib: 64,
            max_instances: 4,
        }
    }

    #[test]
    fn settings_out_of_range_are_named() {
        let check = |edit: fn(&mut PolicySettings), name: &str| {
            let mut s = settings();
            edit(&mut s);
            let err = PolicyEngine::new(&s).unwrap_err().to_string();
            assert!(err.contains(name), "{err}");
        };
        check(|s| s.deadline_ms = 0, "deadline_ms");
        check(|s| s.memory_limit_mib = 0, "memory_limit_mib");
        check(|s| s.memory_limit_mib = 5000, "memory_limit_mib");
        check(|s| s.max_instances = 0, "max_instances");
        check(
            |s| s.time_zone = "Mars/Olympus_Mons".into(),
            "Mars/Olympus_Mons",
        );
    }

    #[test]
    fn today_is_in_the_configured_zone() {
        let engine = PolicyEngine::new(&settings()).unwrap();
        assert_eq!(engine.time_zone(), "America/Sao_Paulo");
        let expected = Timestamp::now()
            .to_zoned(TimeZone::get("America/Sao_Paulo").unwrap())
            .date();
        // Midnight may pass between the two readings.
        assert!(engine.today() == expected || engine.today() == expected.tomorrow().unwrap());
    }

    #[test]
    fn ticks_scale_with_the_deadline() {
        assert_eq!(tick(Duration::from_millis(1000)), Duration::from_millis(10));
        assert_eq!(tick(Duration::from_millis(100)), Duration::from_millis(5));
        assert_eq!(tick(Duration::from_millis(1)), Duration::from_millis(1));
    }
}
