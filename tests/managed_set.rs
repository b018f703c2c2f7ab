//! The managed set against the real `serve` and a fake Foreman that also holds hosts the scaler
//! never launched: a holder of the shared sidecar key (or any valid token) cannot make the scaler
//! delete or power off a host outside the managed set, nor a managed host from another address;
//! a flood of invented ids grows nothing; a sidecar whose report says BUSY is never told to shut
//! down.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::sidecar::{FakeSidecar, Jibri, command, sidecar_keys};
use support::{FakeForeman, FakeJicofo, Scaler, fast_config, token};

const WAIT: Duration = Duration::from_secs(20);
/// The hostgroup the scaler creates into.
const GATEWAYS: u64 = 3;
/// Another hostgroup of the same Foreman.
const INFRA: u64 = 7;
/// Where the attacker's requests come from (a gateway holding the shared key).
const ATTACKER: &str = "10.66.0.9";

struct Site {
    jicofo: FakeJicofo,
    foreman: FakeForeman,
    s: Scaler,
    pem: Vec<u8>,
    /// A `sub: scaler` token: an admin, as the legacy scripts' tokens are by default.
    admin: String,
    /// A token of an instance caller (bound to its address).
    instance: String,
    _dir: tempfile::TempDir,
}

impl Site {
    /// Two gateways of ours (hostgroup 3, idle), and hosts that are not: `prod-db` and
    /// `mail.example.org` (no prefix, another or no hostgroup), `vsg-oldgw1` (our prefix,
    /// another hostgroup), `prod-web` (another hostgroup).
    async fn start() -> Site {
        let dir = tempfile::tempdir().expect("dir");
        let (key, public, key_dir, pem) = sidecar_keys(dir.path());
        let jicofo = FakeJicofo::start(2, 2).await;
        let foreman = FakeForeman::start().await;
        foreman.insert_in("gw-a", "10.3.0.1", GATEWAYS, "jitsi/sip-gateways");
        foreman.insert_in("gw-b", "10.3.0.2", GATEWAYS, "jitsi/sip-gateways");
        foreman.insert_in("prod-db", "10.9.0.1", INFRA, "infra/db");
        foreman.insert("mail.example.org", "10.9.0.2");
        foreman.insert_in("vsg-oldgw1", "10.9.0.3", INFRA, "infra/old");
        foreman.insert_in("prod-web", "10.9.0.5", INFRA, "infra/web");
        let config = format!(
            "[settings]\nmin = 1\n{}\n[lifecycle.foreman.host_parameters]\nhostgroup_id = {GATEWAYS}\n\
             [auth]\npublic_key_file = \"{}\"\nkey_dir = \"{}\"\n",
            fast_config(&jicofo.url, &[&foreman.url]),
            public.display(),
            key_dir.display()
        );
        let mut s = Scaler::start(&config).await;
        let admin = token(&key, "scaler");
        s.bearer = Some(admin.clone());
        s.fresh().await;
        Site {
            instance: token(&key, "gateway"),
            jicofo,
            foreman,
            s,
            pem,
            admin,
            _dir: dir,
        }
    }

    fn sidecar(&self, id: &str, from: &str) -> FakeSidecar {
        FakeSidecar::new(id, from, "jibri", &self.pem)
    }

    /// A remove-me body sent with `token` from `from` (behind nginx: `X-Forwarded-For`).
    async fn remove_from(&self, token: &str, from: &str, body: &Value) -> (u16, String) {
        let r = reqwest::Client::new()
            .delete(format!("{}/scaler/instance", self.s.url))
            .bearer_auth(token)
            .header("x-forwarded-for", from)
            .json(body)
            .send()
            .await
            .expect("answer");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    }

    /// Every destructive call Foreman received: deletes and power actions.
    fn destructive_calls(&self) -> (u64, usize) {
        (
            self.foreman.delete_requests(),
            self.foreman.power_actions().len(),
        )
    }

    /// The `managed` decisions recorded for `host`: (outcome, why).
    async fn managed_decisions(&self, host: &str) -> Vec<(String, String)> {
        self.s.decisions("managed", host).await
    }
}

