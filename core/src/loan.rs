//! A loan as it is stored: the application, its state, and the decision or
//! failure that ended it.

use jiff::Timestamp;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::application::Application;
use crate::money::Money;

/// Where a loan is in its life. `Completed` and `Failed` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoanStatus {
    /// Accepted and waiting for a decision.
    Processing,
    /// Decided: approved or refused.
    Completed,
    /// Evaluation could not finish; see the failure's reason.
    Failed,
}

impl LoanStatus {
    /// Whether the state can no longer change.
    pub fn is_final(self) -> bool {
        !matches!(self, LoanStatus::Processing)
    }
}

/// A stored loan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoanRecord {
    /// The loan's id, a UUID v4.
    pub id: Uuid,
    /// Current state.
    pub status: LoanStatus,
    /// What the applicant asked for (personal data: never leaves the store
    /// through the API or the logs).
    pub application: Application,
    /// When the request was accepted.
    pub created_at: Timestamp,
    /// When the state last changed.
    pub updated_at: Timestamp,
    /// Set once completed.
    pub decision: Option<DecisionRecord>,
    /// Set once failed.
    pub failure: Option<FailureRecord>,
}

impl LoanRecord {
    /// A new loan waiting for its decision.
    pub fn new(application: Application) -> Self {
        let now = Timestamp::now();
        LoanRecord {
            id: Uuid::new_v4(),
            status: LoanStatus::Processing,
            application,
            created_at: now,
            updated_at: now,
            decision: None,
            failure: None,
        }
    }

    /// This loan with `outcome` applied, as the store writes it.
    pub fn finished(mut self, outcome: Outcome) -> Self {
        self.updated_at = Timestamp::now();
        match outcome {
            Outcome::Completed(decision) => {
                self.status = LoanStatus::Completed;
                self.decision = Some(decision);
            }
            Outcome::Failed(failure) => {
                self.status = LoanStatus::Failed;
                self.failure = Some(failure);
            }
        }
        self
    }
}

/// Approved or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// An offer was made.
    Approved,
    /// A policy refused.
    Refused,
}

/// The policy component that made a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRef {
    /// `sha256:` and the hex digest of the component's bytes.
    pub digest: String,
    /// The name the policy gives itself.
    pub name: String,
    /// The version the policy gives itself.
    pub version: String,
}

/// What the bureau answered during the evaluation, for audit and replay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BureauAnswers {
    /// The score, if it was asked for.
    pub score: Option<u16>,
    /// The commitment as an exact decimal, if it was asked for.
    pub commitment: Option<String>,
}

/// A decision and everything needed to explain or replay it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// Approved or refused.
    pub verdict: Verdict,
    /// Name of the refusing policy, when refused.
    pub refused_policy: Option<String>,
    /// The policy's short reason, when refused.
    pub reason: Option<String>,
    /// Amount granted, when approved.
    pub amount: Option<Money>,
    /// Instalments offered, when approved.
    pub terms: Option<u8>,
    /// Monthly instalment, when approved.
    pub installment: Option<Money>,
    /// The policy component that decided.
    pub policy: PolicyRef,
    /// The bureau answers the policy used.
    pub bureau: BureauAnswers,
    /// The evaluation date the policy was given.
    pub evaluated_on: Date,
    /// How many evaluations it took (1 unless the bureau failed before).
    pub attempts: u32,
    /// When the decision was made.
    pub decided_at: Timestamp,
}

/// Why a loan could not be decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureRecord {
    /// What went wrong, for the client and the operator. Never holds a
    /// secret or personal data.
    pub reason: String,
    /// The policy in use at the last attempt, if one was loaded.
    pub policy: Option<PolicyRef>,
    /// How many evaluations were tried.
    pub attempts: u32,
    /// When the loan was given up.
    pub failed_at: Timestamp,
}

/// The final state a worker writes.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A decision was made.
    Completed(DecisionRecord),
    /// Evaluation could not finish.
    Failed(FailureRecord),
}
