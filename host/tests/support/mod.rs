//! Helpers shared by the host's integration tests: the policy components
//! they load, built from source on first use, and engine settings.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use jiff::civil::Date;
use loan_core::settings::PolicySettings;
use loan_core::{Application, Cpf, Money, Terms};
use loan_host::{Evaluator, Policy, PolicyEngine};

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The reference policy component, built by cargo where `loan` expects it
/// (cargo only rebuilds it when its sources changed).
pub fn reference_policy() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = repo_root().join("plugins/reference");
        build(
            &root.join("Cargo.toml"),
            &root.join("target"),
            "reference_policy.wasm",
        )
    })
}

/// The probe policy of `tests/fixtures/probe-policy`, which tries the
/// sandbox's walls and misbehaves on request.
pub fn probe_policy() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let manifest =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/probe-policy/Cargo.toml");
        let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("probe-policy");
        build(&manifest, &target, "probe_policy.wasm")
    })
}

fn build(manifest: &Path, target_dir: &Path, file: &str) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "building {} failed:\n{}",
        manifest.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let wasm = target_dir.join("wasm32-wasip2/release").join(file);
    assert!(wasm.is_file(), "{} was not built", wasm.display());
    wasm
}

/// Engine settings for tests: the shipped defaults with a small pool.
pub fn settings() -> PolicySettings {
    PolicySettings {
        path: reference_policy().to_owned(),
        time_zone: "America/Sao_Paulo".into(),
        deadline_ms: 1000,
        memory_limit_mib: 64,
        max_instances: 8,
    }
}

/// An engine with `settings` and the component at `path` active.
pub async fn evaluator(settings: &PolicySettings, path: &Path) -> (Evaluator, Arc<Policy>) {
    let engine = PolicyEngine::new(settings).unwrap();
    let policy = engine.load(path).await.unwrap();
    (Evaluator::new(engine, policy.clone()), policy)
}

/// An application; the probe policy reads its income as a mode.
pub fn application(amount_cents: i64, terms: u8, income_cents: i64) -> Application {
    Application {
        name: "Maria Silva".into(),
        cpf: Cpf::parse("12345678909").unwrap(),
        birthdate: Date::new(1990, 1, 1).unwrap(),
        amount: Money::from_cents(amount_cents),
        terms: Terms::try_from(terms).unwrap(),
        income: Money::from_cents(income_cents),
    }
}

/// The date most tests evaluate on.
pub fn today() -> Date {
    Date::new(2024, 6, 15).unwrap()
}
