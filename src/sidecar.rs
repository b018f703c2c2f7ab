//! jitsi-autoscaler sidecar support in `serve`: the request bodies (SIDECAR-PROTOCOL.md §1.4,
//! §1.5) and the service operations behind `POST {prefix}/sidecar/poll|status|stats|shutdown`.
//!
//! The decisions are the policy crate's (`policy::sidecar`): a report is evidence in the
//! ledger, the leader's tick picks the hosts to shut down (`controller::step`), and the answer
//! to a poll says whether this host was picked. Every operation here is one store write.

use std::net::IpAddr;

use policy::{BusyStatus, HealthStatus, Membership, SidecarReport};
use serde_json::Value;

use crate::decision::{Decision, Record};
use crate::lifecycle::HostFacts;
use crate::ops::now_ms;
use crate::service::{Service, ServiceError};

/// Instance types whose reports carry a Jibri status (docker always says `jibri`).
pub const JIBRI_TYPES: [&str; 2] = ["jibri", "sip-jibri"];

/// A sidecar request body that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Not a JSON object.
    #[error("body is not a JSON object")]
    NotObject,
    /// No `instanceId` (or `instance.instanceId` in a report).
    #[error("missing instanceId")]
    NoInstance,
    /// `instanceId` is not a usable host identifier.
    #[error("instanceId {0:?} is not a host name or IP address")]
    BadInstance(String),
}

/// What a sidecar request says about its instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarBody {
    /// `instanceId`, lower-cased: the host's name in the ledger.
    pub instance: String,
    /// `instanceType`, if any.
    pub kind: Option<String>,
    /// `group`, if any (for the logs; one scaler manages one pool).
    pub group: Option<String>,
    /// The status, for `/sidecar/status` and `/sidecar/stats` bodies that carry one.
    pub report: Option<SidecarReport>,
}

impl SidecarBody {
    /// Whether this scaler manages the sidecar's group: `groups` empty, or its `group` listed.
    pub fn in_groups(&self, groups: &[String]) -> bool {
        groups.is_empty()
            || self
                .group
                .as_deref()
                .is_some_and(|g| groups.iter().any(|x| x == g))
    }

    /// Whether the instance type is a Jibri (`jibri` and `sip-jibri` alike; a body without a
    /// type is taken as one: the sidecar always sends it, and the group decides the pool).
    pub fn is_jibri(&self) -> bool {
        self.kind
            .as_deref()
            .is_none_or(|k| JIBRI_TYPES.contains(&k))
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Reads the InstanceDetails object (poll and shutdown bodies, or `instance` in a report).
fn instance_details(obj: &serde_json::Map<String, Value>) -> Result<SidecarBody, BodyError> {
    let id = text(obj.get("instanceId")).ok_or(BodyError::NoInstance)?;
    if !crate::hostname::is_valid(&id) {
        return Err(BodyError::BadInstance(id.chars().take(64).collect()));
    }
    Ok(SidecarBody {
        instance: id.to_ascii_lowercase(),
        kind: text(obj.get("instanceType")),
        group: text(obj.get("group")),
        report: None,
    })
}

/// Parses a poll or shutdown body: an InstanceDetails object.
pub fn parse_details(v: &Value) -> Result<SidecarBody, BodyError> {
    instance_details(v.as_object().ok_or(BodyError::NotObject)?)
}

/// Parses a StatsReport (`/sidecar/status`, `/sidecar/stats`): `instance` plus `stats`, the
/// Jibri health body (`{"status": {"busyStatus", "health": {"healthStatus"}}}`) or the Jibri
/// webhook body (the same `status` beside a `jibriId`). A report without a usable status
/// (`statsError`, or `stats` = `{}` after a failed read) is a report of unknown status: it
/// proves the sidecar runs, not that the host is a spare.
pub fn parse_report(v: &Value) -> Result<SidecarBody, BodyError> {
    let obj = v.as_object().ok_or(BodyError::NotObject)?;
    let inst = obj
        .get("instance")
        .and_then(Value::as_object)
        .ok_or(BodyError::NoInstance)?;
    let mut body = instance_details(inst)?;
    let status = if obj.get("statsError").and_then(Value::as_bool) == Some(true) {
        None
    } else {
        obj.get("stats").and_then(|s| s.get("status"))
    };
    let busy = status
        .and_then(|s| s.get("busyStatus"))
        .and_then(Value::as_str)
        .map_or(BusyStatus::Unknown, BusyStatus::parse);
    let health = status
        .and_then(|s| s.pointer("/health/healthStatus"))
        .and_then(Value::as_str)
        .map_or(HealthStatus::Unknown, HealthStatus::parse);
    body.report = Some(SidecarReport {
        busy,
        health,
        shutting_down: obj.get("shutdownStatus").and_then(Value::as_bool) == Some(true),
    });
    Ok(body)
}

/// Longest a first report waits for the lifecycle manager's word on its host (the sidecar gives
/// a request 3 s); without it the host is adopted unverified and the leader asks.
const ASK_FIRST_REPORT: std::time::Duration = std::time::Duration::from_millis(1500);

/// A sidecar request that is not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Too many new ids from this address (429).
    #[error("too many new sidecar instances from {ip}; retry in {retry_after_secs} s")]
    RateLimited {
        /// The reporting address.
        ip: IpAddr,
        /// When a new id is taken again.
        retry_after_secs: u64,
    },
    /// As many unconfirmed hosts as `max` already wait (429).
    #[error(
        "{waiting} hosts not confirmed by the lifecycle manager already (max {max}); retry later"
    )]
    Full {
        /// Unconfirmed adopted hosts.
        waiting: usize,
        /// The cap (`max`).
        max: u32,
    },
    /// The lifecycle manager has the host outside the managed set: answered "no command",
    /// recorded nowhere.
    #[error("not a managed host: {0}")]
    NotManaged(String),
    /// The lifecycle manager has the host at another address than the caller's (403).
    #[error("a sidecar may only speak for its own instance: {0}")]
    Mismatch(String),
}

