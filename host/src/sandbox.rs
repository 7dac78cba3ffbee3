//! What a policy may touch and the limits it runs under.
//!
//! A policy is a pure function of the application, the evaluation context
//! and the bureau answers, so that any decision can be replayed. The WASI
//! context it gets therefore grants nothing: no files, no environment, no
//! arguments, no network, no name lookup, stdio to nowhere, clocks stopped
//! at the Unix epoch and a random source that returns the same bytes every
//! time. WASI is linked at all only because toolchains' standard libraries
//! import it.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use wasmtime::ResourceLimiter;
use wasmtime_wasi::{Deterministic, HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder};

/// The bytes the random interfaces cycle through. Deliberately constant: a
/// policy has no business with randomness, and replaying an evaluation must
/// give the same result.
const RANDOM_BYTES: &[u8] = b"loan policies get no randomness";

/// Largest request one call to the random interfaces may make, so that a
/// policy cannot make the host allocate much on its behalf.
const MAX_RANDOM_BYTES: u64 = 64 * 1024;

/// A WASI context that grants nothing; see the module documentation.
pub(crate) fn wasi_context() -> WasiCtx {
    let mut builder = WasiCtxBuilder::new();
    // The builder starts with no preopens, environment or arguments, stdin
    // closed and stdout/stderr discarded; the rest is set here.
    builder
        .wall_clock(StoppedClock)
        .monotonic_clock(StoppedClock)
        .secure_random(Deterministic::new(RANDOM_BYTES.to_vec()))
        .insecure_random(Deterministic::new(RANDOM_BYTES.to_vec()))
        .insecure_random_seed(0)
        .max_random_size(MAX_RANDOM_BYTES)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }));
    builder.build()
}

/// A clock that always reads zero: the Unix epoch for the wall clock, the
/// start for the monotonic one.
struct StoppedClock;

impl HostWallClock for StoppedClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for StoppedClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        0
    }
}

/// The evaluation used more memory than its limit.
#[derive(Debug, thiserror::Error)]
#[error("the policy asked for {requested} bytes of memory in all, over the limit of {limit}")]
pub struct MemoryLimitExceeded {
    /// The limit in bytes.
    pub limit: usize,
    /// The total the policy asked for.
    pub requested: usize,
}

/// The evaluation computed for longer than its deadline.
#[derive(Debug, thiserror::Error)]
#[error("the policy computed for longer than its deadline of {} ms", .deadline.as_millis())]
pub struct DeadlineExceeded {
    /// The deadline.
    pub deadline: Duration,
}

/// Caps the memory of one evaluation: the sum of every linear memory of
/// the instance, since a component may hold several. Going over traps
/// rather than failing the allocation, so that the error says why.
pub(crate) struct MemoryCap {
    limit: usize,
    used: usize,
}

/// Most table elements one table may grow to; far more than a compiled
/// policy needs for its function pointers.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl MemoryCap {
    pub(crate) fn new(limit: usize) -> Self {
        MemoryCap { limit, used: 0 }
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Memories never shrink, so the growths add up to the total size.
        let requested = self.used.saturating_add(desired.saturating_sub(current));
        if requested > self.limit {
            return Err(wasmtime::Error::new(MemoryLimitExceeded {
                limit: self.limit,
                requested,
            }));
        }
        self.used = requested;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// The computing time of one evaluation, which is its wall time less the
/// time spent waiting on the bureau. Shared between the store's epoch
/// callback, which stops runaway computation, and the evaluation's own
/// timer, which stops a policy blocked in a host call (a WASI sleep).
pub(crate) struct ComputeBudget {
    started: Instant,
    deadline: Duration,
    waits: Mutex<Waits>,
}

#[derive(Default)]
struct Waits {
    total: Duration,
    since: Option<Instant>,
}

impl ComputeBudget {
    /// A budget of `deadline`, starting now.
    pub(crate) fn start(deadline: Duration) -> Arc<Self> {
        Arc::new(ComputeBudget {
            started: Instant::now(),
            deadline,
            waits: Mutex::new(Waits::default()),
        })
    }

    /// The deadline this budget enforces.
    pub(crate) fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Time spent computing so far.
    pub(crate) fn spent(&self) -> Duration {
        let now = Instant::now();
        let waits = self.lock();
        let current = waits.since.map_or(Duration::ZERO, |since| now - since);
        (now - self.started).saturating_sub(waits.total + current)
    }

    /// Time left before the deadline.
    pub(crate) fn remaining(&self) -> Duration {
        self.deadline.saturating_sub(self.spent())
    }

    /// Whether the deadline has passed.
    pub(crate) fn exhausted(&self) -> bool {
        self.spent() >= self.deadline
    }

    /// Stops the clock until the returned guard is dropped: bureau calls
    /// do not count against the deadline.
    pub(crate) fn pause(&self) -> Paused<'_> {
        self.lock().since = Some(Instant::now());
        Paused(self)
    }

    fn lock(&self) -> MutexGuard<'_, Waits> {
        // The lock is only held for arithmetic that cannot panic, so it is
        // never poisoned; recover the data anyway rather than panic.
        self.waits.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs `work` until it finishes or `budget` runs out.
///
/// The epoch callback stops a policy that computes past its deadline; this
/// also stops one that waits in a host call (a WASI sleep or poll) instead,
/// by dropping the call. The store is unusable afterwards, which is fine:
/// each store serves one run.
pub(crate) async fn within_deadline<F: Future>(
    budget: &ComputeBudget,
    work: F,
) -> Result<F::Output, DeadlineExceeded> {
    let mut work = std::pin::pin!(work);
    loop {
        // Wake when the budget would run out if nothing paused it; while a
        // bureau call pauses it, check back every few milliseconds.
        let wake = budget.remaining().max(Duration::from_millis(5));
        tokio::select! {
            output = &mut work => return Ok(output),
            () = tokio::time::sleep(wake) => {
                if budget.exhausted() {
                    return Err(DeadlineExceeded { deadline: budget.deadline() });
                }
            }
        }
    }
}

/// The clock of a [`ComputeBudget`], stopped while this lives.
pub(crate) struct Paused<'a>(&'a ComputeBudget);

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        let mut waits = self.0.lock();
        if let Some(since) = waits.since.take() {
            waits.total += since.elapsed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_growth_adds_up_across_memories() {
        let mut cap = MemoryCap::new(100);
        assert!(cap.memory_growing(0, 60, None).unwrap());
        assert!(cap.memory_growing(0, 30, None).unwrap());
        let err = cap.memory_growing(30, 50, None).unwrap_err();
        assert!(err.is::<MemoryLimitExceeded>());
        assert!(cap.memory_growing(30, 40, None).unwrap());
    }

    #[test]
    fn paused_time_is_not_spent() {
        let budget = ComputeBudget::start(Duration::from_secs(60));
        let paused = budget.pause();
        let before = budget.spent();
        // Busy-wait a little while paused; the spent time must not move.
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(20) {
            std::hint::spin_loop();
        }
        assert_eq!(budget.spent(), before);
        drop(paused);
        assert!(budget.remaining() <= Duration::from_secs(60));
        assert!(!budget.exhausted());
    }

    #[test]
    fn a_zero_budget_is_exhausted_at_once() {
        assert!(ComputeBudget::start(Duration::ZERO).exhausted());
    }
}
