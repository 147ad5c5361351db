//! Leader election on `{prefix}/jobs/{job}/leader`: a key bound to this driver's lease, created
//! only if absent, in the same transaction that bumps `{prefix}/jobs/{job}/generation`. The lease
//! is kept alive in the background; if it is lost the leadership token is cancelled and the job
//! loop stops at once.
//!
//! The generation is a decimal counter (not a protobuf value): it is a single number that only
//! ever grows, and reading it needs no schema.
//!
//! Two loops here wait on their own rather than through `common::retry`, because neither retries
//! a failed operation: `wait_to_lead` polls the leader key while another driver holds it, and
//! `keep_alive` renews the lease on a fixed period, where a failure is only fatal once the lease
//! can no longer be alive.

use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, LeaseKeepAliveStream, LeaseKeeper, PutOptions, Txn, TxnOp,
    TxnOpResponse,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use weir_common::protocol::{JobKeys, LeaderRecord};

use crate::error::DriverError;
use crate::status::{LeaderView, Role, Status};

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

/// Waits until this driver leads the job, then returns its leadership. `me` says who this
/// driver is and where it serves (its generation is ignored). `ttl` is the lease time: how long
/// a killed driver's key outlives it. While waiting, the driver is registered under
/// `drivers/{id}` (bound to the same lease), so `weirctl status` lists it as a standby.
pub async fn campaign(
    client: &Client,
    endpoints: &str,
    keys: &JobKeys,
    me: &LeaderRecord,
    ttl: Duration,
    status: &watch::Sender<Status>,
) -> Result<Leadership, DriverError> {
    let etcd = |source| DriverError::etcd(endpoints, source);
    let ttl_secs = ttl.as_secs().max(2) as i64;
    let lease = client.lease_client().grant(ttl_secs, None).await.map_err(etcd)?.id();
    let registration = LeaderRecord { generation: 0, elected_at_ms: 0, ..me.clone() };
    client
        .kv_client()
        .put(
            keys.driver(&me.driver_id),
            registration.encode(),
            Some(PutOptions::new().with_lease(lease)),
        )
        .await
        .map_err(etcd)?;
    let keepalive_lost = CancellationToken::new();
    let renewer = EtcdLease { client: client.clone(), lease, stream: None };
    let ttl = Duration::from_secs(ttl_secs as u64);
    let keepalive = tokio::spawn(keep_alive(renewer, lease, ttl, keepalive_lost.clone()));
    match wait_to_lead(client, keys, me, lease, ttl, &keepalive_lost, status, etcd).await {
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
///
/// The longest-waiting standby takes over first: while the leader key is absent, only the driver
/// whose `drivers/` registration is oldest campaigns at once; the others wait `ttl` (in case the
/// oldest cannot act) or until someone leads. Without this a killed leader that its supervisor
/// restarts within a second (compose's restart policy, systemd) races the standby that has been
/// waiting all along, and wins about half the time: the job then stays on the machine that just
/// failed, and the standby never proves itself.
#[allow(clippy::too_many_arguments)]
async fn wait_to_lead(
    client: &Client,
    keys: &JobKeys,
    me: &LeaderRecord,
    lease: i64,
    ttl: Duration,
    keepalive_lost: &CancellationToken,
    status: &watch::Sender<Status>,
    etcd: impl Fn(etcd_client::Error) -> DriverError,
) -> Result<(u64, i64), DriverError> {
    let mut waiting_logged = false;
    // Since when this driver has seen no leader while another standby had precedence.
    let mut deferring_since: Option<tokio::time::Instant> = None;
    loop {
        if keepalive_lost.is_cancelled() {
            return Err(DriverError::LeaseExpired);
        }
        let mut kv = client.kv_client();
        match turn(client, keys, me).await.map_err(&etcd)? {
            Turn::Mine => deferring_since = None,
            Turn::Led(holder) => {
                deferring_since = None;
                show_standby(status, Some(&holder));
                if !waiting_logged {
                    tracing::info!(leader = %holder.driver_id, address = %holder.address,
                        generation = holder.generation,
                        "Another driver leads this job; waiting for its lease to end");
                    waiting_logged = true;
                }
                tokio::time::sleep(POLL).await;
                continue;
            }
            Turn::Senior(senior) => {
                let since = *deferring_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() < ttl {
                    tracing::debug!(standby = %senior, "No leader; the longer-waiting standby campaigns first");
                    show_standby(status, None);
                    tokio::time::sleep(POLL).await;
                    continue;
                }
                tracing::info!(standby = %senior, waited = ?ttl,
                    "The longer-waiting standby did not take the lead; campaigning");
            }
        }
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
        let elected_at_ms = crate::job::now_ms();
        let record = LeaderRecord { generation, elected_at_ms, ..me.clone() };
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
        let holder = resp.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(get) => {
                get.kvs().first().and_then(|kv| LeaderRecord::decode(kv.value()).ok())
            }
            _ => None,
        });
        show_standby(status, holder.as_ref());
        if !waiting_logged {
            match holder {
                Some(h) => {
                    tracing::info!(leader = %h.driver_id, address = %h.address, generation = h.generation,
                    "Another driver leads this job; waiting for its lease to end")
                }
                None => tracing::info!("Another driver changed the generation; campaigning again"),
            }
            waiting_logged = true;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// How often a standby looks at the leader key.
const POLL: Duration = Duration::from_millis(300);

/// Whether this driver should campaign now.
enum Turn {
    /// No leader, and no standby has waited longer than this driver.
    Mine,
    /// A driver leads.
    Led(LeaderRecord),
    /// No leader, but this standby (its id) registered before this driver did.
    Senior(String),
}

/// Reads the leader key and the drivers' registrations in one consistent read.
async fn turn(
    client: &Client,
    keys: &JobKeys,
    me: &LeaderRecord,
) -> Result<Turn, etcd_client::Error> {
    let read = Txn::new().and_then([
        TxnOp::get(keys.leader(), None),
        TxnOp::get(keys.drivers_prefix(), Some(etcd_client::GetOptions::new().with_prefix())),
    ]);
    let resp = client.kv_client().txn(read).await?;
    let mut gets = resp.op_responses().into_iter().filter_map(|op| match op {
        TxnOpResponse::Get(get) => Some(get),
        _ => None,
    });
    let (Some(leader), Some(drivers)) = (gets.next(), gets.next()) else {
        return Ok(Turn::Mine);
    };
    if let Some(holder) = leader.kvs().first().and_then(|kv| LeaderRecord::decode(kv.value()).ok())
    {
        return Ok(Turn::Led(holder));
    }
    let mine = keys.driver(&me.driver_id);
    let my_revision = drivers
        .kvs()
        .iter()
        .find(|kv| kv.key() == mine.as_bytes())
        .map_or(i64::MAX, |kv| kv.create_revision());
    let senior = drivers
        .kvs()
        .iter()
        .filter(|kv| kv.key() != mine.as_bytes() && kv.create_revision() < my_revision)
        .min_by_key(|kv| kv.create_revision());
    Ok(match senior {
        Some(kv) => Turn::Senior(
            String::from_utf8_lossy(kv.key()).trim_start_matches(&keys.drivers_prefix()).to_owned(),
        ),
        None => Turn::Mine,
    })
}

/// A standby's status: ready (campaigning), and who leads when known.
fn show_standby(status: &watch::Sender<Status>, holder: Option<&LeaderRecord>) {
    let view = holder.map(|h| LeaderView {
        driver_id: h.driver_id.clone(),
        address: h.address.clone(),
        http_address: h.http_address.clone(),
        generation: h.generation,
    });
    status.send_if_modified(|s| {
        if s.role == Role::Standby && s.leader == view {
            return false;
        }
        let message = match &view {
            Some(l) => format!("the leader's lease to end: driver {} leads", l.driver_id),
            None => "the leadership: another driver is taking over".to_owned(),
        };
        s.role = Role::Standby;
        s.ready = true;
        s.leader = view;
        s.wait("leader", message, crate::job::now_ms());
        true
    });
}

/// One renewal of a lease: what `keep_alive` needs of etcd.
#[async_trait]
pub trait LeaseRenewer: Send {
    /// Renews the lease once; returns the TTL etcd grants, 0 when the lease is gone.
    async fn renew(&mut self) -> Result<i64, etcd_client::Error>;
    /// Forgets the connection after a failure, so the next renewal opens a new one.
    fn reset(&mut self);
}

struct EtcdLease {
    client: Client,
    lease: i64,
    stream: Option<(LeaseKeeper, LeaseKeepAliveStream)>,
}

#[async_trait]
impl LeaseRenewer for EtcdLease {
    async fn renew(&mut self) -> Result<i64, etcd_client::Error> {
        if self.stream.is_none() {
            self.stream = Some(self.client.lease_client().keep_alive(self.lease).await?);
        }
        let (keeper, responses) = self.stream.as_mut().expect("opened above");
        keeper.keep_alive().await?;
        Ok(responses.message().await?.map_or(0, |r| r.ttl()))
    }

    fn reset(&mut self) {
        self.stream = None;
    }
}

/// Keeps the lease alive every third of its TTL. Each renewal gets a third of the TTL to answer
/// (a frozen etcd or a dropped route never answers, and must not hold the loop). A failed or
/// unanswered renewal is tried again on the next period until the TTL has passed since the last
/// success; only then, or when etcd says the lease is gone, is the leadership lost.
pub async fn keep_alive(
    mut renewer: impl LeaseRenewer,
    lease: i64,
    ttl: Duration,
    lost: CancellationToken,
) {
    let period = ttl / 3;
    let mut last_success = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(period).await;
        let error = match tokio::time::timeout(period, renewer.renew()).await {
            Ok(Ok(ttl_left)) if ttl_left > 0 => {
                last_success = tokio::time::Instant::now();
                continue;
            }
            Ok(Ok(_)) => {
                tracing::error!(lease, "The leader lease expired");
                lost.cancel();
                return;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {period:?}"),
        };
        renewer.reset();
        if last_success.elapsed() >= ttl {
            tracing::error!(lease, error = %error, "Could not keep the leader lease alive");
            lost.cancel();
            return;
        }
        tracing::warn!(lease, error = %error, "Keeping the leader lease alive failed; retrying");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use tokio::time::Instant;

    use super::*;

    const TTL: Duration = Duration::from_secs(6);

    /// A renewer that fails its first `failures` renewals, then answers `ttl_left`, or that
    /// never answers at all (a frozen etcd).
    struct FakeLease {
        failures: u32,
        frozen: bool,
        ttl_left: i64,
        calls: Arc<AtomicU32>,
    }

    #[async_trait]
    impl LeaseRenewer for FakeLease {
        async fn renew(&mut self) -> Result<i64, etcd_client::Error> {
            let call = self.calls.fetch_add(1, Ordering::SeqCst);
            if self.frozen {
                std::future::pending::<()>().await;
            }
            if call < self.failures {
                return Err(etcd_client::Error::InvalidArgs("etcd unreachable".into()));
            }
            Ok(self.ttl_left)
        }
        fn reset(&mut self) {}
    }

    fn fake(failures: u32, frozen: bool, ttl_left: i64) -> (FakeLease, Arc<AtomicU32>) {
        let calls = Arc::new(AtomicU32::new(0));
        (FakeLease { failures, frozen, ttl_left, calls: calls.clone() }, calls)
    }

    #[tokio::test(start_paused = true)]
    async fn a_keep_alive_that_stops_answering_loses_the_leadership_within_the_ttl() {
        let (renewer, _) = fake(0, true, 6);
        let lost = CancellationToken::new();
        let started = Instant::now();
        let task = tokio::spawn(keep_alive(renewer, 1, TTL, lost.clone()));
        lost.cancelled().await;
        let after = started.elapsed();
        // The lease can have expired in etcd TTL after the last renewal; the driver must notice
        // within one more renewal period, not hang on the unanswered one.
        assert!(after >= TTL && after <= TTL + TTL / 3 * 2, "lost after {after:?}");
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn failed_renewals_within_the_ttl_keep_the_leadership() {
        let (renewer, calls) = fake(1, false, 6);
        let lost = CancellationToken::new();
        let task = tokio::spawn(keep_alive(renewer, 1, TTL, lost.clone()));
        tokio::time::sleep(TTL * 5).await;
        assert!(!lost.is_cancelled(), "one failed renewal must not end the leadership");
        assert!(calls.load(Ordering::SeqCst) >= 10, "renewed every third of the TTL");
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_etcd_says_is_gone_loses_the_leadership_at_once() {
        let (renewer, calls) = fake(0, false, 0);
        let lost = CancellationToken::new();
        keep_alive(renewer, 1, TTL, lost.clone()).await;
        assert!(lost.is_cancelled());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
