//! The shared store for several replicas: Redis or Valkey.
//!
//! Keys (under `key_prefix`): `:state` the snapshot as JSON, `:version` a counter bumped by
//! every write, `:generation` the snapshot's generation (kept beside it so Lua need not parse
//! JSON), `:lease` the leader lease (`<replica>:<fence>` with a TTL), `:fence` the counter
//! that numbers leaderships, `:recovering` a marker (with a TTL) set while the state is being
//! restored after a data loss. Every write is a compare-and-swap on `:version` in one Lua
//! script, so two replicas can never both spend the same removal budget; a write made as
//! leader also checks that the lease is still its own, so a deposed leader cannot overwrite.
//!
//! The primary is either `redis_url` or, with `sentinels`, whichever server the Sentinels name:
//! its `ROLE` is checked before use, and it is looked up again after any error (a `READONLY`
//! answer or a lost connection is how a failover shows) and once a second. With
//! `min_replicas_acked`, a write counts only once `WAIT` reports that many replicas have it,
//! and a new leadership only once its fence number and lease have reached them.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::{
    AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo,
    Value,
};

use super::{CasOutcome, Snapshot, StoreError};
use crate::config::StoreConfig;

/// One read of the store: the snapshot with its version, and whether it is being restored.
pub(super) struct Loaded {
    /// The snapshot and its version, if anything is stored.
    pub state: Option<(Snapshot, u64)>,
    /// The recovery marker is set.
    pub recovering: bool,
}

const CAS: &str = r"
local v = redis.call('GET', KEYS[1]) or '0'
if v ~= ARGV[1] then return 0 end
if ARGV[3] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[3] then return -1 end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[4], ARGV[4])
redis.call('INCR', KEYS[1])
return 1
";

/// Writes a replica's copy after a data loss if it is newer than what is stored (a missing
/// generation counts as older than any), and marks the store as recovering.
const RESTORE: &str = r"
local g = tonumber(redis.call('GET', KEYS[3]) or '-1')
if redis.call('EXISTS', KEYS[2]) == 1 and g >= tonumber(ARGV[2]) then
  redis.call('SET', KEYS[4], '1', 'PX', ARGV[3], 'NX')
  return 0
end
redis.call('SET', KEYS[2], ARGV[1])
redis.call('SET', KEYS[3], ARGV[2])
redis.call('INCR', KEYS[1])
redis.call('SET', KEYS[4], '1', 'PX', ARGV[3])
return 1
";

const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// A Redis-backed store shared by every replica.
pub(super) struct RedisStore {
    url_for_humans: String,
    link: Link,
    keys: Keys,
    timeout: Duration,
    /// Replicas that must confirm a write before it counts (0: the primary's word is enough).
    acks_wanted: u32,
    ack_timeout: Duration,
    cas: redis::Script,
    restore: redis::Script,
    renew: redis::Script,
    release: redis::Script,
}

struct Keys {
    state: String,
    version: String,
    generation: String,
    recovering: String,
    lease: String,
    fence: String,
}

fn err(e: redis::RedisError) -> StoreError {
    StoreError::Unreachable(e.to_string())
}

/// How the store reaches the primary.
enum Link {
    /// One address (`redis_url`); the connection manager reconnects to it by itself.
    Plain(ConnectionManager),
    /// The primary the Sentinels name, looked up again after an error.
    Sentinel(Box<SentinelLink>),
}

/// A connection to the primary, either kind.
#[derive(Clone)]
enum Con {
    Manager(ConnectionManager),
    Primary(MultiplexedConnection),
}

