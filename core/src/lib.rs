//! The loan service's domain: applications and their validation, loan
//! records and decisions, exact money, settings, and the store and queue
//! that carry a loan from the API to the worker.
//!
//! Both the API and the host depend on this crate; neither depends on the
//! other.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod application;
pub mod cpf;
pub mod loan;
pub mod money;
pub mod number;
pub mod queue;
pub mod settings;
pub mod store;

pub use application::{Application, FieldError, Terms, ValidationErrors};
pub use cpf::Cpf;
pub use loan::{
    BureauAnswers, DecisionRecord, FailureRecord, LoanRecord, LoanStatus, Outcome, PolicyRef,
    Verdict,
};
pub use money::Money;
