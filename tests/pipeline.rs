//! End to end: loans through HTTP, etcd, RabbitMQ, the worker running the
//! reference policy component, and the bureau simulator over HTTP, checked
//! against the shared case file.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use jiff::civil::Date;
use jiff::{ToSpan, Unit};
use serde_json::{Value, json};

use common::{Service, delete_queues, etcd_keys, fixture_file, settings};

/// Completed years from `birth` to `day`.
fn age(birth: Date, day: Date) -> i16 {
    birth
        .until((Unit::Year, day))
        .map(|span| span.get_years())
        .unwrap_or(0)
}

fn date(value: &Value) -> Date {
    value.as_str().unwrap().parse().unwrap()
}

/// Cases whose expected outcome holds on any evaluation date: the age test
/// gives the same answer on the case's `today` and on the real today.
fn date_independent_cases(today: Date) -> Vec<Value> {
    let text = std::fs::read_to_string(common::cases_file()).unwrap();
    let cases: Vec<Value> = serde_json::from_str(&text).unwrap();
    cases
        .into_iter()
        .filter(|case| {
            let birth = date(&case["application"]["birthdate"]);
            let then = age(birth, date(&case["today"])) >= 18;
            let now = birth <= today && age(birth, today) >= 18;
            then == now
        })
        .collect()
}

fn today() -> Date {
    jiff::Zoned::now()
        .with_time_zone(jiff::tz::TimeZone::get("America/Sao_Paulo").unwrap())
        .date()
}

