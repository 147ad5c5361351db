//! The Weir driver: wins the job's leadership in etcd, plans offset-range batches, records them
//! before dispatch, hands tasks to executors over gRPC, and commits finished batches in order.
//!
//! `run` is a library function so tests can start a driver in-process; `main.rs` only parses
//! flags and calls it.

mod data_loss;
mod election;
mod error;
mod etcd;
mod group;
mod http;
mod job;
pub mod planner;
pub mod rate;
pub mod scheduler;
mod service;
mod source;
mod status;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};
use weir_common::config::{Guarantee, JobConfig};
use weir_common::protocol::JobKeys;
use weir_common::retry::{Backoff, retry};
use weir_proto::v1::driver_server::DriverServer;

pub use error::DriverError;

use crate::group::JobGroup;
use crate::job::JobLoop;
use crate::service::{DriverService, Session};
use crate::source::Source;
use crate::status::Status;

/// Waits between attempts to reach etcd or Kafka at start: forever, loudly, never a crash loop.
const START_RETRY: Backoff = Backoff {
    initial: Duration::from_millis(500),
    max: Duration::from_secs(10),
    give_up_after: None,
};

/// Runs the driver until `shutdown` resolves (then stops planning, lets in-flight batches commit
/// and returns `Ok`) or the job fails.
pub async fn run(
    config: Arc<JobConfig>,
    shutdown: impl Future<Output = &'static str> + Send + 'static,
) -> Result<(), DriverError> {
    let span = info_span!("driver", job = %config.job.name);
    let stop = weir_common::shutdown::cancel_on(shutdown);
    let leading = Arc::new(AtomicBool::new(false));
    tokio::select! {
        result = lead(config, stop.clone(), leading.clone()).instrument(span) => result,
        // Before leadership nothing is in flight: a stop ends the wait at once.
        _ = stopped_before_leading(&stop, &leading) => Ok(()),
    }
}

/// Resolves on a stop that comes before this driver leads. Once leading, `lead` handles the
/// stop itself (drain, commit), so this never resolves.
async fn stopped_before_leading(stop: &CancellationToken, leading: &AtomicBool) {
    stop.cancelled().await;
    if leading.load(Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
}

async fn lead(
    config: Arc<JobConfig>,
    stop: CancellationToken,
    leading: Arc<AtomicBool>,
) -> Result<(), DriverError> {
    info!(config = %config.masked_toml(), "Effective config");
    let grpc_addr = config.driver.grpc_listen;
    let listener = tokio::net::TcpListener::bind(grpc_addr).await.map_err(|source| {
        DriverError::Listen { what: "driver.grpc_listen", addr: grpc_addr, source }
    })?;
    let endpoints = config.checkpoint.etcd.join(",");
    let client = retry("connecting to etcd", START_RETRY, || {
        connect_etcd(&config.checkpoint.etcd, &endpoints)
    })
    .await?;
    let keys = JobKeys::new(&config.checkpoint.prefix, &config.job.name);
    let driver_id = format!("{}-{}", hostname(), std::process::id());
    let address = config.driver.advertise_url();
    let lease_ttl = config.driver.executor_timeout.max(Duration::from_secs(2));
    let leadership = retry("campaigning for leadership in etcd", START_RETRY, || {
        election::campaign(&client, &endpoints, &keys, &driver_id, &address, lease_ttl)
    })
    .await?;
    leading.store(true, Ordering::SeqCst);
    info!(generation = leadership.generation, driver = %driver_id, address = %address, "Leading the job");

    let store = etcd::Store::new(
        client.clone(),
        endpoints,
        keys,
        config.job.name.clone(),
        leadership.revision,
    );
    let stored =
        retry("reading the job's checkpoint from etcd", START_RETRY, || store.load()).await?;
    info!(last_committed_batch = ?stored.offsets.as_ref().and_then(|o| o.last_committed_batch),
        partitions = stored.offsets.as_ref().map_or(0, |o| o.next_offsets.len()),
        replaying = stored.pending.len(), "Checkpoint loaded");
    let source = Arc::new(Source::new(&config.source)?);
    let group = Arc::new(JobGroup::new(&config)?);
    let status = Arc::new(Mutex::new(Status {
        job: config.job.name.clone(),
        driver_id: driver_id.clone(),
        generation: leadership.generation,
        ..Status::default()
    }));
    let servers_stop = CancellationToken::new();
    if let Some(addr) = config.driver.http_listen {
        http::serve(addr, status.clone(), servers_stop.clone()).await?;
    }
    let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
    let session = Session {
        job: config.job.name.clone(),
        driver_id,
        generation: leadership.generation,
        config_toml: config.to_toml_string(),
        heartbeat_interval: config.driver.heartbeat_interval,
    };
    let service = DriverServer::new(DriverService::new(session, events_tx));
    let grpc_stop = servers_stop.clone();
    tokio::spawn(async move {
        let result = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), grpc_stop.cancelled())
            .await;
        if let Err(e) = result {
            warn!(error = %e, "The gRPC server stopped");
        }
    });

    let mut job =
        JobLoop::new(config.clone(), store, source, group, leadership.generation, stored, status);
    // The starting offsets go to etcd before the first batch, so a restart before it does not
    // resolve `latest` again. Kafka unreachable: wait and retry, loudly.
    let discovered = tokio::select! {
        result = discover_until_kafka_answers(&mut job, &config) => Some(result?),
        _ = stop.cancelled() => None,
    };
    let result = match discovered {
        Some(()) => job.run(events_rx, stop, leadership.lost.clone()).await,
        None => Ok(()),
    };
    servers_stop.cancel();
    if !matches!(result, Err(DriverError::LostLeadership { .. })) {
        leadership.resign(&client).await;
    }
    result
}

async fn discover_until_kafka_answers(
    job: &mut JobLoop,
    config: &JobConfig,
) -> Result<(), DriverError> {
    let mut attempt = 0;
    loop {
        let checked = async {
            if config.sink.guarantee == Guarantee::ExactlyOnce {
                group::check_transaction_timeout(config).await?;
            }
            job.discover_partitions().await
        };
        match checked.await {
            Ok(_) => return Ok(()),
            Err(e @ DriverError::Kafka { .. }) => {
                attempt += 1;
                let delay = START_RETRY.delay(attempt);
                warn!(attempt, retry_in = ?delay, error = %e, "Cannot read the source topics; retrying");
                tokio::time::sleep(delay).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Connects and proves etcd answers (connecting alone does not).
async fn connect_etcd(urls: &[String], endpoints: &str) -> Result<Client, DriverError> {
    let etcd = |source| DriverError::Etcd { endpoints: endpoints.to_owned(), source };
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(3))
        .with_timeout(Duration::from_secs(5));
    let mut client = Client::connect(urls, Some(options)).await.map_err(etcd)?;
    client.status().await.map_err(etcd)?;
    Ok(client)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "driver".into())
}
