//! The `loan` command: wires the API, the worker, the store and queue
//! backends and the bureau together from [`Settings`], in one process or
//! as separate roles.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod bench;
pub mod service;

pub use loan_core::settings::Settings;
