//! Loans in an embedded redb database file, for the single-process default
//! mode: the same guarantees as etcd, from redb's serialised write
//! transactions, and a file that outlives the process.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{debug, info};
use uuid::Uuid;

use super::{Created, Finished, Idempotency, Store, StoreError};
use crate::loan::{LoanRecord, Outcome};

/// Name of the database file inside the data folder.
pub const FILE_NAME: &str = "loans.redb";

/// Loan id → the [`LoanRecord`] as JSON.
const LOANS: TableDefinition<u128, &[u8]> = TableDefinition::new("loans");
/// Ids of the loans still processing, kept with the loans in every write so
/// that start-up does not read every loan ever made.
const PROCESSING: TableDefinition<u128, ()> = TableDefinition::new("processing");
/// Hex sha256 of an idempotency key → the loan it created, as JSON.
const IDEMPOTENCY: TableDefinition<&str, &[u8]> = TableDefinition::new("idempotency");

/// The default mode's [`Store`]: a redb file in the data folder.
///
/// One process at a time: redb locks the file, and a second process that
/// opens it fails with "Database already open".
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

/// What an idempotency key points to.
#[derive(Debug, Serialize, Deserialize)]
struct IdempotencyRecord {
    id: Uuid,
    fingerprint: String,
}

impl EmbeddedStore {
    /// Opens `data_dir/loans.redb`, creating the folder and the file when
    /// they do not exist. Blocks on file I/O: call it at start-up.
    pub fn open(data_dir: &Path) -> Result<EmbeddedStore, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|err| {
            StoreError::Unavailable(format!(
                "could not create the data folder {}: {err}",
                data_dir.display()
            ))
        })?;

        let path = data_dir.join(FILE_NAME);
        let db = Database::create(&path).map_err(|err| {
            StoreError::Unavailable(format!(
                "could not open the embedded database {}: {err}",
                path.display()
            ))
        })?;
        let inner = Inner { db, path };

        // Read transactions cannot open a table that was never created.
        let txn = inner.db.begin_write().map_err(|err| inner.failed(err))?;
        txn.open_table(LOANS).map_err(|err| inner.failed(err))?;
        txn.open_table(PROCESSING)
            .map_err(|err| inner.failed(err))?;
        txn.open_table(IDEMPOTENCY)
            .map_err(|err| inner.failed(err))?;
        txn.commit().map_err(|err| inner.failed(err))?;

        info!(path = %inner.path.display(), "opened the embedded store");
        Ok(EmbeddedStore {
            inner: Arc::new(inner),
        })
    }

    /// The path of the database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `operation` on a blocking thread: redb does file I/O and waits
    /// for the writer lock.
    async fn run<T, F>(&self, operation: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || operation(&inner))
            .await
            .map_err(|err| {
                StoreError::Unavailable(format!("an embedded store operation stopped: {err}"))
            })?
    }
}

impl Inner {
    fn failed(&self, err: impl Into<redb::Error>) -> StoreError {
        StoreError::Unavailable(format!(
            "the embedded database {} failed: {}",
            self.path.display(),
            err.into()
        ))
    }

    fn create(
        &self,
        loan: &LoanRecord,
        idempotency: Option<&Idempotency>,
    ) -> Result<Created, StoreError> {
        let value = encode(&loan_key(loan.id), loan)?;
        let txn = self.db.begin_write().map_err(|err| self.failed(err))?;
        {
            let mut loans = txn.open_table(LOANS).map_err(|err| self.failed(err))?;
            let mut processing = txn.open_table(PROCESSING).map_err(|err| self.failed(err))?;
            let mut keys = txn
                .open_table(IDEMPOTENCY)
                .map_err(|err| self.failed(err))?;

            if let Some(idempotency) = idempotency {
                let digest = digest(&idempotency.key);
                if let Some(stored) = keys.get(digest.as_str()).map_err(|err| self.failed(err))? {
                    let first: IdempotencyRecord =
                        decode(&format!("idempotency/{digest}"), stored.value())?;
                    debug!(loan_id = %first.id, "idempotency key used before");
                    return Ok(Created::Existing {
                        id: first.id,
                        same_request: first.fingerprint == idempotency.fingerprint,
                    });
                }
                let reservation = IdempotencyRecord {
                    id: loan.id,
                    fingerprint: idempotency.fingerprint.clone(),
                };
                let reservation = encode(&format!("idempotency/{digest}"), &reservation)?;
                keys.insert(digest.as_str(), reservation.as_slice())
                    .map_err(|err| self.failed(err))?;
            }

            let id = loan.id.as_u128();
            if loans.get(id).map_err(|err| self.failed(err))?.is_some() {
                return Err(already_exists(loan.id));
            }
            loans
                .insert(id, value.as_slice())
                .map_err(|err| self.failed(err))?;
            if !loan.status.is_final() {
                processing.insert(id, ()).map_err(|err| self.failed(err))?;
            }
        }
        txn.commit().map_err(|err| self.failed(err))?;
        Ok(Created::New)
    }

