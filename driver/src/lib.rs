//! The Weir driver: wins the job's leadership in etcd, plans offset-range batches, records them
//! before dispatch, hands tasks to executors over gRPC, and commits finished batches in order.
//!
//! `run` is a library function so tests can start a driver in-process; `main.rs` only parses
//! flags and calls it. This file wires the real services to the job loop; the loop itself sees
//! them only through `io`'s traits.

pub mod ctl;
mod data_loss;
mod election;
mod error;
mod etcd;
mod group;
mod http;
mod incoming;
mod io;
mod job;
mod metrics;
pub mod planner;
pub mod rate;
pub mod scheduler;
mod service;
mod source;
mod status;
pub mod time;
mod tls;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use etcd_client::Client;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};
use weir_common::config::{Guarantee, JobConfig};
use weir_common::etcd::EtcdAccess;
use weir_common::protocol::{JobKeys, LeaderRecord};
use weir_common::retry::retry;
use weir_proto::v1::driver_server::DriverServer;

pub use error::{AttachRefused, DriverError};

use crate::election::Leadership;
use crate::etcd::EtcdStore;
use crate::group::KafkaGroup;
use crate::io::CheckpointStore;
use crate::job::{JobIo, JobLoop, START_RETRY};
use crate::metrics::DriverMetrics;
use crate::service::{DriverService, Session};
use crate::source::KafkaSource;
use crate::status::history::History;
use crate::status::{Role, Status};

/// Runs the driver until `shutdown` resolves (then stops planning, lets in-flight batches commit
/// and returns `Ok`) or the job fails. Whatever ends it, the servers it started are stopped and,
/// unless etcd already took it away, its leadership is given up, so a driver started next (in
/// this process or another) leads at once.
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

/// Binds the ports and starts the HTTP server (health, status and metrics answer from here
/// on, on a standby too), then campaigns and runs the job as leader; resigns whatever way the
/// job ends, and stops the HTTP server last.
async fn lead(
    config: Arc<JobConfig>,
    stop: CancellationToken,
    leading: Arc<AtomicBool>,
) -> Result<(), DriverError> {
    info!(config = %config.masked_toml(), "Effective config");
    // The driver's own clients read the source's secret references here.
    weir_common::config::secrets::check("source.kafka", &config.source.kafka)
        .map_err(|e| DriverError::Unfit(e.to_string()))?;
    // So is etcd's access: its TLS files and its password, whatever the retries later.
    EtcdAccess::from_config(&config.checkpoint)
        .options()
        .map_err(|e| DriverError::Unfit(format!("{}: {e}", e.part.config_key())))?;
    let listeners = Listeners::bind(&config).await?;
    let http_token = resolve_token("driver.http_token", config.driver.http_token.as_deref())?;
    let grpc_server = tls::GrpcServer::new(&config.driver)?;
    let executor_token =
        resolve_token("driver.executor_token", config.driver.executor_token.as_deref())?
            .map(|token| Arc::<str>::from(format!("Bearer {token}")));
    // The process id alone does not tell incarnations apart: a container restarted by its
    // policy has the same hostname and often the same pid, and its registration must be new
    // (the longest-waiting standby leads first, see `election`).
    let incarnation = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() & 0xffff);
    let driver_id = format!("{}-{}-{incarnation:04x}", hostname(), std::process::id());
    // Port 0 in `grpc_listen` lets the OS choose (tests running drivers side by side): the port
    // executors are told is then the one bound.
    let scheme = if config.driver.tls.is_some() { "https" } else { "http" };
    let address = match (&config.driver.advertise, listeners.grpc.local_addr()) {
        (None, Ok(bound)) => format!("{scheme}://{bound}"),
        _ => config.driver.advertise_url(),
    };
    let me = LeaderRecord {
        driver_id: driver_id.clone(),
        http_address: listeners
            .http
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|bound| http::public_url(bound, &address)),
        address,
        generation: 0,
        elected_at_ms: 0,
    };
    let metrics = Arc::new(DriverMetrics::new(&config.job.name, config.driver.partition_metrics));
    metrics.batch_interval.set(config.job.batch_interval.as_secs_f64());
    let (status, status_rx) = tokio::sync::watch::channel(Status {
        job: config.job.name.clone(),
        driver_id,
        guarantee: config.sink.guarantee.to_string(),
        batch_interval_ms: config.job.batch_interval.as_millis() as u64,
        started_at_ms: job::now_ms(),
        history: History::new(config.driver.status_history),
        ..Status::default()
    });
    let mut http_server = Servers::default();
    if let Some(listener) = listeners.http {
        let served =
            http::serve(listener, status_rx, metrics.clone(), http_token, http_server.stop.clone());
        http_server.tasks.push(served);
    }
    let running = Running { config, me, status, metrics, grpc_server, executor_token };
    let result = running.campaign_and_lead(listeners.grpc, stop, leading).await;
    http_server.stop().await;
    result
}

