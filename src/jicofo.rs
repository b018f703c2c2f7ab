//! Jicofo statistics: one GET per shard per tick, all shards at once, merged conservatively.

use std::time::Duration;

use policy::{Millis, Observation};
use serde::Serialize;

use crate::config::{JicofoConfig, ShardConfig};

/// Why a shard gave no reading. A missing reading is never taken as zero.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum JicofoError {
    /// Connect error, timeout or a non-2xx answer.
    #[error("request failed: {0}")]
    Http(String),
    /// The body is not a JSON object.
    #[error("stats are not JSON: {0}")]
    Json(String),
    /// Jicofo has no brewery for the configured component (older Jicofo or not configured).
    #[error("no {0} in the stats (brewery not configured)")]
    NotConfigured(String),
    /// The component's object lacks a number we need.
    #[error("{component}.{field} missing or not a number")]
    Field {
        /// The component key.
        component: String,
        /// The missing field.
        field: &'static str,
    },
}

/// One shard's counts at one instant.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Reading {
    /// Gateways the shard's Jicofo knows.
    pub total: u32,
    /// Of which healthy and idle.
    pub available: u32,
    /// When the answer arrived.
    pub taken_at: Millis,
    /// Jicofo's SIP call counters, when it reports them.
    #[serde(default)]
    pub sip: SipCalls,
}

/// Jicofo's SIP call counters (its `jibri` stats object): calls Jibri could not take, and calls
/// waiting for a Jibri. `None` when this Jicofo does not report them.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct SipCalls {
    /// `jibri.total_sip_call_failures` (a top-level `total_sip_call_failures` in older Jicofo):
    /// SIP sessions that failed since Jicofo started, a Jibri refusing or none being free.
    pub failures: Option<u64>,
    /// `jibri.sip_call_pending`: SIP sessions waiting for a Jibri to start them.
    pub pending: Option<u32>,
}

/// One shard's answer: total, available, and its SIP call counters.
pub type ShardAnswer = (u32, u32, SipCalls);

/// Reads the SIP call counters of a `/stats` body; fields it lacks are `None`, never zero.
pub fn parse_sip_calls(body: &[u8]) -> SipCalls {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return SipCalls::default();
    };
    let jibri = v.get("jibri");
    let failures = jibri
        .and_then(|j| j.get("total_sip_call_failures"))
        .or_else(|| v.get("total_sip_call_failures"))
        .and_then(serde_json::Value::as_u64);
    let pending = jibri
        .and_then(|j| j.get("sip_call_pending"))
        .and_then(serde_json::Value::as_u64)
        .and_then(|n| u32::try_from(n).ok());
    SipCalls { failures, pending }
}

/// What the scaler knows of one shard.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ShardState {
    /// Shard name.
    pub name: String,
    /// Its stats URL.
    pub url: String,
    /// The last good reading.
    pub last: Option<Reading>,
    /// The last error, cleared by a good reading.
    pub last_error: Option<String>,
    /// When it was last asked.
    pub last_attempt: Option<Millis>,
    /// Failed readings since start.
    pub errors: u64,
}

/// The conservative view over all fresh shards.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Merged {
    /// Highest total and lowest available over fresh shards; `None` when none is fresh.
    pub observation: Option<Observation>,
    /// Shards with a fresh reading.
    pub fresh: Vec<String>,
    /// Shards without one.
    pub stale: Vec<String>,
    /// Fresh shards disagree on total or available (a shard lost some gateways' XMPP link).
    pub disagreement: bool,
    /// SIP call counters summed over the fresh shards (each Jicofo counts its own
    /// conferences' calls); a counter is `None` unless every fresh shard reports it.
    pub sip: SipCalls,
}

