//! The webhook load generator the load benches share: [`CONNECTIONS`] keep-alive connections
//! sending for [`DURATION`] against loopback, each request built by the caller (`make(n)`, and
//! which of several URLs it goes to: `n % urls.len()`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::percentile_ms;

pub const CONNECTIONS: usize = 16;
pub const DURATION: Duration = Duration::from_secs(5);

pub struct Outcome {
    pub requests: u64,
    pub unexpected: u64,
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
}

/// Sends for [`DURATION`] on [`CONNECTIONS`] connections, connection `i` to
/// `urls[i % urls.len()]`; `make` builds request `n`.
pub fn load(
    urls: Vec<String>,
    expect: u16,
    make: impl Fn(u64) -> (Vec<(String, String)>, Vec<u8>) + Send + Sync + 'static,
) -> Outcome {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let client = orchestrator::rotation::http_client()
            .pool_max_idle_per_host(CONNECTIONS)
            .tls_certs_only(std::iter::empty())
            .build()
            .expect("client");
        let make = Arc::new(make);
        let counter = Arc::new(AtomicU64::new(0));
        let unexpected = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..CONNECTIONS {
            let (client, url, make, counter, unexpected) = (
                client.clone(),
                urls[i % urls.len()].clone(),
                make.clone(),
                counter.clone(),
                unexpected.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                while start.elapsed() < DURATION {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let (headers, body) = make(n);
                    let mut req = client.post(&url).body(body);
                    for (k, v) in headers {
                        req = req.header(k, v);
                    }
                    let t0 = Instant::now();
                    match req.send().await {
                        Ok(resp) => {
                            let status = resp.status().as_u16();
                            let _ = resp.bytes().await;
                            if status != expect {
                                unexpected.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(_) => {
                            unexpected.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    lat.push(t0.elapsed());
                }
                lat
            }));
        }
        let mut latencies = Vec::new();
        for t in tasks {
            latencies.extend(t.await.unwrap_or_default());
        }
        Outcome {
            requests: latencies.len() as u64,
            unexpected: unexpected.load(Ordering::Relaxed),
            latencies,
            elapsed: start.elapsed(),
        }
    })
}

pub fn report(name: &str, o: &Outcome) -> f64 {
    let rate = o.requests as f64 / o.elapsed.as_secs_f64();
    eprintln!(
        "{name:<10} {rate:>9.0} req/s  p50 {:.2} ms  p99 {:.2} ms  ({} requests, {} unexpected answers)",
        percentile_ms(o.latencies.clone(), 0.5),
        percentile_ms(o.latencies.clone(), 0.99),
        o.requests,
        o.unexpected
    );
    rate
}