    fn get(&self, id: Uuid) -> Result<Option<LoanRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(|err| self.failed(err))?;
        let loans = txn.open_table(LOANS).map_err(|err| self.failed(err))?;
        let stored = loans.get(id.as_u128()).map_err(|err| self.failed(err))?;
        stored
            .map(|stored| decode(&loan_key(id), stored.value()))
            .transpose()
    }

    fn finish(&self, id: Uuid, outcome: Outcome) -> Result<Finished, StoreError> {
        // redb runs one write transaction at a time, so the read and the
        // write below cannot interleave with another worker's.
        let txn = self.db.begin_write().map_err(|err| self.failed(err))?;
        let finished = {
            let mut loans = txn.open_table(LOANS).map_err(|err| self.failed(err))?;
            let mut processing = txn.open_table(PROCESSING).map_err(|err| self.failed(err))?;

            let record: LoanRecord =
                match loans.get(id.as_u128()).map_err(|err| self.failed(err))? {
                    Some(stored) => decode(&loan_key(id), stored.value())?,
                    None => return Ok(Finished::NotFound),
                };
            if record.status.is_final() {
                return Ok(Finished::AlreadyFinal(record));
            }

            let finished = record.finished(outcome);
            let value = encode(&loan_key(id), &finished)?;
            loans
                .insert(id.as_u128(), value.as_slice())
                .map_err(|err| self.failed(err))?;
            processing
                .remove(id.as_u128())
                .map_err(|err| self.failed(err))?;
            finished
        };
        txn.commit().map_err(|err| self.failed(err))?;
        Ok(Finished::Written(finished))
    }

    fn discard(&self, id: Uuid, idempotency_key: Option<&str>) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|err| self.failed(err))?;
        {
            let mut loans = txn.open_table(LOANS).map_err(|err| self.failed(err))?;
            let mut processing = txn.open_table(PROCESSING).map_err(|err| self.failed(err))?;
            let mut keys = txn
                .open_table(IDEMPOTENCY)
                .map_err(|err| self.failed(err))?;

            loans.remove(id.as_u128()).map_err(|err| self.failed(err))?;
            processing
                .remove(id.as_u128())
                .map_err(|err| self.failed(err))?;

            // Only release the key if it still names this loan.
            if let Some(key) = idempotency_key {
                let digest = digest(key);
                let names_this_loan =
                    match keys.get(digest.as_str()).map_err(|err| self.failed(err))? {
                        Some(stored) => {
                            let record: IdempotencyRecord =
                                decode(&format!("idempotency/{digest}"), stored.value())?;
                            record.id == id
                        }
                        None => false,
                    };
                if names_this_loan {
                    keys.remove(digest.as_str())
                        .map_err(|err| self.failed(err))?;
                }
            }
        }
        txn.commit().map_err(|err| self.failed(err))
    }

    fn processing(&self) -> Result<Vec<Uuid>, StoreError> {
        let txn = self.db.begin_read().map_err(|err| self.failed(err))?;
        let processing = txn.open_table(PROCESSING).map_err(|err| self.failed(err))?;
        let mut ids = Vec::new();
        for entry in processing.iter().map_err(|err| self.failed(err))? {
            let (id, _) = entry.map_err(|err| self.failed(err))?;
            ids.push(Uuid::from_u128(id.value()));
        }
        debug!(count = ids.len(), "listed loans still processing");
        Ok(ids)
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn create(
        &self,
        loan: &LoanRecord,
        idempotency: Option<&Idempotency>,
    ) -> Result<Created, StoreError> {
        let loan = loan.clone();
        let idempotency = idempotency.cloned();
        self.run(move |inner| inner.create(&loan, idempotency.as_ref()))
            .await
    }

    async fn get(&self, id: Uuid) -> Result<Option<LoanRecord>, StoreError> {
        self.run(move |inner| inner.get(id)).await
    }

    async fn finish(&self, id: Uuid, outcome: Outcome) -> Result<Finished, StoreError> {
        self.run(move |inner| inner.finish(id, outcome)).await
    }

    async fn discard(&self, id: Uuid, idempotency_key: Option<&str>) -> Result<(), StoreError> {
        let idempotency_key = idempotency_key.map(str::to_owned);
        self.run(move |inner| inner.discard(id, idempotency_key.as_deref()))
            .await
    }

    async fn processing(&self) -> Result<Vec<Uuid>, StoreError> {
        self.run(Inner::processing).await
    }
}

/// How a loan is named in errors.
fn loan_key(id: Uuid) -> String {
    format!("loans/{id}")
}

/// Idempotency keys are stored hashed, as in etcd: they come from clients,
/// and a digest has a known length.
fn digest(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn encode<T: Serialize>(key: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|err| StoreError::Corrupt {
        key: key.to_owned(),
        reason: format!("cannot be encoded as JSON: {err}"),
    })
}

/// Decodes a stored value. The reason names the error's kind and place,
/// never the value: a loan record holds personal data.
fn decode<T: for<'de> Deserialize<'de>>(key: &str, value: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(value).map_err(|err| StoreError::Corrupt {
        key: key.to_owned(),
        reason: format!(
            "not the expected JSON ({:?} error at line {}, column {})",
            err.classify(),
            err.line(),
            err.column()
        ),
    })
}

fn already_exists(id: Uuid) -> StoreError {
    StoreError::Unavailable(format!(
        "loan {id} already exists in the store; it was not overwritten"
    ))
}