/// Adopt-then-shutdown, the attack as reported: for hosts outside the managed set from any
/// address (the attacker's and the host's own), and for a managed host from another address.
/// Nothing reaches Foreman but look-ups, and each refusal is one decision line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopt_then_shutdown_of_a_host_not_managed_sends_no_delete_from_any_address() {
    let site = Site::start().await;
    let url = site.s.url.clone();
    // Several gateways hold the key: each new id from one address is rate-limited.
    for (id, from, want) in [
        ("prod-db", ATTACKER, 200),
        ("prod-db", "10.9.0.1", 200),
        ("mail.example.org", "10.66.0.10", 200),
        // Inside the set by its prefix, but the attacker is not at its address: 403.
        ("vsg-oldgw1", "10.66.0.11", 403),
    ] {
        let sc = site.sidecar(id, from);
        let (code, body) = sc
            .post(&url, "status", &sc.report(Jibri::Idle, false), &sc.token())
            .await;
        assert_eq!(code, want, "{id} from {from}: {body}");
        if code == 200 {
            assert!(!command(&body), "{id}: never told");
        }
        let (code, body) = sc.post(&url, "shutdown", &sc.instance(), &sc.token()).await;
        assert_eq!(
            (code, body.as_str()),
            (200, r#"{"save":"OK"}"#),
            "the answer the sidecar expects"
        );
    }
    // Foreman slow at the first report: the host is adopted unverified; its shutdown is then
    // owed, and the guard in front of the delete asks Foreman and sends nothing.
    site.foreman.script().delay = Duration::from_millis(2000);
    let web = site.sidecar("prod-web", "10.66.0.12");
    let (code, body) = web
        .post(
            &url,
            "status",
            &web.report(Jibri::Idle, false),
            &web.token(),
        )
        .await;
    site.foreman.script().delay = Duration::ZERO;
    assert_eq!(code, 200, "{body}");
    let (code, _) = web
        .post(&url, "shutdown", &web.instance(), &web.token())
        .await;
    assert_eq!(code, 200);
    site.s
        .eventually("prod-web judged", WAIT, |st| {
            support::ledger_state(st, "prod-web").is_none()
                || st["ledger"]["hosts"]
                    .as_object()
                    .into_iter()
                    .flat_map(|m| m.values())
                    .filter_map(Value::as_array)
                    .flatten()
                    .any(|r| r["host"] == "prod-web" && r["membership"] == "outside")
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(site.destructive_calls(), (0, 0), "{}", site.s.log());
    let why = site.managed_decisions("prod-web").await;
    assert!(
        why.iter()
            .any(|(o, w)| o == "not_managed" && w.contains("not a managed host")),
        "{why:?}"
    );
    for host in ["prod-db", "mail.example.org"] {
        let why = site.managed_decisions(host).await;
        assert!(
            why.iter().all(|(o, _)| o == "not_managed"),
            "{host}: {why:?}"
        );
        assert!(!why.is_empty(), "{host}: one line says why");
    }
    let st = site.s.status().await;
    for host in ["prod-db", "mail.example.org", "vsg-oldgw1"] {
        assert_eq!(support::ledger_state(&st, host), None, "{host}: not kept");
    }
}

/// The legacy `DELETE /scaler/instance` by `ip` (or by name) of a host outside the managed set
/// is refused with 403 even with an admin token; a managed host spoken for by an instance
/// caller from another address than its address at Foreman is 403; from its own, it is
/// answered as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_removal_of_a_host_not_managed_deletes_nothing() {
    let site = Site::start().await;
    for body in [
        json!({"ip": "10.9.0.1", "reason": "expired"}),
        json!({"host": "prod-db", "reason": "unhealthy"}),
        json!({"host": "mail.example.org", "reason": "expired"}),
    ] {
        let (code, text) = site.remove_from(&site.admin, "127.0.0.1", &body).await;
        assert_eq!(code, 403, "{body}: {text}");
        assert!(text.contains("not a managed host"), "{text}");
    }
    // An instance caller naming a managed host that is not its own.
    let gw = json!({"host": "gw-a", "reason": "expired"});
    let (code, text) = site.remove_from(&site.instance, ATTACKER, &gw).await;
    assert_eq!(code, 403, "{text}");
    let old = json!({"host": "vsg-oldgw1", "reason": "expired"});
    let (code, _) = site.remove_from(&site.instance, ATTACKER, &old).await;
    assert_eq!(code, 403);
    // From gw-a's own address at Foreman (nothing in the ledger knew it): accepted, deleted.
    let (code, text) = site.remove_from(&site.instance, "10.3.0.1", &gw).await;
    assert_eq!((code, text.as_str()), (200, "accepted"));
    site.s
        .eventually("gw-a deleted", WAIT, |_| site.foreman.deletes() == ["gw-a"])
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(site.foreman.deletes(), ["gw-a"], "nothing else");
    assert_eq!(site.foreman.delete_requests(), 1);
    let why = site.managed_decisions("10.9.0.1").await;
    assert!(
        why.iter()
            .any(|(o, w)| o == "not_managed" && w.contains("prod-db")),
        "{why:?}"
    );
}

/// 3000 invented ids from one address: 429 after the first few, nothing grows (state file
/// within 10 %, status small), and the real sidecars are still answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unknown_ids_from_one_address_grows_nothing() {
    let site = Site::start().await;
    let url = site.s.url.clone();
    let gw = site.sidecar("gw-a", "10.3.0.1");
    assert!(!gw.status(&url, Jibri::Idle, false).await);
    site.s
        .eventually("gw-a confirmed managed", WAIT, |st| {
            st["recent_decisions"].as_array().is_some_and(|d| {
                d.iter()
                    .any(|d| d["host"] == "gw-a" && d["outcome"] == "managed")
            })
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let state = site.s.data_dir().join("state.json");
    let before = std::fs::metadata(&state).expect("state").len();
    let (_, status_before) = site.s.get("/scaler/status").await;

    let attacker = site.sidecar("flood-0", ATTACKER);
    let tok = attacker.token();
    let http = reqwest::Client::new();
    let started = Instant::now();
    let (mut ok, mut limited) = (0, 0);
    for n in 0..3000 {
        let mut report = attacker.report(Jibri::Idle, false);
        report["instance"]["instanceId"] = json!(format!("flood-{n}"));
        let r = http
            .post(format!("{url}/scaler/sidecar/status"))
            .bearer_auth(&tok)
            .header("x-forwarded-for", ATTACKER)
            .json(&report)
            .send()
            .await
            .expect("answer");
        match r.status().as_u16() {
            200 => ok += 1,
            429 => {
                assert!(r.headers().contains_key("retry-after"));
                limited += 1;
            }
            other => panic!("flood-{n}: {other}"),
        }
    }
    println!(
        "3000 ids in {:.1} s: {ok} answered 200, {limited} answered 429",
        started.elapsed().as_secs_f64()
    );
    assert!(ok <= 5, "{ok} new ids taken from one address");
    assert!(limited >= 2995);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = std::fs::metadata(&state).expect("state").len();
    let (_, status_after) = site.s.get("/scaler/status").await;
    println!(
        "state file {before} -> {after} bytes; status {} -> {} bytes",
        status_before.len(),
        status_after.len()
    );
    assert!(after * 10 <= before * 11, "state {before} -> {after}");
    assert!(
        status_after.len() <= status_before.len() + 4096,
        "status {} -> {}",
        status_before.len(),
        status_after.len()
    );
    let st = site.s.status().await;
    assert_eq!(
        support::hosts_in(&st, "ready")
            .iter()
            .filter(|h| h.starts_with("flood-"))
            .count(),
        0
    );
    // The real gateway is still heard (`status` checks the 200).
    gw.status(&url, Jibri::Idle, false).await;
}

/// A host picked as a surplus spare is told to shut down only in answer to a report that says
/// IDLE; while its report in the same request says BUSY it is not, however often it asks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_whose_report_says_busy_is_never_told_to_shut_down() {
    let site = Site::start().await;
    let url = site.s.url.clone();
    let a = site.sidecar("gw-a", "10.3.0.1");
    let b = site.sidecar("gw-b", "10.3.0.2");
    assert!(!a.status(&url, Jibri::Idle, false).await);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!b.status(&url, Jibri::Idle, false).await);
    // Available 2, min 1: one surplus, gw-a idle longest. It is picked on its last report.
    site.s
        .eventually("gw-a picked", WAIT, |st| {
            support::ledger_state(st, "gw-a").as_deref() == Some("draining")
        })
        .await;
    // A call arrived at gw-a before its next report: it says BUSY, and is not told.
    for _ in 0..10 {
        assert!(
            !a.status(&url, Jibri::Busy, false).await,
            "BUSY in the same request"
        );
        let (code, body) = a.post(&url, "poll", &a.instance(), &a.token()).await;
        assert_eq!(code, 200);
        assert!(
            !command(&body),
            "a poll after a BUSY report is not told either"
        );
    }
    // The call ended: told at once.
    assert!(a.status(&url, Jibri::Idle, false).await);
    assert!(!b.status(&url, Jibri::Idle, false).await, "the floor holds");
    let _ = &site.jicofo;
    let _ = &site.admin;
}