impl Service {
    /// Addresses the ledger knows for a sidecar's instance (for its binding).
    pub async fn sidecar_known_ips(&self, instance: &str) -> Vec<IpAddr> {
        self.known_ips(instance).await
    }

    /// The answer to a request for `instance` carrying `report`, from the last known ledger
    /// (no store write): see [`policy::Ledger::sidecar_answer`].
    pub async fn sidecar_answer(&self, instance: &str, report: Option<SidecarReport>) -> bool {
        let (now, timing) = (now_ms(), *self.timing());
        self.store()
            .read(|snap| snap.ledger.sidecar_answer(instance, report, now, &timing))
            .await
    }

    /// Before a report of an id the ledger does not know is recorded: the per-address rate,
    /// the cap of unconfirmed hosts, and the lifecycle manager's word on the host when it
    /// comes in time. `Ok(None)`: adopt it unverified.
    async fn admit(
        &self,
        body: &SidecarBody,
        client_ip: IpAddr,
        by: &str,
    ) -> Result<Option<HostFacts>, Refusal> {
        if !self.adoptions.check(client_ip, std::time::Instant::now()) {
            return Err(Refusal::RateLimited {
                ip: client_ip,
                retry_after_secs: self.adoptions.retry_after().as_secs().max(1),
            });
        }
        let (waiting, max) = self
            .store()
            .read(|snap| (snap.ledger.unconfirmed_adoptions(), snap.settings.max_total))
            .await;
        if waiting >= max as usize {
            return Err(Refusal::Full { waiting, max });
        }
        if !self.lifecycle().is_up() {
            return Ok(None);
        }
        let address = self.reports_bind_address().then_some(client_ip);
        let asked = tokio::time::timeout(ASK_FIRST_REPORT, async {
            let mut facts = self.lifecycle().inspect(&body.instance, address).await?;
            // Known from reports alone: only a sidecar on a host the lifecycle manager knows
            // (a container on a gateway host) is kept; an address it does not know runs nothing
            // of ours, and its ids are not worth a byte of the ledger.
            if let Some(a) = address.filter(|_| !facts.found)
                && self.lifecycle().find_by_ip(&a.to_string()).await?.is_none()
            {
                facts.inside = false;
                facts.found = true;
                facts.note = format!(
                    "{}; the lifecycle manager has no host at the reporter's address {a} either",
                    facts.note
                );
            }
            Ok::<_, crate::lifecycle::LifecycleError>(facts)
        })
        .await;
        let facts = match asked {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => {
                tracing::debug!(instance = %body.instance, error = %e, "first report: cannot ask the lifecycle manager; adopted unverified");
                return Ok(None);
            }
            Err(_) => return Ok(None),
        };
        match facts.membership() {
            Membership::Outside => {
                self.record(
                    Record::new(
                        now_ms(),
                        Decision::NotManaged {
                            host: body.instance.clone(),
                            action: "adopt",
                            membership: Membership::Outside,
                            note: facts.note.clone(),
                        },
                    )
                    .by(by),
                );
                Err(Refusal::NotManaged(facts.note))
            }
            Membership::Mismatch => {
                tracing::warn!(instance = %body.instance, by, note = %facts.note, "refused: a sidecar may only speak for its own instance");
                Err(Refusal::Mismatch(facts.note))
            }
            _ => Ok(Some(facts)),
        }
    }

