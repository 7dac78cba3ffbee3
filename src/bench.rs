//! Load benchmarks against a running API: throughput of loans decided end
//! to end, and `POST /loan` latency at a fixed rate. Figures are printed,
//! never asserted; BENCHMARKS.md keeps them with the command that made them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use loan_core::Cpf;
use serde::Deserialize;
use tokio::sync::Semaphore;
use uuid::Uuid;

/// A loan request body for the `n`-th synthetic applicant: a valid CPF, an
/// adult, and amounts spread over the accepted range.
pub fn request_body(n: u32) -> String {
    let cpf = (0..)
        .find_map(|k| Cpf::from_base(n.wrapping_mul(7_919).wrapping_add(k) + 100_000_000))
        .map(|cpf| cpf.digits().to_owned())
        .unwrap_or_default();
    let amount = 1000 + (n % 3001);
    let terms = [6, 9, 12][(n % 3) as usize];
    let income = 500 + (n % 5000);
    format!(
        r#"{{"name":"Applicant {n}","cpf":"{cpf}","birthdate":"1985-03-14","amount":{amount}.00,"terms":{terms},"income":{income}.50}}"#
    )
}

#[derive(Deserialize)]
struct Accepted {
    id: Uuid,
}

#[derive(Deserialize)]
struct LoanView {
    status: String,
    created_at: Option<jiff::Timestamp>,
    updated_at: Option<jiff::Timestamp>,
}

/// Posts `count` loans with `concurrency` requests in flight, waits until
/// every one is final, and prints the rates.
pub async fn throughput(base: &str, count: u32, concurrency: usize) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let gate = Arc::new(Semaphore::new(concurrency));
    let next = Arc::new(AtomicU32::new(0));
    let url = format!("{base}/loan");

    let started = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (client, url, next, gate) = (client.clone(), url.clone(), next.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await;
            let mut ids = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    return Ok::<_, anyhow::Error>(ids);
                }
                let reply = client.post(&url).body(request_body(n)).send().await?;
                if reply.status() != reqwest::StatusCode::ACCEPTED {
                    bail!("POST /loan answered {}", reply.status());
                }
                ids.push(reply.json::<Accepted>().await?.id);
            }
        }));
    }
    let mut ids = Vec::with_capacity(count as usize);
    for task in tasks {
        ids.extend(task.await??);
    }
    let posted = started.elapsed();
    println!(
        "posted {count} loans in {:.2} s: {:.0} POST/s with {concurrency} in flight",
        posted.as_secs_f64(),
        f64::from(count) / posted.as_secs_f64()
    );

    let (first_created, last_decided) = wait_all_final(&client, base, &ids).await?;
    let span = last_decided.duration_since(first_created);
    let span_secs = span.as_secs_f64();
    println!(
        "all {count} final {:.2} s after the first was accepted: {:.0} loans decided/s end to end",
        span_secs,
        f64::from(count) / span_secs
    );
    Ok(())
}

/// Polls every loan until it is final; returns the earliest creation and
/// the latest decision time the API reports.
async fn wait_all_final(
    client: &reqwest::Client,
    base: &str,
    ids: &[Uuid],
) -> anyhow::Result<(jiff::Timestamp, jiff::Timestamp)> {
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut first_created: Option<jiff::Timestamp> = None;
    let mut last_decided: Option<jiff::Timestamp> = None;
    for id in ids {
        loop {
            let view: LoanView = client
                .get(format!("{base}/loan/{id}"))
                .send()
                .await?
                .json()
                .await
                .context("reading GET /loan/{id}")?;
            if view.status != "processing" {
                let created = view.created_at.context("the view has no created_at")?;
                let updated = view.updated_at.context("the view has no updated_at")?;
                first_created = Some(first_created.map_or(created, |t| t.min(created)));
                last_decided = Some(last_decided.map_or(updated, |t| t.max(updated)));
                break;
            }
            if Instant::now() > deadline {
                bail!("loan {id} still processing after 10 minutes");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    match (first_created, last_decided) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => bail!("no loans were posted"),
    }
}

/// Posts loans at a fixed `rate` per second for `duration`, open loop (a
/// slow answer does not delay the next request), and prints latency
/// percentiles.
pub async fn latency(base: &str, rate: u32, duration: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let url = format!("{base}/loan");
    let total = (f64::from(rate) * duration.as_secs_f64()) as u32;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(total as usize);
    for n in 0..total {
        ticker.tick().await;
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let reply = client.post(&url).body(request_body(n)).send().await?;
            let status = reply.status();
            reply.bytes().await?;
            if status != reqwest::StatusCode::ACCEPTED {
                bail!("POST /loan answered {status}");
            }
            Ok::<_, anyhow::Error>(sent.elapsed())
        }));
    }
    let mut samples = Vec::with_capacity(tasks.len());
    for task in tasks {
        samples.push(task.await??);
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!(
        "POST /loan at {rate}/s for {} s ({} requests): p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        duration.as_secs(),
        samples.len(),
        at(0.50).as_secs_f64() * 1e3,
        at(0.90).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        at(1.0).as_secs_f64() * 1e3,
    );
    Ok(())
}
