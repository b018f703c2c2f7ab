//! A jitsi-autoscaler sidecar as the docker Jibri image runs it (SIDECAR-PROTOCOL.md): its
//! tokens, its InstanceDetails and StatsReport bodies, its 3 s per request, behind nginx (the
//! client address in `X-Forwarded-For`).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::path::PathBuf;

use jitsi_scaler::auth::{SigningKey, kid_file_name};
use serde_json::{Value, json};

/// The sidecar key's kid (its public key lives in the scaler's `key_dir`).
pub const KID: &str = "jitsi/jwt-2023-06-01";

/// The sidecar's key pair in `dir`: (private key file, public key file, a `key_dir` holding the
/// public key under [`KID`]'s name, the private key's PEM).
pub fn sidecar_keys(dir: &std::path::Path) -> (PathBuf, PathBuf, PathBuf, Vec<u8>) {
    let (key, public) = super::rsa_key_pair(dir, "asap");
    let key_dir = dir.join("keys");
    std::fs::create_dir(&key_dir).expect("key dir");
    std::fs::copy(&public, key_dir.join(kid_file_name(KID))).expect("copy key");
    let pem = std::fs::read(&key).expect("pem");
    (key, public, key_dir, pem)
}

/// One gateway's sidecar, as the docker Jibri image runs it.
pub struct FakeSidecar {
    pub id: String,
    pub ip: String,
    pub kind: &'static str,
    key: SigningKey,
    http: reqwest::Client,
}

/// What the sidecar reports: Jibri's busy status.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Jibri {
    Idle,
    Busy,
}

impl FakeSidecar {
    pub fn new(id: &str, ip: &str, kind: &'static str, pem: &[u8]) -> FakeSidecar {
        FakeSidecar {
            id: id.into(),
            ip: ip.into(),
            kind,
            key: SigningKey::from_pem(pem).expect("key"),
            http: reqwest::Client::builder()
                // The sidecar's per-request timeout.
                .timeout(Duration::from_millis(3000))
                .build()
                .expect("client"),
        }
    }

    /// The sidecar's ASAP token: RS256, kid, iss, aud, iat, exp = iat + 1 h, no sub.
    pub fn token(&self) -> String {
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let claims = json!({"iss": "jitsi-autoscaler-sidecar", "aud": "jitsi-autoscaler",
                            "iat": iat, "exp": iat + 3600});
        let claims = claims.as_object().expect("object");
        self.key.sign_claims(Some(KID), claims).expect("sign")
    }

    /// InstanceDetails as docker's autoscaler-sidecar.config builds it.
    pub fn instance(&self) -> Value {
        json!({"instanceId": self.id, "instanceType": self.kind, "environment": "meet",
               "region": "docker", "group": "docker-jibri", "name": self.id,
               "version": "8.0-93-g", "privateIp": self.ip, "hostId": "h"})
    }

    /// A StatsReport whose stats are the Jibri health GET body.
    pub fn report(&self, jibri: Jibri, shutting_down: bool) -> Value {
        let busy = match jibri {
            Jibri::Idle => "IDLE",
            Jibri::Busy => "BUSY",
        };
        let mut status = json!({"busyStatus": busy,
            "health": {"healthStatus": "HEALTHY", "details": {}}});
        if jibri == Jibri::Busy {
            status["environmentContext"] = json!({"name": "shard1"});
        }
        json!({"instance": self.instance(), "stats": {"status": status},
               "timestamp": 1_700_000_000_000u64, "shutdownStatus": shutting_down,
               "shutdownError": false, "reconfigureError": false, "reconfigureComplete": "",
               "statsError": false})
    }

    pub async fn post(&self, base: &str, route: &str, body: &Value, token: &str) -> (u16, String) {
        let started = Instant::now();
        let r = self
            .http
            .post(format!("{base}/scaler/sidecar/{route}"))
            .bearer_auth(token)
            // Behind nginx on the JMS: the client address comes from X-Forwarded-For.
            .header("x-forwarded-for", &self.ip)
            .json(body)
            .send()
            .await
            .expect("an answer within the sidecar's 3 s");
        assert!(started.elapsed() < Duration::from_secs(3));
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    }

    /// `/sidecar/status` with the current report; returns the `shutdown` command.
    pub async fn status(&self, base: &str, jibri: Jibri, shutting_down: bool) -> bool {
        let (code, body) = self
            .post(
                base,
                "status",
                &self.report(jibri, shutting_down),
                &self.token(),
            )
            .await;
        assert_eq!(code, 200, "{body}");
        command(&body)
    }
}

/// The `shutdown` of a `{"shutdown": bool, "reconfigure": ""}` answer (never a reconfigure).
pub fn command(body: &str) -> bool {
    let v: Value = serde_json::from_str(body).expect("JSON answer");
    assert_eq!(v["reconfigure"], "", "never a reconfigure: {v}");
    v["shutdown"].as_bool().expect("shutdown is a bool")
}
