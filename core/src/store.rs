//! Where loans live: the [`Store`] interface and its backends, etcd for
//! production and an embedded database for the default mode.

pub mod embedded;
pub mod etcd;

use async_trait::async_trait;
use uuid::Uuid;

use crate::loan::{LoanRecord, Outcome};

/// A failure of the store itself, never of the loan.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or refused the operation.
    #[error("the loan store is unavailable: {0}")]
    Unavailable(String),
    /// A stored record could not be read back.
    #[error("loan record {key} is corrupt: {reason}")]
    Corrupt {
        /// The record's key.
        key: String,
        /// What could not be decoded.
        reason: String,
    },
}

/// An idempotency key and the fingerprint of the request that first used it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    /// The client's `Idempotency-Key` header.
    pub key: String,
    /// A digest of the validated request, to tell a retry from a reuse.
    pub fingerprint: String,
}

/// What [`Store::create`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// The loan was stored.
    New,
    /// The idempotency key was used before; nothing was stored.
    Existing {
        /// The loan created by the first request with that key.
        id: Uuid,
        /// Whether the first request had the same fingerprint.
        same_request: bool,
    },
}

/// What [`Store::finish`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Finished {
    /// The final state was written.
    Written(LoanRecord),
    /// The loan was already final; nothing was written.
    AlreadyFinal(LoanRecord),
    /// No such loan.
    NotFound,
}

/// Storage for loans. Implementations must make [`Store::create`] with an
/// idempotency key and [`Store::finish`] atomic.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores a new loan, reserving `idempotency` in the same transaction.
    async fn create(
        &self,
        loan: &LoanRecord,
        idempotency: Option<&Idempotency>,
    ) -> Result<Created, StoreError>;

    /// The loan with this id.
    async fn get(&self, id: Uuid) -> Result<Option<LoanRecord>, StoreError>;

    /// Moves a loan from `processing` to a final state. A final state is
    /// never overwritten.
    async fn finish(&self, id: Uuid, outcome: Outcome) -> Result<Finished, StoreError>;

    /// Undoes a [`Store::create`] whose loan could not be queued, so that a
    /// rejected request leaves nothing behind.
    async fn discard(&self, id: Uuid, idempotency_key: Option<&str>) -> Result<(), StoreError>;

    /// Ids of every loan still `processing`, to queue again after a restart.
    async fn processing(&self) -> Result<Vec<Uuid>, StoreError>;
}