/// Merges shard readings: only fresh ones count; highest total, lowest available.
pub fn merge(shards: &[ShardState], now: Millis, max_age_ms: u64) -> Merged {
    let mut fresh = Vec::new();
    let mut stale = Vec::new();
    let mut readings = Vec::new();
    for s in shards {
        match s
            .last
            .filter(|r| now.saturating_sub(r.taken_at) <= max_age_ms)
        {
            Some(r) => {
                fresh.push(s.name.clone());
                readings.push(r);
            }
            None => stale.push(s.name.clone()),
        }
    }
    let observation = (!readings.is_empty()).then(|| Observation {
        total: readings.iter().map(|r| r.total).max().unwrap_or(0),
        available: readings.iter().map(|r| r.available).min().unwrap_or(0),
        // The oldest reading bounds the age of the merged view.
        taken_at: readings.iter().map(|r| r.taken_at).min().unwrap_or(now),
    });
    let disagreement = readings
        .windows(2)
        .any(|w| (w[0].total, w[0].available) != (w[1].total, w[1].available));
    let sum = |f: fn(&Reading) -> Option<u64>| -> Option<u64> {
        (!readings.is_empty())
            .then(|| readings.iter().map(f).sum::<Option<u64>>())
            .flatten()
    };
    let sip = SipCalls {
        failures: sum(|r| r.sip.failures),
        pending: sum(|r| r.sip.pending.map(u64::from)).and_then(|n| u32::try_from(n).ok()),
    };
    Merged {
        observation,
        fresh,
        stale,
        disagreement,
        sip,
    }
}

/// Extracts (total, available) of `component` from a Jicofo `/stats` body.
pub fn parse_stats(body: &[u8], component: &str) -> Result<(u32, u32), JicofoError> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| JicofoError::Json(e.to_string()))?;
    let obj = v
        .as_object()
        .ok_or_else(|| JicofoError::Json("not an object".into()))?;
    let c = obj
        .get(component)
        .and_then(|c| c.as_object())
        .ok_or_else(|| JicofoError::NotConfigured(component.to_string()))?;
    let num = |field: &'static str| {
        c.get(field)
            .and_then(|n| n.as_u64())
            .and_then(|n| u32::try_from(n).ok())
            .ok_or(JicofoError::Field {
                component: component.to_string(),
                field,
            })
    };
    if component == "jigasi_detector" {
        // Jigasi has no idle notion: instances not in graceful shutdown take calls.
        let total = num("sip_count")?;
        let leaving = num("sip_in_graceful_shutdown_count")?;
        return Ok((total, total.saturating_sub(leaving)));
    }
    let total = num("count")?;
    let available = num("available")?;
    Ok((total, available.min(total)))
}

/// Reads every shard's Jicofo.
#[derive(Clone)]
pub struct JicofoClient {
    http: reqwest::Client,
    component: String,
    shards: Vec<ShardConfig>,
}

impl JicofoClient {
    /// A client with the config's timeout on every request.
    pub fn new(cfg: &JicofoConfig) -> Result<Self, JicofoError> {
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.timeout.min(Duration::from_secs(5)))
            .timeout(cfg.timeout)
            .build()
            .map_err(|e| JicofoError::Http(e.to_string()))?;
        Ok(JicofoClient {
            http,
            component: cfg.component.clone(),
            shards: cfg.shards.clone(),
        })
    }

    /// Initial state of every shard (nothing read yet).
    pub fn initial_states(&self) -> Vec<ShardState> {
        self.shards
            .iter()
            .map(|s| ShardState {
                name: s.name.clone(),
                url: s.url.clone(),
                last: None,
                last_error: None,
                last_attempt: None,
                errors: 0,
            })
            .collect()
    }

    /// One GET to one shard: total and available from the same answer.
    pub async fn read(&self, url: &str) -> Result<ShardAnswer, JicofoError> {
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| JicofoError::Http(without_url(&e)))?;
        if !resp.status().is_success() {
            return Err(JicofoError::Http(format!("status {}", resp.status())));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| JicofoError::Http(without_url(&e)))?;
        let (total, available) = parse_stats(&body, &self.component)?;
        Ok((total, available, parse_sip_calls(&body)))
    }

    /// Reads all shards concurrently and updates `states` (same order as the config);
    /// `now` gives the time the answers arrived.
    pub async fn poll(&self, states: &mut [ShardState], now: impl Fn() -> Millis) {
        let mut set = tokio::task::JoinSet::new();
        for (n, shard) in self.shards.iter().enumerate() {
            let client = self.clone();
            let url = shard.url.clone();
            set.spawn(async move { (n, client.read(&url).await) });
        }
        let mut results: Vec<Option<Result<ShardAnswer, JicofoError>>> =
            vec![None; self.shards.len()];
        while let Some(joined) = set.join_next().await {
            if let Ok((n, r)) = joined
                && let Some(slot) = results.get_mut(n)
            {
                *slot = Some(r);
            }
        }
        let at = now();
        for (state, result) in states.iter_mut().zip(results) {
            state.last_attempt = Some(at);
            match result.unwrap_or_else(|| Err(JicofoError::Http("reader task failed".into()))) {
                Ok((total, available, sip)) => {
                    state.last = Some(Reading {
                        total,
                        available,
                        taken_at: at,
                        sip,
                    });
                    state.last_error = None;
                }
                Err(e) => {
                    state.errors += 1;
                    state.last_error = Some(e.to_string());
                }
            }
        }
    }
}