impl ConnectionLike for Con {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        match self {
            Con::Manager(c) => c.req_packed_command(cmd),
            Con::Primary(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        match self {
            Con::Manager(c) => c.req_packed_commands(pipeline, offset, count),
            Con::Primary(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Con::Manager(c) => c.get_db(),
            Con::Primary(c) => c.get_db(),
        }
    }
}

/// How often a connection to the primary is checked against what the Sentinels say, so a
/// primary demoted behind a network split is left even while it still answers.
const RECHECK: Duration = Duration::from_secs(1);

/// The primary as last found, with the number of the connection (so an error on an older
/// connection does not drop a newer one).
struct Primary {
    addr: (String, u16),
    con: MultiplexedConnection,
    epoch: u64,
    checked: Instant,
}

/// Discovery of the primary through Redis Sentinel.
struct SentinelLink {
    sentinels: Vec<(String, u16)>,
    master: String,
    username: Option<String>,
    password: Option<String>,
    /// `redis_url`'s credentials and database, for the primary whatever its address.
    data: ConnectionInfo,
    timeout: Duration,
    current: Mutex<Option<Primary>>,
    /// Serialises look-ups, so a failover makes one per replica, not one per request.
    lookup: tokio::sync::Mutex<()>,
    epochs: AtomicU64,
}

impl SentinelLink {
    fn config(&self) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
    }

    /// The primary's connection and its number; looked up when none is known, and checked
    /// against the Sentinels once per [`RECHECK`].
    async fn primary(&self) -> Result<(Con, u64), StoreError> {
        if let Some(p) = self.fresh() {
            return Ok(p);
        }
        let _one = self.lookup.lock().await;
        if let Some(p) = self.fresh() {
            return Ok(p);
        }
        let known = self.known();
        if let Some((addr, con, epoch)) = known.clone() {
            // A connection that works: keep it unless the Sentinels now name another primary.
            if let Ok(named) = self.ask_sentinels().await
                && named.contains(&addr)
            {
                self.touch(epoch);
                return Ok((Con::Primary(con), epoch));
            }
        }
        let mut problems = Vec::new();
        let named = match self.ask_sentinels().await {
            Ok(named) => named,
            Err(e) => {
                self.forget_all();
                return Err(StoreError::Unreachable(format!("no primary known: {e}")));
            }
        };
        for addr in named {
            match self.connect(&addr).await {
                Ok(con) => {
                    let epoch = self.epochs.fetch_add(1, Ordering::Relaxed) + 1;
                    if known.as_ref().map(|k| &k.0) != Some(&addr) {
                        tracing::info!(primary = %format!("{}:{}", addr.0, addr.1), master = %self.master, "store follows the primary the Sentinels name");
                    }
                    if let Ok(mut c) = self.current.lock() {
                        *c = Some(Primary {
                            addr,
                            con: con.clone(),
                            epoch,
                            checked: Instant::now(),
                        });
                    }
                    return Ok((Con::Primary(con), epoch));
                }
                Err(e) => problems.push(format!("{}:{}: {e}", addr.0, addr.1)),
            }
        }
        self.forget_all();
        Err(StoreError::Unreachable(format!(
            "no primary known: {}",
            problems.join("; ")
        )))
    }

    /// The known primary if it was checked within [`RECHECK`].
    fn fresh(&self) -> Option<(Con, u64)> {
        let c = self.current.lock().ok()?;
        let p = c.as_ref()?;
        (p.checked.elapsed() < RECHECK).then(|| (Con::Primary(p.con.clone()), p.epoch))
    }

    fn known(&self) -> Option<((String, u16), MultiplexedConnection, u64)> {
        let c = self.current.lock().ok()?;
        let p = c.as_ref()?;
        Some((p.addr.clone(), p.con.clone(), p.epoch))
    }

    fn touch(&self, epoch: u64) {
        if let Ok(mut c) = self.current.lock()
            && let Some(p) = c.as_mut()
            && p.epoch == epoch
        {
            p.checked = Instant::now();
        }
    }

    /// Drops connection `epoch` after an error on it: the next operation looks the primary up.
    fn forget(&self, epoch: u64) {
        if let Ok(mut c) = self.current.lock()
            && c.as_ref().is_some_and(|p| p.epoch == epoch)
        {
            *c = None;
        }
    }

