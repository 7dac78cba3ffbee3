//! Loans in etcd: one JSON record per loan, written in transactions so that
//! a final state is never overwritten, even by two workers racing on a loan.
//!
//! Keys, under the configured prefix:
//!
//! - `{prefix}loans/{uuid}`: the [`LoanRecord`] as JSON;
//! - `{prefix}idempotency/{hex sha256 of the key}`: the loan an
//!   `Idempotency-Key` created and the fingerprint of that request, as JSON.

use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KeyValue, KvClient, Txn, TxnOp,
    TxnOpResponse, TxnResponse,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{debug, info};
use uuid::Uuid;

use super::{Created, Finished, Idempotency, Store, StoreError};
use crate::loan::{LoanRecord, LoanStatus, Outcome};

/// How long to wait for etcd to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take. Longer lets a loaded cluster answer;
/// shorter gives the API's client an answer (a 503) sooner.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Loans read per request when listing the ones still processing.
const PAGE_SIZE: i64 = 500;
/// Compare-and-swap rounds [`EtcdStore::finish`] tries. A loan only changes
/// once after its creation, so a second round always settles it; the bound
/// only guards against a bug looping forever.
const FINISH_ROUNDS: usize = 5;

/// The production [`Store`]: loans in etcd, shared by every API and worker
/// process.
///
/// Listing the loans still processing reads every loan under the prefix:
/// fine while the store holds thousands of loans, and the reason to keep an
/// index of processing loans once it holds millions.
#[derive(Clone)]
pub struct EtcdStore {
    kv: KvClient,
    prefix: String,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// What an idempotency key points to.
#[derive(Debug, Serialize, Deserialize)]
struct IdempotencyRecord {
    id: Uuid,
    fingerprint: String,
}

impl EtcdStore {
    /// Connects to etcd at `endpoints` (for example `http://127.0.0.1:2379`)
    /// and checks that it answers, so that a wrong address fails at start-up
    /// rather than on the first loan. Every key lives under `prefix`.
    pub async fn connect(endpoints: &[String], prefix: &str) -> Result<EtcdStore, StoreError> {
        if endpoints.is_empty() {
            return Err(StoreError::Unavailable(
                "no etcd endpoint is configured; set store.etcd_endpoints".into(),
            ));
        }
        let unreachable = |cause: String| {
            StoreError::Unavailable(format!(
                "could not reach etcd at {}: {cause}",
                endpoints.join(", ")
            ))
        };

        let options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT);
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|err| unreachable(err.to_string()))?;
        let store = EtcdStore {
            kv: client.kv_client(),
            prefix: prefix.to_owned(),
        };

        // The client connects lazily: ask for something to know now.
        let mut kv = store.kv.clone();
        let probe = kv.get(
            store.loans_prefix(),
            Some(GetOptions::new().with_count_only()),
        );
        match tokio::time::timeout(CONNECT_TIMEOUT, probe).await {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => return Err(unreachable(err.to_string())),
            Err(_) => {
                return Err(unreachable(format!(
                    "no answer within {} s",
                    CONNECT_TIMEOUT.as_secs()
                )));
            }
        }