/// A reqwest error without the URL (URLs may carry credentials).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_decode() || e.is_body() {
        "bad body"
    } else {
        "request error"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `/stats` body shaped as current Jicofo writes it (`JicofoServices` puts the `jibri`
    /// object beside the detectors; field names from Jicofo's `JibriStats`).
    const CURRENT: &[u8] = br#"{"conferences":3,"participants":9,"largest_conference":4,
        "endpoint_pairs":12,"conference_sizes":[0,0,1,1,1],"jibri_detector":{"count":2,"available":2},
        "sip_jibri_detector":{"count":6,"available":1},
        "jibri":{"total_sip_call_failures":7,"total_live_streaming_failures":0,
                 "total_recording_failures":1,"live_streaming_active":0,"recording_active":1,
                 "sip_call_active":5,"live_streaming_pending":0,"recording_pending":0,
                 "sip_call_pending":2},
        "slow_health_check":0}"#;

    /// An older Jicofo: the failure counters at the top level, no `jibri` object.
    const OLDER: &[u8] = br#"{"largest_conference":3,"total_sip_call_failures":4,
        "total_participants":18,"total_recording_failures":0,"conferences":2,
        "sip_jibri_detector":{"count":3,"available":1}}"#;

    #[test]
    fn sip_call_counters_are_read_from_current_and_older_jicofo_and_missing_is_none() {
        assert_eq!(
            parse_sip_calls(CURRENT),
            SipCalls {
                failures: Some(7),
                pending: Some(2)
            }
        );
        assert_eq!(
            parse_sip_calls(OLDER),
            SipCalls {
                failures: Some(4),
                pending: None
            }
        );
        let none = br#"{"sip_jibri_detector":{"count":3,"available":1}}"#;
        assert_eq!(parse_sip_calls(none), SipCalls::default());
        assert_eq!(parse_sip_calls(b"<html>"), SipCalls::default());
        assert_eq!(parse_stats(CURRENT, "sip_jibri_detector"), Ok((6, 1)));
        // Summed over the fresh shards; unknown unless every fresh shard reports it.
        let shard = |name: &str, sip| ShardState {
            name: name.into(),
            url: String::new(),
            last: Some(Reading {
                total: 6,
                available: 1,
                taken_at: 1_000,
                sip,
            }),
            last_error: None,
            last_attempt: Some(1_000),
            errors: 0,
        };
        let a = parse_sip_calls(CURRENT);
        let m = merge(&[shard("a", a), shard("b", a)], 1_000, 10_000);
        assert_eq!(
            m.sip,
            SipCalls {
                failures: Some(14),
                pending: Some(4)
            }
        );
        let m = merge(
            &[shard("a", a), shard("b", parse_sip_calls(OLDER))],
            1_000,
            10_000,
        );
        assert_eq!(
            m.sip,
            SipCalls {
                failures: Some(11),
                pending: None
            }
        );
    }

    /// A whole `/stats` body in the shape a Jicofo 2.0 deployment answers, with every key the
    /// recorded bodies in systemli/prometheus-jitsi-meet-exporter's `exporter_test.go` carry
    /// (that deployment runs no SIP Jibri: no `sip_jibri_detector`); numbers are ours.
    const RECORDED_SHAPE: &str = r#"{"xmpp_service":{"total_recv":1800,"total_sent":1750},
        "jibri_detector":{"count":1,"available":1},"largest_conference":2,
        "conference_sizes":[0,0,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],
        "total_conferences_created":2,"threads":224,"xmpp":{},
        "jingle":{"received":{"transport-info":3,"session-accept":2},"sent":{"source-add":2,"session-initiate":2}},
        "bridge_failures":{"participants_moved":0,"bridges_removed":0},
        "avg_allocate_channels_req_time_nanos":0.0,"total_participants":3,
        "participant_notifications":{"ice_failed":0,"request_restart":0},
        "bridge_selector":{"total_least_loaded_in_region":0,"total_split_due_to_load":0,
          "total_not_loaded_in_region_in_conference":0,"in_shutdown_bridge_count":0,
          "total_least_loaded_in_region_in_conference":0,"total_not_loaded_in_region":0,
          "total_split_due_to_region":0,"bridge_count":1,"operational_bridge_count":1,
          "total_least_loaded_in_conference":0,"total_least_loaded":0},
        "jibri":{"total_sip_call_failures":3,"live_streaming_pending":0,"recording_pending":0,
          "live_streaming_active":0,"total_recording_failures":0,"sip_call_pending":1,
          "sip_call_active":4,"total_live_streaming_failures":0,"recording_active":1},
        "conferences":1,"participants":2,"slow_health_check":2}"#;

    #[test]
    fn a_whole_jicofo_stats_body_is_read() {
        let body = RECORDED_SHAPE.as_bytes();
        assert_eq!(
            parse_sip_calls(body),
            SipCalls {
                failures: Some(3),
                pending: Some(1)
            }
        );
        // No SIP Jibri in that deployment: the component is missing, never 0 of 0.
        assert!(matches!(
            parse_stats(body, "sip_jibri_detector"),
            Err(JicofoError::NotConfigured(_))
        ));
        assert_eq!(parse_stats(body, "jibri_detector"), Ok((1, 1)));
        // The same deployment with SIP gateways registered.
        let with_sip = RECORDED_SHAPE.replacen(
            r#""jibri_detector""#,
            r#""sip_jibri_detector":{"count":5,"available":1},"jibri_detector""#,
            1,
        );
        assert_eq!(
            parse_stats(with_sip.as_bytes(), "sip_jibri_detector"),
            Ok((5, 1))
        );
    }

    #[test]
    fn parses_components_and_treats_missing_as_missing() {
        let body = br#"{"sip_jibri_detector":{"count":4,"available":1},"jibri_detector":{"count":2,"available":2},
            "jigasi_detector":{"sip_count":5,"sip_in_graceful_shutdown_count":2,"transcriber_count":0},"x":1}"#;
        assert_eq!(parse_stats(body, "sip_jibri_detector"), Ok((4, 1)));
        assert_eq!(parse_stats(body, "jibri_detector"), Ok((2, 2)));
        assert_eq!(parse_stats(body, "jigasi_detector"), Ok((5, 3)));
        assert!(matches!(
            parse_stats(br#"{"jibri_detector":{}}"#, "sip_jibri_detector"),
            Err(JicofoError::NotConfigured(_))
        ));
        assert!(matches!(
            parse_stats(
                br#"{"sip_jibri_detector":{"count":"4"}}"#,
                "sip_jibri_detector"
            ),
            Err(JicofoError::Field { .. })
        ));
        assert!(matches!(
            parse_stats(b"<html>", "sip_jibri_detector"),
            Err(JicofoError::Json(_))
        ));
    }

    #[test]
    fn merge_is_conservative_over_fresh_shards_only() {
        let s = |name: &str, r: Option<(u32, u32, Millis)>| ShardState {
            name: name.into(),
            url: String::new(),
            last: r.map(|(total, available, taken_at)| Reading {
                total,
                available,
                taken_at,
                sip: SipCalls::default(),
            }),
            last_error: None,
            last_attempt: None,
            errors: 0,
        };
        let shards = [
            s("a", Some((5, 3, 100))),
            s("b", Some((4, 1, 90))),
            s("c", Some((9, 0, 1))),
        ];
        let m = merge(&shards, 100, 20);
        let o = m.observation.expect("fresh");
        assert_eq!((o.total, o.available, o.taken_at), (5, 1, 90));
        assert_eq!(
            (m.fresh.len(), m.stale, m.disagreement),
            (2, vec!["c".to_string()], true)
        );
        let m = merge(&shards, 1_000, 20);
        assert_eq!(m.observation, None);
    }
}