    fn forget_all(&self) {
        if let Ok(mut c) = self.current.lock() {
            *c = None;
        }
    }

    /// The primaries the Sentinels name, in the order of the Sentinels, without repeats; an
    /// error if none answers.
    async fn ask_sentinels(&self) -> Result<Vec<(String, u16)>, String> {
        let mut named: Vec<(String, u16)> = Vec::new();
        let mut problems = Vec::new();
        for (host, port) in &self.sentinels {
            match self.ask_sentinel(host, *port).await {
                Ok(Some(addr)) => {
                    if !named.contains(&addr) {
                        named.push(addr);
                    }
                }
                Ok(None) => problems.push(format!(
                    "sentinel {host}:{port} does not know master {:?}",
                    self.master
                )),
                Err(e) => problems.push(format!("sentinel {host}:{port}: {e}")),
            }
        }
        if named.is_empty() {
            return Err(problems.join("; "));
        }
        Ok(named)
    }

    async fn ask_sentinel(&self, host: &str, port: u16) -> Result<Option<(String, u16)>, String> {
        let mut redis = RedisConnectionInfo::default();
        if let Some(u) = &self.username {
            redis = redis.set_username(u);
        }
        if let Some(p) = &self.password {
            redis = redis.set_password(p);
        }
        let info = ConnectionAddr::Tcp(host.to_string(), port)
            .into_connection_info()
            .map_err(|e| e.to_string())?
            .set_redis_settings(redis);
        let client = redis::Client::open(info).map_err(|e| e.to_string())?;
        let ask = async {
            let mut con = client
                .get_multiplexed_async_connection_with_config(&self.config())
                .await?;
            redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(&self.master)
                .query_async::<Option<(String, String)>>(&mut con)
                .await
        };
        let answer = tokio::time::timeout(self.timeout, ask)
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| e.to_string())?;
        match answer {
            None => Ok(None),
            Some((h, p)) => p
                .parse::<u16>()
                .map(|p| Some((h, p)))
                .map_err(|_| format!("answered a port {p:?}")),
        }
    }

    /// Connects to `addr` and checks that it is a primary: a replica is never written to.
    async fn connect(&self, addr: &(String, u16)) -> Result<MultiplexedConnection, String> {
        let info = self
            .data
            .clone()
            .set_addr(ConnectionAddr::Tcp(addr.0.clone(), addr.1));
        let client = redis::Client::open(info).map_err(|e| e.to_string())?;
        let check = async {
            let mut con = client
                .get_multiplexed_async_connection_with_config(&self.config())
                .await?;
            let role: Vec<Value> = redis::cmd("ROLE").query_async(&mut con).await?;
            Ok::<_, redis::RedisError>((con, role))
        };
        let (con, role) = tokio::time::timeout(self.timeout, check)
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| e.to_string())?;
        match role.first() {
            Some(Value::BulkString(b)) if b.as_slice() == b"master" => Ok(con),
            Some(Value::SimpleString(s)) if s == "master" => Ok(con),
            other => Err(format!("not a primary (ROLE {other:?})")),
        }
    }
}