fn view_matches(case: &Value, view: &Value) -> Result<(), String> {
    let expected = &case["expected"];
    let money = |v: &Value| v.as_f64().map(|f| (f * 100.0).round() as i64);
    let checks = [
        ("status", json!("completed"), view["status"].clone()),
        ("result", expected["result"].clone(), view["result"].clone()),
        (
            "refused_policy",
            expected["refused_policy"].clone(),
            view["refused_policy"].clone(),
        ),
        ("terms", expected["terms"].clone(), view["terms"].clone()),
    ];
    for (field, want, got) in checks {
        if want != got {
            return Err(format!("{field}: expected {want}, got {got} in {view}"));
        }
    }
    for field in ["amount", "installment"] {
        if money(&expected[field]) != money(&view[field]) {
            return Err(format!(
                "{field}: expected {}, got {} in {view}",
                expected[field], view[field]
            ));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_file_through_http_rabbitmq_worker_bureau_and_etcd() {
    let today = today();
    let mut cases = date_independent_cases(today);

    // The case file's age refusals are tied to its dates; add one that is
    // under age today, with the bureau answers of an otherwise approved case.
    let template = cases
        .iter()
        .find(|c| c["expected"]["result"] == "approved")
        .cloned()
        .unwrap();
    let mut minor = template.clone();
    minor["id"] = json!("under-age-today");
    minor["application"]["cpf"] = json!("52998224725");
    minor["application"]["birthdate"] = json!(
        today
            .checked_sub(17.years())
            .unwrap()
            .checked_add(1.day())
            .unwrap()
            .to_string()
    );
    minor["expected"] = json!({"result": "refused", "refused_policy": "age",
        "terms": null, "amount": null, "installment": null});
    cases.push(minor);

    let kinds = |pred: &dyn Fn(&Value) -> bool| cases.iter().filter(|c| pred(c)).count();
    assert!(kinds(&|c| c["expected"]["result"] == "invalid") >= 2);
    for policy in ["age", "score", "commitment"] {
        assert!(
            kinds(&|c| c["expected"]["refused_policy"] == policy) >= 1,
            "{policy}"
        );
    }
    assert!(
        kinds(&|c| {
            c["expected"]["result"] == "approved"
                && c["expected"]["terms"] == c["application"]["terms"]
        }) >= 1
    );
    for (from, to) in [(6, 9), (6, 12), (9, 12)] {
        assert!(
            kinds(&|c| c["application"]["terms"] == from && c["expected"]["terms"] == to) >= 1,
            "no escalation from {from} to {to}"
        );
    }

    let fixtures: serde_json::Map<String, Value> = cases
        .iter()
        .filter(|c| c["expected"]["result"] != "invalid")
        .map(|c| {
            (
                c["application"]["cpf"].as_str().unwrap().to_owned(),
                c["bureau"].clone(),
            )
        })
        .collect();
    let fixtures = fixture_file(&Value::Object(fixtures));
    let settings = settings(&fixtures.path);
    let service = Service::start(settings.clone(), true).await;

    let mut accepted = Vec::new();
    for case in &cases {
        let (status, body, headers) = service.post(&case["application"].to_string()).await;
        if case["expected"]["result"] == "invalid" {
            assert_eq!(status, 400, "{}: {body}", case["id"]);
            assert!(!body["errors"].as_array().unwrap().is_empty(), "{body}");
        } else {
            assert_eq!(status, 202, "{}: {body}", case["id"]);
            let id = body["id"].as_str().unwrap().to_owned();
            assert_eq!(headers["location"], format!("/loan/{id}").as_str());
            accepted.push((case, id));
        }
    }

    let mut failures = Vec::new();
    for (case, id) in &accepted {
        let view = service.wait_final(id, Duration::from_secs(60)).await;
        for personal in ["name", "cpf", "birthdate", "income"] {
            assert!(view.get(personal).is_none(), "{personal} leaked: {view}");
        }
        assert!(
            view["policy"]["digest"]
                .as_str()
                .unwrap()
                .starts_with("sha256:"),
            "{view}"
        );
        if let Err(why) = view_matches(case, &view) {
            failures.push(format!("{}: {why}", case["id"]));
        }
    }

    // One key per accepted loan; rejected requests left nothing behind.
    assert_eq!(etcd_keys(&settings).await, accepted.len() as i64);
    service.stop().await;
    delete_queues(&settings).await;
    assert!(
        failures.is_empty(),
        "cases failed:\n{}",
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bureau_that_stays_down_fails_the_loan_after_the_retry_budget() {
    let down = "39053344705";
    let out_of_range = "11144477735";
    let fixtures = fixture_file(&json!({
        down: {"score": {"status": 503}, "commitment": 0.1},
        out_of_range: {"score": 1001, "commitment": 0.1},
    }));
    let settings = settings(&fixtures.path);
    let service = Service::start(settings.clone(), true).await;

    for cpf in [down, out_of_range] {
        let body = json!({"name": "Ana", "cpf": cpf, "birthdate": "1980-01-01",
            "amount": 1000, "terms": 6, "income": 5000});
        let (status, reply, _) = service.post(&body.to_string()).await;
        assert_eq!(status, 202, "{reply}");
        let view = service
            .wait_final(reply["id"].as_str().unwrap(), Duration::from_secs(30))
            .await;
        assert_eq!(view["status"], "failed", "{view}");
        assert_eq!(view["result"], Value::Null);
        let reason = view["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("bureau"), "{view}");
        assert!(!reason.contains(settings.bureau.api_key.expose()), "{view}");
    }

    service.stop().await;
    delete_queues(&settings).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loans_accepted_while_no_worker_runs_are_decided_when_one_starts() {
    let fixtures = fixture_file(&json!({}));
    let settings = settings(&fixtures.path);
    let api_only = Service::start(settings.clone(), false).await;
    let mut ids = Vec::new();
    for n in 0..20 {
        let (status, reply, _) = api_only.post(&loan::bench::request_body(n)).await;
        assert_eq!(status, 202, "{reply}");
        ids.push(reply["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        assert_eq!(api_only.get(id).await.1["status"], "processing");
    }
    api_only.stop().await;

    let service = Service::start(settings.clone(), true).await;
    for id in &ids {
        let view = service.wait_final(id, Duration::from_secs(30)).await;
        assert_eq!(view["status"], "completed", "{view}");
    }
    service.stop().await;
    delete_queues(&settings).await;
}
