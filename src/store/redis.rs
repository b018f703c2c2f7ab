//! The shared store for several replicas: Redis or Valkey.
//!
//! Keys (under `key_prefix`): `:state` the snapshot as JSON, `:version` a counter bumped by
//! every write, `:generation` the snapshot's generation (kept beside it so Lua need not parse
//! JSON), `:lease` the leader lease (`<replica>:<fence>` with a TTL), `:fence` the counter
//! that numbers leaderships, `:recovering` a marker (with a TTL) set while the state is being
//! restored after a data loss. Every write is a compare-and-swap on `:version` in one Lua
//! script, so two replicas can never both spend the same removal budget; a write made as
//! leader also checks that the lease is still its own, so a deposed leader cannot overwrite.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{CasOutcome, Snapshot, StoreError};

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
    con: ConnectionManager,
    keys: Keys,
    timeout: Duration,
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

impl RedisStore {
    /// Prepares a client; the connection is made (and remade) lazily, so a Redis that is down
    /// at start does not stop the service.
    pub(super) fn open(url: &str, key_prefix: &str, timeout: Duration) -> Result<Self, StoreError> {
        let client = redis::Client::open(url)
            .map_err(|e| StoreError::Config(format!("store.redis_url: {e}")))?;
        let info = client.get_connection_info();
        let url_for_humans = format!("redis://{}", info.addr());
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let con = ConnectionManager::new_lazy_with_config(client, config).map_err(err)?;
        let k = |s: &str| format!("{key_prefix}:{s}");
        Ok(RedisStore {
            url_for_humans,
            con,
            keys: Keys {
                state: k("state"),
                version: k("version"),
                generation: k("generation"),
                recovering: k("recovering"),
                lease: k("lease"),
                fence: k("fence"),
            },
            timeout,
            cas: redis::Script::new(CAS),
            restore: redis::Script::new(RESTORE),
            renew: redis::Script::new(RENEW),
            release: redis::Script::new(RELEASE),
        })
    }

    /// Where it points (without credentials).
    pub(super) fn describe(&self) -> String {
        format!("redis:{}", self.url_for_humans)
    }

    async fn timed<T>(
        &self,
        f: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r.map_err(err),
            Err(_) => Err(StoreError::Unreachable("timed out".into())),
        }
    }

    /// Runs one Lua script invocation (with the timeout); its integer answer.
    async fn invoke(&self, script: &redis::ScriptInvocation<'_>) -> Result<i64, StoreError> {
        let mut con = self.con.clone();
        self.timed(script.invoke_async(&mut con)).await
    }

    /// The snapshot, its version and the recovery marker, read together.
    pub(super) async fn load(&self) -> Result<Loaded, StoreError> {
        let mut con = self.con.clone();
        let (version, state, recovering): (Option<u64>, Option<String>, Option<String>) = self
            .timed(
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
    /// still held with that value).
    pub(super) async fn compare_and_swap(
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

    /// Writes `snap` unconditionally (migration).
    pub(super) async fn save(&self, snap: &Snapshot) -> Result<(), StoreError> {
        let json = to_json(snap)?;
        let mut con = self.con.clone();
        self.timed(
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
        let mut con = self.con.clone();
        if let Some(value) = held {
            let renewed = self
                .invoke(self.renew.key(&self.keys.lease).arg(value).arg(ttl_ms))
                .await?;
            if renewed == 1 {
                return Ok(Some(value.to_string()));
            }
        }
        // Someone else may hold it; a new leadership gets a new fence number only if we win.
        let holder: Option<String> = self
            .timed(
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
                redis::cmd("INCR")
                    .arg(&self.keys.fence)
                    .query_async(&mut con),
            )
            .await?;
        let value = format!("{replica}:{fence}");
        let won: Option<String> = self
            .timed(
                redis::cmd("SET")
                    .arg(&self.keys.lease)
                    .arg(&value)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_ms)
                    .query_async(&mut con),
            )
            .await?;
        Ok(won.map(|_| value))
    }

    /// Releases the lease if it is still `value` (clean shutdown).
    pub(super) async fn release(&self, value: &str) -> Result<(), StoreError> {
        self.invoke(self.release.key(&self.keys.lease).arg(value))
            .await?;
        Ok(())
    }

    /// The current lease holder, if any.
    pub(super) async fn lease_holder(&self) -> Result<Option<String>, StoreError> {
        let mut con = self.con.clone();
        self.timed(
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