impl RedisStore {
    /// Prepares a client; the connection is made (and remade) lazily, so a Redis that is down
    /// at start does not stop the service.
    pub(super) fn open(cfg: &StoreConfig) -> Result<Self, StoreError> {
        let client = redis::Client::open(cfg.redis_url.as_str())
            .map_err(|e| StoreError::Config(format!("store.redis_url: {e}")))?;
        let info = client.get_connection_info().clone();
        let timeout = cfg.timeout;
        let (link, url_for_humans) = if cfg.sentinels.is_empty() {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_secs(2));
            let con = ConnectionManager::new_lazy_with_config(client, config).map_err(err)?;
            (Link::Plain(con), format!("redis://{}", info.addr()))
        } else {
            let mut sentinels = Vec::new();
            for s in &cfg.sentinels {
                sentinels.push(crate::config::parse_host_port(s).ok_or_else(|| {
                    StoreError::Config(format!("store.sentinels: {s:?} is not host:port"))
                })?);
            }
            let humans = format!(
                "sentinel://{}/{}",
                cfg.sentinels.join(","),
                cfg.sentinel_master
            );
            let link = SentinelLink {
                sentinels,
                master: cfg.sentinel_master.clone(),
                username: cfg.sentinel_username.clone(),
                password: cfg.sentinel_password.clone(),
                data: info,
                timeout,
                current: Mutex::new(None),
                lookup: tokio::sync::Mutex::new(()),
                epochs: AtomicU64::new(0),
            };
            (Link::Sentinel(Box::new(link)), humans)
        };
        let k = |s: &str| format!("{}:{s}", cfg.key_prefix);
        Ok(RedisStore {
            url_for_humans,
            link,
            keys: Keys {
                state: k("state"),
                version: k("version"),
                generation: k("generation"),
                recovering: k("recovering"),
                lease: k("lease"),
                fence: k("fence"),
            },
            timeout,
            acks_wanted: cfg.replicas_acked(),
            ack_timeout: cfg.ack_timeout,
            cas: redis::Script::new(CAS),
            restore: redis::Script::new(RESTORE),
            renew: redis::Script::new(RENEW),
            release: redis::Script::new(RELEASE),
        })
    }

    /// A connection to the primary and its number (for [`RedisStore::timed`]).
    async fn con(&self) -> Result<(Con, u64), StoreError> {
        match &self.link {
            Link::Plain(c) => Ok((Con::Manager(c.clone()), 0)),
            Link::Sentinel(s) => s.primary().await,
        }
    }

    /// Where it points (without credentials).
    pub(super) fn describe(&self) -> String {
        format!("redis:{}", self.url_for_humans)
    }

    /// Runs `f` on connection `epoch` with the timeout (`extra` added for a `WAIT`); after
    /// any error the primary is looked up again (a `READONLY` answer or a dropped connection
    /// is how a failover shows).
    async fn timed<T>(
        &self,
        epoch: u64,
        extra: Duration,
        f: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        let r = match tokio::time::timeout(self.timeout + extra, f).await {
            Ok(r) => r.map_err(err),
            Err(_) => Err(StoreError::Unreachable("timed out".into())),
        };
        if let (Err(e), Link::Sentinel(s)) = (&r, &self.link) {
            tracing::warn!(error = %e, "store operation failed: looking the primary up again");
            s.forget(epoch);
        }
        r
    }

    /// Runs one Lua script invocation (with the timeout); its integer answer.
    async fn invoke(&self, script: &redis::ScriptInvocation<'_>) -> Result<i64, StoreError> {
        let (mut con, epoch) = self.con().await?;
        self.timed(epoch, Duration::ZERO, script.invoke_async(&mut con))
            .await
    }

    /// The `WAIT` timeout in milliseconds (at least 1: 0 would wait for ever).
    fn ack_ms(&self) -> u64 {
        u64::try_from(self.ack_timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Whether `acked` confirmations are enough.
    fn check_acks(&self, acked: i64) -> Result<(), StoreError> {
        if acked < i64::from(self.acks_wanted) {
            return Err(self.not_replicated(u32::try_from(acked.max(0)).unwrap_or(0)));
        }
        Ok(())
    }

    /// Replicas that must confirm a write.
    pub(super) fn acks_wanted(&self) -> u32 {
        self.acks_wanted
    }

    /// The error of a write only `acked` replicas confirmed.
    pub(super) fn not_replicated(&self, acked: u32) -> StoreError {
        StoreError::NotReplicated {
            wanted: self.acks_wanted,
            acked,
        }
    }

    /// Puts `snap` back if the stored version is still `version`, without waiting for
    /// replicas (undoing a write they did not confirm).
    pub(super) async fn withdraw(
        &self,
        version: u64,
        snap: &Snapshot,
        fence: Option<&str>,
    ) -> Result<CasOutcome, StoreError> {
        self.plain_cas(version, snap, fence).await
    }

    async fn plain_cas(
        &self,
        version: u64,
        snap: &Snapshot,
        fence: Option<&str>,
    ) -> Result<CasOutcome, StoreError> {
        let r = self
            .invoke(
                self.cas
                    .key(&self.keys.version)
                    .key(&self.keys.state)
                    .key(&self.keys.lease)
                    .key(&self.keys.generation)
                    .arg(version.to_string())
                    .arg(to_json(snap)?)
                    .arg(fence.unwrap_or(""))
                    .arg(snap.generation),
            )
            .await?;
        Ok(match r {
            1 => CasOutcome::Swapped,
            -1 => CasOutcome::Fenced,
            _ => CasOutcome::Conflict,
        })
    }

    /// The snapshot, its version and the recovery marker, read together.
    pub(super) async fn load(&self) -> Result<Loaded, StoreError> {
        let (mut con, epoch) = self.con().await?;
        let (version, state, recovering): (Option<u64>, Option<String>, Option<String>) = self
            .timed(
                epoch,
                Duration::ZERO,
                redis::cmd("MGET")
                    .arg(&self.keys.version)
                    .arg(&self.keys.state)
                    .arg(&self.keys.recovering)
                    .query_async(&mut con),
            )
            .await?;
        let state = match state {
            Some(state) => Some((
                super::parse_snapshot(state.as_bytes(), &self.describe())?,
                version.unwrap_or(0),
            )),
            None => None,
        };
        Ok(Loaded {
            state,
            recovering: recovering.is_some(),
        })
    }

    /// Offers `snap` after a data loss: written if the store holds nothing newer; either way
    /// the store is marked as recovering for `window`. Returns whether it was written.
    pub(super) async fn restore(
        &self,
        snap: &Snapshot,
        window: Duration,
    ) -> Result<bool, StoreError> {
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
        let r = self
            .invoke(
                self.restore
                    .key(&self.keys.version)
                    .key(&self.keys.state)
                    .key(&self.keys.generation)
                    .key(&self.keys.recovering)
                    .arg(to_json(snap)?)
                    .arg(snap.generation)
                    .arg(window_ms),
            )
            .await?;
        Ok(r == 1)
    }

    /// Writes `snap` if the stored version is still `version` (and, with `fence`, the lease is
    /// still held with that value). With `min_replicas_acked`, the script and a `WAIT` go in one
    /// pipeline on one connection, so the `WAIT` counts the replicas that have this write;
    /// a write they did not confirm in time is [`CasOutcome::Unconfirmed`], and a conflict or
    /// refusal while they do not confirm is an error (the store cannot make a write durable).
    pub(super) async fn compare_and_swap(
        &self,
        version: u64,
        snap: &Snapshot,
        fence: Option<&str>,
    ) -> Result<CasOutcome, StoreError> {
        if self.acks_wanted == 0 {
            return self.plain_cas(version, snap, fence).await;
        }
        let json = to_json(snap)?;
        let r = {
            let (mut con, epoch) = self.con().await?;
            let (r, acked): (i64, i64) = self
                .timed(
                    epoch,
                    self.ack_timeout,
                    redis::pipe()
                        .cmd("EVAL")
                        .arg(CAS)
                        .arg(4)
                        .arg(&self.keys.version)
                        .arg(&self.keys.state)
                        .arg(&self.keys.lease)
                        .arg(&self.keys.generation)
                        .arg(version.to_string())
                        .arg(json)
                        .arg(fence.unwrap_or(""))
                        .arg(snap.generation)
                        .cmd("WAIT")
                        .arg(self.acks_wanted)
                        .arg(self.ack_ms())
                        .query_async(&mut con),
                )
                .await?;
            if r == 1 && self.check_acks(acked).is_err() {
                return Ok(CasOutcome::Unconfirmed {
                    acked: u32::try_from(acked.max(0)).unwrap_or(0),
                });
            }
            self.check_acks(acked)?;
            r
        };
        Ok(match r {
            1 => CasOutcome::Swapped,
            -1 => CasOutcome::Fenced,
            _ => CasOutcome::Conflict,
        })
    }

    /// Writes `snap` unconditionally (migration).
    pub(super) async fn save(&self, snap: &Snapshot) -> Result<(), StoreError> {
        let json = to_json(snap)?;
        let (mut con, epoch) = self.con().await?;
        self.timed(
            epoch,
            Duration::ZERO,
            redis::pipe()
                .atomic()
                .set(&self.keys.state, json)
                .ignore()
                .set(&self.keys.generation, snap.generation)
                .ignore()
                .incr(&self.keys.version, 1)
                .ignore()
                .query_async::<()>(&mut con),
        )
        .await
    }

    /// Takes the lease if free, or renews it if `held` is ours; returns the lease value held.
    pub(super) async fn lease(
        &self,
        replica: &str,
        held: Option<&str>,
        ttl: Duration,
    ) -> Result<Option<String>, StoreError> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        if let Some(value) = held {
            let renewed = self
                .invoke(self.renew.key(&self.keys.lease).arg(value).arg(ttl_ms))
                .await?;
            if renewed == 1 {
                return Ok(Some(value.to_string()));
            }
        }
        // Someone else may hold it; a new leadership gets a new fence number only if we win.
        let (mut con, epoch) = self.con().await?;
        let holder: Option<String> = self
            .timed(
                epoch,
                Duration::ZERO,
                redis::cmd("GET")
                    .arg(&self.keys.lease)
                    .query_async(&mut con),
            )
            .await?;
        if holder.is_some() {
            return Ok(None);
        }
        let fence: u64 = self
            .timed(
                epoch,
                Duration::ZERO,
                redis::cmd("INCR")
                    .arg(&self.keys.fence)
                    .query_async(&mut con),
            )
            .await?;
        let value = format!("{replica}:{fence}");
        let mut take = redis::pipe();
        take.cmd("SET")
            .arg(&self.keys.lease)
            .arg(&value)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms);
        if self.acks_wanted > 0 {
            // The fence number and the lease must survive a failover before this replica
            // leads on them: a promoted replica then never hands out the same fence again.
            take.cmd("WAIT").arg(self.acks_wanted).arg(self.ack_ms());
        }
        let answers: Vec<Value> = self
            .timed(epoch, self.ack_timeout, take.query_async(&mut con))
            .await?;
        let won = matches!(answers.first(), Some(Value::Okay))
            || matches!(answers.first(), Some(Value::SimpleString(s)) if s == "OK");
        if !won {
            return Ok(None);
        }
        if self.acks_wanted > 0 {
            let acked = match answers.get(1) {
                Some(Value::Int(n)) => *n,
                _ => 0,
            };
            if let Err(e) = self.check_acks(acked) {
                // Not led on: give it back (best effort; it expires by itself otherwise).
                let _ = self.release(&value).await;
                return Err(e);
            }
        }
        Ok(Some(value))
    }

    /// Releases the lease if it is still `value` (clean shutdown).
    pub(super) async fn release(&self, value: &str) -> Result<(), StoreError> {
        self.invoke(self.release.key(&self.keys.lease).arg(value))
            .await?;
        Ok(())
    }

    /// The current lease holder, if any.
    pub(super) async fn lease_holder(&self) -> Result<Option<String>, StoreError> {
        let (mut con, epoch) = self.con().await?;
        self.timed(
            epoch,
            Duration::ZERO,
            redis::cmd("GET")
                .arg(&self.keys.lease)
                .query_async(&mut con),
        )
        .await
    }
}

/// The snapshot as stored (JSON).
fn to_json(snap: &Snapshot) -> Result<String, StoreError> {
    serde_json::to_string(snap).map_err(|e| StoreError::Task(e.to_string()))
}