        info!(endpoints = %endpoints.join(","), prefix, "connected to etcd");
        Ok(store)
    }

    fn loans_prefix(&self) -> String {
        format!("{}loans/", self.prefix)
    }

    fn loan_key(&self, id: Uuid) -> String {
        format!("{}loans/{id}", self.prefix)
    }

    fn idempotency_key(&self, key: &str) -> String {
        idempotency_key(&self.prefix, key)
    }

    /// The loan at `key` and the revision it was last written at.
    async fn read(&self, key: &str) -> Result<Option<(LoanRecord, i64)>, StoreError> {
        let response = self
            .kv
            .clone()
            .get(key, None)
            .await
            .map_err(|err| failed("read", key, err))?;
        response
            .kvs()
            .first()
            .map(|kv| Ok((decode::<LoanRecord>(kv)?, kv.mod_revision())))
            .transpose()
    }

    async fn txn(&self, key: &str, txn: Txn) -> Result<TxnResponse, StoreError> {
        self.kv
            .clone()
            .txn(txn)
            .await
            .map_err(|err| failed("transaction", key, err))
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn create(
        &self,
        loan: &LoanRecord,
        idempotency: Option<&Idempotency>,
    ) -> Result<Created, StoreError> {
        let loan_key = self.loan_key(loan.id);
        let value = encode(&loan_key, loan)?;
        let loan_absent = Compare::version(loan_key.clone(), CompareOp::Equal, 0);

        let Some(idempotency) = idempotency else {
            let txn = Txn::new().when([loan_absent]).and_then([TxnOp::put(
                loan_key.clone(),
                value,
                None,
            )]);
            return if self.txn(&loan_key, txn).await?.succeeded() {
                Ok(Created::New)
            } else {
                Err(already_exists(loan.id))
            };
        };

        let key = self.idempotency_key(&idempotency.key);
        let reservation = IdempotencyRecord {
            id: loan.id,
            fingerprint: idempotency.fingerprint.clone(),
        };
        let txn = Txn::new()
            .when([
                Compare::version(key.clone(), CompareOp::Equal, 0),
                loan_absent,
            ])
            .and_then([
                TxnOp::put(loan_key.clone(), value, None),
                TxnOp::put(key.clone(), encode(&key, &reservation)?, None),
            ])
            .or_else([TxnOp::get(key.clone(), None)]);
        let response = self.txn(&loan_key, txn).await?;
        if response.succeeded() {
            return Ok(Created::New);
        }

        match first_read(&response) {
            Some(kv) => {
                let first = decode::<IdempotencyRecord>(&kv)?;
                debug!(loan_id = %first.id, "idempotency key used before");
                Ok(Created::Existing {
                    id: first.id,
                    same_request: first.fingerprint == idempotency.fingerprint,
                })
            }
            None => Err(already_exists(loan.id)),
        }
    }

    async fn get(&self, id: Uuid) -> Result<Option<LoanRecord>, StoreError> {
        Ok(self
            .read(&self.loan_key(id))
            .await?
            .map(|(record, _)| record))
    }

    async fn finish(&self, id: Uuid, outcome: Outcome) -> Result<Finished, StoreError> {
        let key = self.loan_key(id);
        let mut current = self.read(&key).await?;

        for _ in 0..FINISH_ROUNDS {
            let Some((record, revision)) = current else {
                return Ok(Finished::NotFound);
            };
            if record.status.is_final() {
                return Ok(Finished::AlreadyFinal(record));
            }

            let finished = record.finished(outcome.clone());
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    key.clone(),
                    CompareOp::Equal,
                    revision,
                )])
                .and_then([TxnOp::put(key.clone(), encode(&key, &finished)?, None)])
                .or_else([TxnOp::get(key.clone(), None)]);
            let response = self.txn(&key, txn).await?;
            if response.succeeded() {
                return Ok(Finished::Written(finished));
            }

            debug!(loan_id = %id, "loan changed while being finished; reading it again");
            current = first_read(&response)
                .map(|kv| Ok::<_, StoreError>((decode::<LoanRecord>(&kv)?, kv.mod_revision())))
                .transpose()?;
        }

        Err(StoreError::Unavailable(format!(
            "loan {id} kept changing while its final state was being written \
             ({FINISH_ROUNDS} rounds); try again"
        )))
    }

    async fn discard(&self, id: Uuid, idempotency_key: Option<&str>) -> Result<(), StoreError> {
        let loan_key = self.loan_key(id);
        let mut compares = Vec::new();
        let mut deletes = vec![TxnOp::delete(loan_key.clone(), None)];

        // Only release the key if it still names this loan: a key that a
        // later request reserved is that request's.
        if let Some(key) = idempotency_key.map(|key| self.idempotency_key(key)) {
            let response = self
                .kv
                .clone()
                .get(key.clone(), None)
                .await
                .map_err(|err| failed("read", &key, err))?;
            if let Some(kv) = response.kvs().first()
                && decode::<IdempotencyRecord>(kv)?.id == id
            {
                compares.push(Compare::mod_revision(
                    key.clone(),
                    CompareOp::Equal,
                    kv.mod_revision(),
                ));
                deletes.push(TxnOp::delete(key, None));
            }
        }

        let txn = Txn::new()
            .when(compares)
            .and_then(deletes)
            .or_else([TxnOp::delete(loan_key.clone(), None)]);
        self.txn(&loan_key, txn).await?;
        Ok(())
    }

    async fn processing(&self) -> Result<Vec<Uuid>, StoreError> {
        let prefix = self.loans_prefix();
        let end = prefix_end(prefix.as_bytes());
        let mut from = prefix.clone().into_bytes();
        // Every page is read at the revision of the first, so the listing
        // is one snapshot even while loans are being written.
        let mut revision = 0;
        let mut ids = Vec::new();

        loop {
            let options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(PAGE_SIZE)
                .with_revision(revision);
            let response = self
                .kv
                .clone()
                .get(from.clone(), Some(options))
                .await
                .map_err(|err| failed("listing", &prefix, err))?;
            if revision == 0 {
                revision = response.header().map_or(0, |header| header.revision());
            }

            for kv in response.kvs() {
                let record = decode::<LoanRecord>(kv)?;
                if record.status == LoanStatus::Processing {
                    ids.push(record.id);
                }
            }

            match response.kvs().last() {
                Some(last) if response.more() => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => break,
            }
        }

        debug!(count = ids.len(), "listed loans still processing");
        Ok(ids)
    }
}

/// Where an idempotency key is kept. It is hashed: it comes from a client,
/// so its length and characters are not ours to trust in a key.
fn idempotency_key(prefix: &str, key: &str) -> String {
    format!(
        "{prefix}idempotency/{}",
        hex::encode(Sha256::digest(key.as_bytes()))
    )
}

/// The first key read by a transaction's `or_else` branch, if it exists.
fn first_read(response: &TxnResponse) -> Option<KeyValue> {
    response.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(mut get) => get.take_kvs().into_iter().next(),
        _ => None,
    })
}

/// The smallest key greater than every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff: the range runs to the end of the key space.
    vec![0]
}

fn encode<T: Serialize>(key: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|err| StoreError::Corrupt {
        key: key.to_owned(),
        reason: format!("cannot be encoded as JSON: {err}"),
    })
}

/// Decodes a stored value. The reason names the error's kind and place,
/// never the value: a loan record holds personal data.
fn decode<T: for<'de> Deserialize<'de>>(kv: &KeyValue) -> Result<T, StoreError> {
    serde_json::from_slice(kv.value()).map_err(|err| StoreError::Corrupt {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        reason: format!(
            "not the expected JSON ({:?} error at line {}, column {})",
            err.classify(),
            err.line(),
            err.column()
        ),
    })
}

fn failed(operation: &str, key: &str, err: etcd_client::Error) -> StoreError {
    StoreError::Unavailable(format!("etcd {operation} of {key} failed: {err}"))
}

fn already_exists(id: Uuid) -> StoreError {
    StoreError::Unavailable(format!(
        "loan {id} already exists in the store; it was not overwritten"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key_after_the_prefix() {
        assert_eq!(prefix_end(b"loan/loans/"), b"loan/loans0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn idempotency_keys_are_hashed_under_the_prefix() {
        assert_eq!(
            idempotency_key("test/", "abc"),
            "test/idempotency/ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
