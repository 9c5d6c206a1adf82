//! A webhook receiver for load runs (bench/pipeline.sh): answers every POST with 200
//! at once, and after SECONDS prints how many it took and at what rate (between the
//! first and the last). Listens on 127.0.0.1 only.
//!
//! Usage: webhook_sink PORT SECONDS

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    /// Microseconds since start of the first and the last request.
    first_us: AtomicU64,
    last_us: AtomicU64,
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, port, seconds] = args.as_slice() else {
        eprintln!("usage: webhook_sink PORT SECONDS");
        std::process::exit(2);
    };
    let seconds: u64 = seconds.parse().expect("SECONDS is a number");
    let started = Instant::now();
    let counts = Arc::new(Counts::default());
    let shared = counts.clone();
    let server = HttpServer::new(move || {
        let counts = shared.clone();
        App::new().default_service(web::to(move || {
            let counts = counts.clone();
            async move {
                let now = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                if counts.requests.fetch_add(1, Ordering::Relaxed) == 0 {
                    counts.first_us.store(now, Ordering::Relaxed);
                }
                counts.last_us.fetch_max(now, Ordering::Relaxed);
                HttpResponse::Ok().finish()
            }
        }))
    })
    .workers(1)
    .bind(("127.0.0.1", port.parse::<u16>().expect("PORT is a port")))?
    .run();
    let handle = server.handle();
    actix_web::rt::spawn(async move {
        actix_web::rt::time::sleep(Duration::from_secs(seconds)).await;
        handle.stop(false).await;
    });
    server.await?;
    let requests = counts.requests.load(Ordering::Relaxed);
    let span = (counts.last_us.load(Ordering::Relaxed) - counts.first_us.load(Ordering::Relaxed)) as f64 / 1e6;
    let rate = if span > 0.0 { requests as f64 / span } else { 0.0 };
    println!("{{\"requests\":{requests},\"span_s\":{span:.2},\"rate\":{rate:.0}}}");
    Ok(())
}