    /// A poll or status report from `body`'s sidecar at `client_ip`: recorded as evidence
    /// (one store write when anything changed) and answered with whether the host must shut
    /// down now ([`policy::Ledger::sidecar_answer`]). When the store cannot be written, the
    /// answer comes from the last known ledger. A report of an id the ledger does not know is
    /// admitted first ([`Refusal`]).
    pub async fn sidecar_heard(
        &self,
        body: &SidecarBody,
        client_ip: IpAddr,
        by: &str,
    ) -> Result<bool, Refusal> {
        let now = now_ms();
        let ip = client_ip.to_string();
        let timing = *self.timing();
        let known = self
            .store()
            .read(|snap| snap.ledger.find(&body.instance).is_some())
            .await;
        let facts = if !known && body.report.is_some() {
            self.admit(body, client_ip, by).await?
        } else {
            None
        };
        let result = self
            .store()
            .apply(None, |snap, _| {
                let known = snap.ledger.find(&body.instance).is_some();
                let key = snap
                    .ledger
                    .sidecar_heard(&body.instance, body.report, now, &timing)?;
                // The first reporter's address binds an instance with none known, until the
                // lifecycle manager's address replaces it.
                if snap.ledger.get(&key).is_some_and(|i| i.ip.is_none()) {
                    snap.ledger.set_ip(&key, &ip);
                }
                // A host found reporting from another address than its own is trusted again
                // once its reports come from its own address (the lifecycle manager's).
                if snap.ledger.get(&key).is_some_and(|i| {
                    i.membership == Membership::Mismatch && i.ip.as_deref() == Some(ip.as_str())
                }) {
                    let note = "reports now come from the host's own address";
                    snap.ledger
                        .set_membership(&key, Membership::Unverified, note, None);
                }
                if !known && let Some(f) = &facts {
                    snap.ledger
                        .set_membership(&key, f.membership(), &f.note, f.ip.as_deref());
                }
                let answer = snap
                    .ledger
                    .sidecar_answer(&body.instance, body.report, now, &timing);
                Some((key, !known, answer))
            })
            .await;
        match result {
            Ok(Some((host, adopted, answer))) => {
                if adopted {
                    self.record(
                        Record::new(
                            now,
                            Decision::SidecarAdopted {
                                host: host.clone(),
                                kind: body.kind.clone(),
                                group: body.group.clone(),
                            },
                        )
                        .by(by),
                    );
                    if let Some(f) = &facts {
                        let d = Decision::Membership {
                            host,
                            membership: f.membership(),
                            note: f.note.clone(),
                        };
                        self.record(Record::new(now, d).by(by));
                    }
                }
                Ok(answer)
            }
            Ok(None) => Ok(false),
            Err(e) => {
                tracing::warn!(instance = %body.instance, error = %e, "cannot record a sidecar report; answering from the last known ledger");
                Ok(self.sidecar_answer(&body.instance, body.report).await)
            }
        }
    }