/// What a started driver has: its config, who it is, and what it shows.
struct Running {
    config: Arc<JobConfig>,
    me: LeaderRecord,
    status: tokio::sync::watch::Sender<Status>,
    metrics: Arc<DriverMetrics>,
    /// The gRPC server of every term, with the TLS checked at start.
    grpc_server: tls::GrpcServer,
    /// `Bearer {driver.executor_token}`, resolved at start.
    executor_token: Option<Arc<str>>,
}

impl Running {
    /// Connects to etcd, campaigns (a standby meanwhile), then runs the job as leader. A lost
    /// leadership (the lease ran out while etcd did not answer, or another driver took over)
    /// ends only the term: this term's batches stop where they are (the next leader replays
    /// them) and the driver campaigns again. Only a stop, or a failure that waiting cannot mend,
    /// ends it.
    async fn campaign_and_lead(
        self,
        grpc: TcpListener,
        stop: CancellationToken,
        leading: Arc<AtomicBool>,
    ) -> Result<(), DriverError> {
        let config = &self.config;
        let access = EtcdAccess::from_config(&config.checkpoint);
        // Where and as whom, in every etcd error of this driver.
        let endpoints = access.describe();
        let client =
            retry("connecting to etcd", START_RETRY, || connect_etcd(&access, &endpoints)).await?;
        let keys = JobKeys::new(&config.checkpoint.prefix, &config.job.name);
        let lease_ttl = config.driver.executor_timeout.max(Duration::from_secs(2));
        let grpc_addr = grpc.local_addr().map_err(|source| DriverError::Listen {
            what: "driver.grpc_listen",
            addr: config.driver.grpc_listen,
            source,
        })?;
        let mut grpc = Some(grpc);
        loop {
            let leadership = retry("campaigning for leadership in etcd", START_RETRY, || {
                election::campaign(&client, &endpoints, &keys, &self.me, lease_ttl, &self.status)
            })
            .await?;
            leading.store(true, Ordering::SeqCst);
            info!(generation = leadership.generation, driver = %self.me.driver_id,
                address = %self.me.address, "Leading the job");
            self.metrics.leader.set(1);
            self.metrics.generation.set(leadership.generation as i64);
            self.status.send_modify(|s| {
                s.role = Role::Leader;
                s.leader = None;
                s.ready = false;
                s.generation = leadership.generation;
                s.done_waiting("leader");
            });
            // The port of the first term is bound at start; a later term binds the same address
            // again (the previous term's server closed it).
            let listener = match grpc.take() {
                Some(listener) => listener,
                None => TcpListener::bind(grpc_addr).await.map_err(|source| {
                    DriverError::Listen { what: "driver.grpc_listen", addr: grpc_addr, source }
                })?,
            };
            let store = EtcdStore::new(
                client.clone(),
                endpoints.clone(),
                keys.clone(),
                config.job.name.clone(),
                leadership.revision,
            );
            let result = self.run_as_leader(&leadership, store, listener, stop.clone()).await;
            self.metrics.leader.set(0);
            // Revoking the lease deletes the leader key at once, so the next leader need not
            // wait for it to expire; after a lost lease it changes nothing. Bounded: etcd may be
            // the reason the term ended.
            let _ = tokio::time::timeout(RESIGN_LIMIT, leadership.resign(&client)).await;
            match result {
                Err(e @ DriverError::LostLeadership { .. }) if !stop.is_cancelled() => {
                    warn!(error = %e, "Lost the leadership: this term's batches stop here and the \
                        next leader replays them; campaigning again");
                    leading.store(false, Ordering::SeqCst);
                    self.status.send_modify(|s| {
                        s.role = Role::Starting;
                        s.ready = false;
                        s.executors.clear();
                        s.running_tasks.clear();
                        s.wait("leader", "the leadership, lost: campaigning again", job::now_ms());
                    });
                }
                Err(DriverError::LostLeadership { .. }) => {
                    warn!(
                        "Lost the leadership while stopping; the next leader replays what was in flight"
                    );
                    return Ok(());
                }
                other => return other,
            }
        }
    }

