//! A loaded policy component and the swappable pointer to the active one.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use loan_core::PolicyRef;
use sha2::{Digest, Sha256};

use crate::bindings::PolicyPre;
use crate::engine::PolicyEngine;
use crate::imports::{EvalState, LogTags};
use crate::sandbox::within_deadline;

/// Longest policy name or version accepted from `info()`.
const MAX_INFO_CHARS: usize = 64;

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The component file could not be read.
    #[error("cannot read the policy component {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is larger than any policy component should be.
    #[error("the policy component {path} is larger than {limit} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The largest size accepted.
        limit: u64,
    },
    /// The bytes are not a valid WebAssembly component.
    #[error("policy {digest} is not a valid WebAssembly component: {reason}")]
    Compile {
        /// Digest of the bytes.
        digest: String,
        /// What wasmtime said.
        reason: String,
    },
    /// The component does not fit the `loan:policy` world: it imports
    /// something the host does not give, or lacks an export.
    #[error("policy {digest} does not implement the loan:policy world: {reason}")]
    Link {
        /// Digest of the bytes.
        digest: String,
        /// What wasmtime said.
        reason: String,
    },
    /// `info()` failed or returned an unusable name or version.
    #[error("policy {digest} could not say what it is: {reason}")]
    Info {
        /// Digest of the bytes.
        digest: String,
        /// What went wrong.
        reason: String,
    },
}

impl PolicyError {
    pub(crate) fn compile(digest: &str, error: &wasmtime::Error) -> Self {
        PolicyError::Compile {
            digest: digest.to_owned(),
            reason: describe(error),
        }
    }

    pub(crate) fn link(digest: &str, error: &wasmtime::Error) -> Self {
        PolicyError::Link {
            digest: digest.to_owned(),
            reason: describe(error),
        }
    }
}

/// An error and its causes on one line.
pub(crate) fn describe(error: &wasmtime::Error) -> String {
    error
        .chain()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

/// `sha256:` and the hex digest of a component's bytes.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A compiled, linked policy ready to instantiate, and what it calls itself.
pub struct Policy {
    reference: PolicyRef,
    pub(crate) pre: PolicyPre<EvalState>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("reference", &self.reference)
            .finish_non_exhaustive()
    }
}

impl Policy {
    /// Asks a freshly linked component for its name and version.
    pub(crate) async fn introduce(
        engine: &PolicyEngine,
        digest: String,
        pre: PolicyPre<EvalState>,
    ) -> Result<Self, PolicyError> {
        let failed = |reason: String| PolicyError::Info {
            digest: digest.clone(),
            reason,
        };
        let _slot = engine
            .slot()
            .await
            .ok_or_else(|| failed("the engine is shutting down".into()))?;
        let mut store = engine.store(None, engine.today(), LogTags::new(None, digest.clone()));
        let budget = store.data().budget.clone();
        let info = within_deadline(&budget, async {
            let instance = pre.instantiate_async(&mut store).await?;
            instance.call_info(&mut store).await
        })
        .await
        .map_err(|e| failed(e.to_string()))?
        .map_err(|e| failed(describe(&e)))?;

        for (what, value) in [("name", &info.name), ("version", &info.version)] {
            let chars = value.chars().count();
            if chars == 0 || chars > MAX_INFO_CHARS || value.chars().any(char::is_control) {
                return Err(failed(format!(
                    "its {what} must be 1 to {MAX_INFO_CHARS} printable characters"
                )));
            }
        }
        Ok(Policy {
            reference: PolicyRef {
                digest,
                name: info.name,
                version: info.version,
            },
            pre,
        })
    }

    /// `sha256:<hex>` of the component's bytes.
    pub fn digest(&self) -> &str {
        &self.reference.digest
    }

    /// The name the policy gives itself.
    pub fn name(&self) -> &str {
        &self.reference.name
    }

    /// The version the policy gives itself.
    pub fn version(&self) -> &str {
        &self.reference.version
    }

    /// Digest, name and version, as decisions record them.
    pub fn reference(&self) -> &PolicyRef {
        &self.reference
    }
}

/// The policy new evaluations use. Swapping it is atomic; an evaluation
/// already running keeps the policy it started with.
#[derive(Clone)]
pub struct ActivePolicy {
    current: Arc<ArcSwap<Policy>>,
}

impl std::fmt::Debug for ActivePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ActivePolicy")
            .field(self.snapshot().reference())
            .finish()
    }
}

impl ActivePolicy {
    /// Starts with `policy` active.
    pub fn new(policy: Arc<Policy>) -> Self {
        ActivePolicy {
            current: Arc::new(ArcSwap::new(policy)),
        }
    }

    /// The policy active now, for one evaluation to finish on.
    pub fn snapshot(&self) -> Arc<Policy> {
        self.current.load_full()
    }

    /// Makes `policy` active and returns the one it replaces.
    pub fn activate(&self, policy: Arc<Policy>) -> Arc<Policy> {
        tracing::info!(
            policy = %policy.digest(),
            name = %policy.name(),
            version = %policy.version(),
            "policy activated"
        );
        self.current.swap(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_prefixed_sha256_hex() {
        assert_eq!(
            digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