    /// `/sidecar/shutdown`: the host's terminate script runs. A host told to shut down is
    /// deleted now (its delete is owed at the next tick); one we did not tell is recorded as
    /// leaving (expired). Returns whether the ledger knew the host.
    pub async fn sidecar_shutdown(
        &self,
        body: &SidecarBody,
        by: &str,
    ) -> Result<bool, ServiceError> {
        let now = now_ms();
        let result = self
            .store()
            .apply(None, |snap, _| {
                let ordered = snap.ledger.sidecar_told(&body.instance);
                snap.ledger
                    .sidecar_shutdown(&body.instance, now)
                    .map(|key| (key, ordered))
            })
            .await?;
        let Some((host, ordered)) = result else {
            tracing::info!(instance = %body.instance, by, "sidecar shutdown from a host the ledger does not know: nothing to do");
            return Ok(false);
        };
        self.record(Record::new(now, Decision::SidecarConfirmed { host, ordered }).by(by));
        self.wake();
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The docker Jibri sidecar's InstanceDetails (SIDECAR-PROTOCOL.md §1.4, §4).
    fn docker_instance(id: &str) -> Value {
        json!({"instanceId": id, "instanceType": "jibri", "environment": "meet-jit-si",
               "region": "docker", "group": "docker-jibri", "name": id, "version": "8.0-93-g",
               "privateIp": "172.18.0.5", "hostId": "h1"})
    }

    #[test]
    fn docker_bodies_parse() {
        let poll = parse_details(&docker_instance("Vsg-1")).expect("poll");
        assert_eq!(poll.instance, "vsg-1");
        assert!(poll.is_jibri() && poll.report.is_none());
        // /sidecar/status: the health GET body.
        let status = json!({
            "instance": docker_instance("vsg-1"),
            "stats": {"status": {"busyStatus": "IDLE", "health": {"healthStatus": "HEALTHY",
                      "details": {}}}},
            "timestamp": 1_700_000_000_000u64, "shutdownStatus": false, "shutdownError": false,
            "reconfigureError": false, "reconfigureComplete": "", "statsError": false});
        let b = parse_report(&status).expect("status");
        assert_eq!(
            b.report,
            Some(SidecarReport {
                busy: BusyStatus::Idle,
                health: HealthStatus::Healthy,
                shutting_down: false
            })
        );
        // /sidecar/stats: the webhook body, busy, shutting down.
        let stats = json!({
            "instance": docker_instance("vsg-1"),
            "stats": {"jibriId": "vsg-1", "status": {"busyStatus": "BUSY",
                      "health": {"healthStatus": "UNHEALTHY"}}},
            "timestamp": 1, "shutdownStatus": true, "statsError": false});
        let b = parse_report(&stats).expect("stats");
        assert_eq!(
            b.report,
            Some(SidecarReport {
                busy: BusyStatus::Busy,
                health: HealthStatus::Unhealthy,
                shutting_down: true
            })
        );
        // A failed stats read: unknown status, still a report.
        let failed = json!({"instance": docker_instance("vsg-1"), "stats": {}, "statsError": true});
        let b = parse_report(&failed).expect("failed read");
        assert_eq!(b.report.map(|r| r.busy), Some(BusyStatus::Unknown));
        // sip-jibri alike; other types are not Jibris.
        let mut sip = docker_instance("vsg-2");
        sip["instanceType"] = json!("sip-jibri");
        assert!(parse_details(&sip).expect("sip").is_jibri());
        let mut jvb = docker_instance("vsg-3");
        jvb["instanceType"] = json!("JVB");
        assert!(!parse_details(&jvb).expect("jvb").is_jibri());
    }

    #[test]
    fn unusable_bodies_are_refused() {
        assert_eq!(parse_details(&json!([1])), Err(BodyError::NotObject));
        assert_eq!(parse_details(&json!({})), Err(BodyError::NoInstance));
        assert_eq!(
            parse_details(&json!({"instanceId": "a b"})),
            Err(BodyError::BadInstance("a b".into()))
        );
        assert_eq!(
            parse_report(&json!({"stats": {}})),
            Err(BodyError::NoInstance)
        );
        assert_eq!(
            parse_report(&json!({"instance": "vsg-1"})),
            Err(BodyError::NoInstance)
        );
    }
}