    /// Everything a leading driver does: load the checkpoint, start the gRPC server, run the job
    /// loop. The gRPC server stops when this returns, on every path.
    async fn run_as_leader(
        &self,
        leadership: &Leadership,
        store: EtcdStore,
        grpc: TcpListener,
        stop: CancellationToken,
    ) -> Result<(), DriverError> {
        let config = &self.config;
        let stored =
            retry("reading the job's checkpoint from etcd", START_RETRY, || store.load()).await?;
        info!(last_committed_batch = ?stored.offsets.as_ref().and_then(|o| o.last_committed_batch),
            partitions = stored.offsets.as_ref().map_or(0, |o| o.next_offsets.len()),
            replaying = stored.pending.len(), "Checkpoint loaded");
        let io = JobIo {
            store: Arc::new(store),
            source: Arc::new(KafkaSource::new(&config.source)?),
            group: Arc::new(KafkaGroup::new(config)?),
        };
        let mut servers = Servers::default();
        let (events_tx, events_rx) = tokio::sync::mpsc::channel(job::EVENT_QUEUE);
        let session = Session {
            job: config.job.name.clone(),
            driver_id: self.me.driver_id.clone(),
            generation: leadership.generation,
            config_toml: config.to_toml_string(),
            heartbeat_interval: config.driver.heartbeat_interval,
            executor_token: self.executor_token.clone(),
        };
        let service = DriverServer::new(DriverService::new(session, events_tx));
        let grpc_stop = servers.stop.clone();
        let mut grpc_server = self.grpc_server.builder()?;
        servers.tasks.push(tokio::spawn(async move {
            let result = grpc_server
                .add_service(service)
                .serve_with_incoming_shutdown(incoming::guarded(grpc), grpc_stop.cancelled())
                .await;
            if let Err(e) = result {
                warn!(error = %e, "The gRPC server stopped");
            }
        }));
        if config.sink.guarantee == Guarantee::ExactlyOnce {
            // Kafka unreachable is waited for; a timeout the broker refuses stops the job.
            tokio::select! {
                checked = retry("checking the broker's transaction limit", START_RETRY, || {
                    group::check_transaction_timeout(config)
                }) => checked?,
                _ = stop.cancelled() => {
                    servers.stop().await;
                    return Ok(());
                }
            }
        }
        let status = self.status.clone();
        let job = JobLoop::new(config.clone(), io, stored, status, self.metrics.clone());
        let result = job.run(events_rx, stop, leadership.lost.clone()).await;
        servers.stop().await;
        result
    }
}

/// The driver's ports, bound before it campaigns: a port in use fails the start at once, and
/// the addresses registered in etcd are the ones bound.
struct Listeners {
    grpc: TcpListener,
    http: Option<TcpListener>,
}

impl Listeners {
    async fn bind(config: &JobConfig) -> Result<Self, DriverError> {
        let bind = |what: &'static str, addr| async move {
            TcpListener::bind(addr).await.map_err(|source| DriverError::Listen {
                what,
                addr,
                source,
            })
        };
        let grpc = bind("driver.grpc_listen", config.driver.grpc_listen).await?;
        let http = match config.driver.http_listen {
            Some(addr) => Some(bind("driver.http_listen", addr).await?),
            None => None,
        };
        Ok(Listeners { grpc, http })
    }
}

/// How long a driver whose term ended waits for etcd to revoke its lease.
const RESIGN_LIMIT: Duration = Duration::from_secs(2);

/// How long the servers get to finish open requests once the job is done. Executors' streams
/// end as soon as the job loop lets go of them; a connection that stays open past this (a paused
/// executor, a client that never closes) is cut.
const SERVER_GRACE: Duration = Duration::from_secs(2);

/// The gRPC and HTTP servers of a leading driver. `stop` returns only once they have stopped and
/// their ports are closed, so a driver started next in the same process can bind them. Dropped
/// without `stop` (an early error), they are aborted.
#[derive(Default)]
struct Servers {
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Servers {
    async fn stop(mut self) {
        self.stop.cancel();
        for mut task in std::mem::take(&mut self.tasks) {
            if tokio::time::timeout(SERVER_GRACE, &mut task).await.is_err() {
                warn!("A server still had open connections after {SERVER_GRACE:?}; closing them");
                task.abort();
                let _ = task.await;
            }
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.cancel();
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Connects (authenticating, when a user is set) and proves etcd answers (connecting alone does
/// not). Refused credentials are an error no retry repeats ([`DriverError::etcd`]).
async fn connect_etcd(access: &EtcdAccess, endpoints: &str) -> Result<Client, DriverError> {
    let etcd = |source| DriverError::etcd(endpoints, source);
    let options = access
        .options()
        .map_err(|e| DriverError::Unfit(format!("{}: {e}", e.part.config_key())))?
        .with_connect_timeout(Duration::from_secs(3))
        .with_timeout(Duration::from_secs(5));
    let mut client = Client::connect(&access.endpoints, Some(options)).await.map_err(etcd)?;
    client.status().await.map_err(etcd)?;
    Ok(client)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "driver".into())
}

/// A token setting's value (`key` names it in the error): the reference resolved at start, so a
/// missing variable or file stops the driver at once.
fn resolve_token(key: &str, reference: Option<&str>) -> Result<Option<String>, DriverError> {
    reference
        .map(|reference| {
            weir_common::config::secrets::resolve(reference)
                .map(|token| token.into_owned())
                .map_err(|e| DriverError::Unfit(format!("{key}: {e}")))
        })
        .transpose()
}
