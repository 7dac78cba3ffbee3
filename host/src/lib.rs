//! The worker of the loan service: it takes loans off the queue and decides
//! them with a credit policy running as a sandboxed WebAssembly component.
//!
//! The path of one evaluation, and the module that owns each step:
//!
//! - [`worker`] receives a job, reads the loan from the store, and writes the
//!   decision or failure back before acknowledging the job.
//! - [`evaluation`] snapshots the active policy, instantiates it fresh,
//!   calls it, checks what it returned and classifies what went wrong.
//! - [`engine`] holds the one wasmtime engine of the process: compilation,
//!   the instance pool, the deadline ticker and the cache of loaded policies.
//! - [`policy`] is a loaded policy component and the swappable pointer to
//!   the active one.
//! - [`sandbox`] is what a policy may touch (nothing but its imports) and the
//!   limits it runs under; `imports` answers its bureau, context and log
//!   calls.
//! - [`bureau`] is the credit bureau: the HTTP client, fixed answers for
//!   tests and benchmarks, and a simulator of the real service.
//! - [`cases`] runs the policy case files through the same evaluation path,
//!   and [`bench`] times evaluations.

// Tests may unwrap: a panic is how they fail.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod bindings;
mod imports;

pub mod bench;
pub mod bureau;
pub mod cases;
pub mod engine;
pub mod evaluation;
pub mod policy;
pub mod sandbox;
pub mod worker;

pub use bench::{BenchReport, benchmark};
pub use bureau::http::HttpBureau;
pub use bureau::simulator::{Fixtures, simulator_router};
pub use bureau::{Bureau, BureauError, FixedBureau};
pub use cases::{CaseReport, run_cases};
pub use engine::{EngineError, PolicyEngine};
pub use evaluation::{Decision, Evaluation, EvaluationError, EvaluationRequest, Evaluator};
pub use policy::{ActivePolicy, Policy, PolicyError};
pub use worker::Worker;
