//! Leader election on `{prefix}/jobs/{job}/leader`: a key bound to this driver's lease, created
//! only if absent, in the same transaction that bumps `{prefix}/jobs/{job}/generation`. The lease
//! is kept alive in the background; if it is lost the leadership token is cancelled and the job
//! loop stops at once.
//!
//! The generation is a decimal counter (not a protobuf value): it is a single number that only
//! ever grows, and reading it needs no schema.

use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};
use tokio_util::sync::CancellationToken;
use weir_common::protocol::{JobKeys, LeaderRecord};

use crate::error::DriverError;

pub struct Leadership {
    pub generation: u64,
    /// The leader key's create revision: the guard of every write.
    pub revision: i64,
    lease: i64,
    /// Cancelled when the lease is lost.
    pub lost: CancellationToken,
    keepalive: tokio::task::JoinHandle<()>,
}

impl Leadership {
    /// Gives up leadership at once (revoking the lease deletes the leader key), so a restarted
    /// driver need not wait for the lease to expire.
    pub async fn resign(self, client: &Client) {
        self.keepalive.abort();
        if let Err(e) = client.lease_client().revoke(self.lease).await {
            tracing::warn!(error = %e, "Could not revoke the leader lease; it expires by itself");
        }
    }
}

/// Waits until this driver leads the job, then returns its leadership. `ttl` is the lease time:
/// how long a killed driver's key outlives it.
pub async fn campaign(
    client: &Client,
    endpoints: &str,
    keys: &JobKeys,
    driver_id: &str,
    address: &str,
    ttl: Duration,
) -> Result<Leadership, DriverError> {
    let etcd = |source| DriverError::Etcd { endpoints: endpoints.to_owned(), source };
    let ttl_secs = ttl.as_secs().max(2) as i64;
    let lease = client.lease_client().grant(ttl_secs, None).await.map_err(etcd)?.id();
    let keepalive_lost = CancellationToken::new();
    let keepalive =
        tokio::spawn(keep_alive(client.clone(), lease, ttl_secs, keepalive_lost.clone()));
    match wait_to_lead(client, keys, driver_id, address, lease, &keepalive_lost, etcd).await {
        Ok((generation, revision)) => {
            Ok(Leadership { generation, revision, lease, lost: keepalive_lost, keepalive })
        }
        Err(e) => {
            // The caller campaigns again with a new lease; this one must not be kept alive.
            keepalive.abort();
            Err(e)
        }
    }
}

/// Tries to create the leader key until it succeeds; returns the generation and the key's
/// create revision.
async fn wait_to_lead(
    client: &Client,
    keys: &JobKeys,
    driver_id: &str,
    address: &str,
    lease: i64,
    keepalive_lost: &CancellationToken,
    etcd: impl Fn(etcd_client::Error) -> DriverError,
) -> Result<(u64, i64), DriverError> {
    let mut waiting_logged = false;
    loop {
        let mut kv = client.kv_client();
        let gen_resp = kv.get(keys.generation(), None).await.map_err(&etcd)?;
        let (current, gen_mod_revision) = match gen_resp.kvs().first() {
            Some(kv) => {
                let text = String::from_utf8_lossy(kv.value());
                let n = text.trim().parse::<u64>().map_err(|_| DriverError::NotANumber {
                    key: keys.generation(),
                    value: text.clone().into_owned(),
                })?;
                (n, kv.mod_revision())
            }
            None => (0, 0),
        };
        let generation = current + 1;
        let record = LeaderRecord {
            driver_id: driver_id.to_owned(),
            address: address.to_owned(),
            generation,
        };
        let txn = Txn::new()
            .when([
                Compare::create_revision(keys.leader(), CompareOp::Equal, 0),
                Compare::mod_revision(keys.generation(), CompareOp::Equal, gen_mod_revision),
            ])
            .and_then([
                TxnOp::put(
                    keys.leader(),
                    record.encode(),
                    Some(PutOptions::new().with_lease(lease)),
                ),
                TxnOp::put(keys.generation(), generation.to_string(), None),
            ])
            .or_else([TxnOp::get(keys.leader(), None)]);
        let resp = kv.txn(txn).await.map_err(&etcd)?;
        if resp.succeeded() {
            let revision = resp.header().map(|h| h.revision()).unwrap_or_default();
            return Ok((generation, revision));
        }
        if !waiting_logged {
            let holder = resp.op_responses().into_iter().find_map(|op| match op {
                TxnOpResponse::Get(get) => {
                    get.kvs().first().and_then(|kv| LeaderRecord::decode(kv.value()).ok())
                }
                _ => None,
            });
            match holder {
                Some(h) => {
                    tracing::info!(leader = %h.driver_id, address = %h.address, generation = h.generation,
                    "Another driver leads this job; waiting for its lease to end")
                }
                None => tracing::info!("Another driver changed the generation; campaigning again"),
            }
            waiting_logged = true;
        }
        if keepalive_lost.is_cancelled() {
            return Err(DriverError::LeaseExpired);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Keeps the lease alive every third of its TTL. A failed keep-alive is retried (with a new
/// stream) until the lease's TTL has passed since the last success; only then, or when etcd says
/// the lease is gone, is the leadership lost.
async fn keep_alive(client: Client, lease: i64, ttl_secs: i64, lost: CancellationToken) {
    let ttl = Duration::from_secs(ttl_secs as u64);
    let period = ttl / 3;
    let mut last_success = tokio::time::Instant::now();
    let mut stream = None;
    loop {
        tokio::time::sleep(period).await;
        let result = async {
            if stream.is_none() {
                stream = Some(client.lease_client().keep_alive(lease).await?);
            }
            let (keeper, responses) = stream.as_mut().expect("opened above");
            keeper.keep_alive().await?;
            Ok::<_, etcd_client::Error>(responses.message().await?.map_or(0, |r| r.ttl()))
        }
        .await;
        match result {
            Ok(ttl_left) if ttl_left > 0 => last_success = tokio::time::Instant::now(),
            Ok(_) => {
                tracing::error!(lease, "The leader lease expired");
                lost.cancel();
                return;
            }
            Err(e) => {
                stream = None;
                if last_success.elapsed() >= ttl {
                    tracing::error!(lease, error = %e, "Could not keep the leader lease alive");
                    lost.cancel();
                    return;
                }
                tracing::warn!(lease, error = %e, "Keeping the leader lease alive failed; retrying");
            }
        }
    }
}
