//! The case files through the case runner, against the built reference
//! policy.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::PathBuf;

use loan_host::cases::Verdict;
use loan_host::run_cases;

/// The case file: `LOAN_CASES`, or the shared one beside the repository.
fn cases_file() -> PathBuf {
    match std::env::var_os("LOAN_CASES") {
        Some(path) => PathBuf::from(path),
        None => support::repo_root().join("../shared/cases/policy-cases.json"),
    }
}

#[tokio::test]
async fn every_reference_case_passes() {
    let file = cases_file();
    let expected_count = {
        let text = std::fs::read_to_string(&file).unwrap();
        serde_json::from_str::<Vec<serde_json::Value>>(&text)
            .unwrap()
            .len()
    };

    let report = run_cases(&file, support::reference_policy(), &support::settings())
        .await
        .unwrap();

    println!("{report}");
    assert_eq!(report.results.len(), expected_count);
    assert!(report.all_passed(), "{report}");
}

#[tokio::test]
async fn out_of_range_answers_are_errors_and_wrong_expectations_fail() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cases.json");
    let case = |id: &str, score: &str, commitment: &str, expected: &str| {
        format!(
            r#"{{"id": "{id}", "today": "2024-06-15",
                "application": {{"name": "A", "cpf": "12345678909", "birthdate": "1990-01-01",
                                 "amount": 2500, "terms": 6, "income": 1500}},
                "bureau": {{"score": {score}, "commitment": {commitment}}},
                "expected": {expected}}}"#
        )
    };
    let approved = r#"{"result": "approved", "refused_policy": null, "terms": 12,
                       "amount": 2500.00, "installment": 274.17}"#;
    let cases = [
        case("score-1001", "1001", "0.8", r#"{"result": "error"}"#),
        case("score-negative", "-1", "0.8", r#"{"result": "error"}"#),
        case("commitment-1.5", "950", "1.5", r#"{"result": "error"}"#),
        case("worked-example", "950", "0.8", approved),
        case("worked-example-exponent", "9.5e2", "8e-1", approved),
        // Wrong on purpose: the runner must report these as failures.
        case(
            "wrong-installment",
            "950",
            "0.8",
            &approved.replace("274.17", "274.18"),
        ),
        case("wrong-verdict", "1001", "0.8", approved),
    ];
    std::fs::write(&file, format!("[{}]", cases.join(","))).unwrap();

    let report = run_cases(&file, support::reference_policy(), &support::settings())
        .await
        .unwrap();

    println!("{report}");
    let failed: Vec<&str> = report.failures().map(|r| r.id.as_str()).collect();
    assert_eq!(failed, ["wrong-installment", "wrong-verdict"]);
    assert!(!report.all_passed());
    let wrong = &report.results[6];
    assert_eq!(wrong.got.verdict, Verdict::Error);
    assert!(wrong.got.detail.as_deref().unwrap().contains("1001"));
}

#[tokio::test]
async fn a_malformed_case_file_is_an_error_not_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cases.json");
    std::fs::write(&file, r#"[{"id": "x"}]"#).unwrap();
    let error = run_cases(&file, support::reference_policy(), &support::settings())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("malformed"), "{error}");
}
