//! The managed-set rule in the service: the one guard in front of every delete and power-off,
//! the leader's check of hosts adopted from requests, and the remove-me pre-check.
//!
//! A host the scaler launched is managed by its origin. Any other host (adopted from a sidecar's
//! reports, or named by a remove-me) is acted on only once the lifecycle manager confirms it
//! inside the managed set ([`crate::lifecycle::ManagedSet`]); a host known from sidecar reports
//! must also report from its own address there. Everything else gets no call, and one decision
//! line says why.

use std::net::IpAddr;
use std::time::Duration;

use policy::{Instance, Membership, Origin};

use crate::auth::{AuthMode, SidecarBinding};
use crate::decision::{Decision, Record};
use crate::lifecycle::HostFacts;
use crate::ops::now_ms;
use crate::service::Service;

/// Longest a request waits for the lifecycle manager's word on a host before it is answered
/// without it (the guard still asks before any call).
pub const ASK_WITHIN: Duration = Duration::from_secs(5);

/// What the guard allows for a destructive call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Guard {
    /// Go ahead, with the name to send the call for.
    Go(String),
    /// The lifecycle manager has no such host: nothing to delete.
    Absent(String),
    /// Not a managed host: no call (the verdict and the lifecycle manager's answer).
    Refused(Membership, String),
    /// The lifecycle manager could not be asked: try again next tick.
    Retry(String),
}

impl Service {
    /// Whether sidecar reports bind a host to its reporter's address (auth on, address
    /// binding); with per-instance kids the token binds it instead.
    pub(crate) fn reports_bind_address(&self) -> bool {
        self.cfg.auth.mode == AuthMode::Asap
            && self.cfg.auth.sidecar.binding == SidecarBinding::Address
    }

    /// The address the lifecycle manager must give `i` for its own requests to count: its
    /// sidecar's, when reports bind by address.
    fn bound_address(&self, i: &Instance) -> Option<IpAddr> {
        if i.sidecar.is_some() && self.reports_bind_address() {
            i.ip.as_deref().and_then(|ip| ip.parse().ok())
        } else {
            None
        }
    }

    /// The guard in front of every delete and power-off: a host the scaler launched goes; any
    /// other is asked about at the lifecycle manager now, whoever asked for its removal.
    pub async fn guard(&self, host: &str) -> Guard {
        let entry = self
            .store()
            .read(|snap| snap.ledger.get(host).cloned())
            .await;
        let Some(i) = entry else {
            return Guard::Absent("not in the ledger any more".into());
        };
        if i.origin != Origin::Adopted {
            return Guard::Go(host.to_string());
        }
        match self.lifecycle().inspect(host, self.bound_address(&i)).await {
            Err(e) => Guard::Retry(e.to_string()),
            Ok(f) => match f.membership() {
                Membership::Managed | Membership::Unverified => Guard::Go(f.name),
                Membership::ReportsOnly => Guard::Absent(f.note),
                m => Guard::Refused(m, f.note),
            },
        }
    }

    /// Records a refused destructive call: the entry ends without a call, one decision line.
    pub async fn refuse_unmanaged(
        &self,
        host: &str,
        action: &'static str,
        membership: Membership,
        note: &str,
    ) {
        let now = now_ms();
        let d = Decision::NotManaged {
            host: host.to_string(),
            action,
            membership,
            note: note.to_string(),
        };
        let Some(fence) = self.lease() else {
            self.record(Record::new(now, d).refused("not the leader any more".into()));
            return;
        };
        let stored = self
            .apply(Some(&fence), |snap, _, _| {
                snap.ledger.set_membership(host, membership, note, None);
                snap.ledger
                    .not_managed(host, now, &format!("not a managed host: {note}"));
            })
            .await;
        match stored {
            Ok(()) => self.record(Record::new(now, d)),
            Err(e) => self.record(Record::new(now, d).refused(e.to_string())),
        }
    }

    /// Asks the lifecycle manager about an adopted host and records the verdict (leader).
    pub async fn verify_adopted(&self, host: &str) {
        let entry = self
            .store()
            .read(|snap| snap.ledger.get(host).cloned())
            .await;
        let Some(i) = entry.filter(|i| i.origin == Origin::Adopted) else {
            return;
        };
        let facts = match self.lifecycle().inspect(host, self.bound_address(&i)).await {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(host, error = %e, "cannot ask the lifecycle manager about an adopted host; next tick");
                return;
            }
        };
        self.store_verdict(host, &facts, None).await;
    }

    /// Stores the lifecycle manager's verdict on `host` and records it when it changed.
    pub(crate) async fn store_verdict(&self, host: &str, facts: &HostFacts, by: Option<&str>) {
        let now = now_ms();
        let membership = facts.membership();
        let stored = self
            .store()
            .apply(None, |snap, _| {
                snap.ledger
                    .set_membership(host, membership, &facts.note, facts.ip.as_deref())
            })
            .await;
        match stored {
            Ok(true) => {
                let d = Decision::Membership {
                    host: host.to_string(),
                    membership,
                    note: facts.note.clone(),
                };
                let r = Record::new(now, d);
                self.record(match by {
                    Some(by) => r.by(by),
                    None => r,
                });
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(host, error = %e, "cannot store the lifecycle manager's verdict")
            }
        }
    }

    /// Before a remove-me for `host` is answered: the lifecycle manager's facts when the host
    /// is not one the scaler launched or already knows as managed (`address`: the instance
    /// caller's, to check). `None`: nothing to ask, or no answer within [`ASK_WITHIN`] (the
    /// guard asks again before any call).
    pub async fn facts_for_removal(
        &self,
        host: &str,
        address: Option<IpAddr>,
    ) -> Option<HostFacts> {
        let known = self
            .store()
            .read(|snap| snap.ledger.find(host).map(|i| i.managed()))
            .await;
        if known == Some(true) {
            return None;
        }
        match tokio::time::timeout(ASK_WITHIN, self.lifecycle().inspect(host, address)).await {
            Ok(Ok(f)) => Some(f),
            Ok(Err(e)) => {
                tracing::info!(host, error = %e, "cannot ask the lifecycle manager about the host before answering; the guard asks before any call");
                None
            }
            Err(_) => {
                tracing::info!(
                    host,
                    "the lifecycle manager did not answer in time; the guard asks before any call"
                );
                None
            }
        }
    }

    /// Records a remove-me refused because the host is not managed (403).
    pub fn record_unmanaged_request(&self, host: &str, facts: &HostFacts, by: &str) {
        let d = Decision::NotManaged {
            host: host.to_string(),
            action: "remove",
            membership: facts.membership(),
            note: facts.note.clone(),
        };
        self.record(Record::new(now_ms(), d).by(by));
    }
}
