//! Times one control-loop tick at scale: `jicofo::merge` over 50 shards plus `policy::tick`
//! on a ledger of 10 000 instances, and the ledger clone `controller::step` makes first.
//!
//! Run with `cargo bench --bench tick` (release profile). No harness: it prints a table.

use std::hint::black_box;
use std::time::{Duration, Instant};

use jitsi_scaler::jicofo::{Reading, ShardState, merge};
use policy::{Instance, Ledger, Origin, Reason, Settings, State, Timing};

const INSTANCES: usize = 10_000;
const SHARDS: usize = 50;
const ROUNDS: usize = 300;
const NOW: u64 = 1_800_000_000_000;

/// A ledger shaped like a big pool: mostly ready, some booting, draining and finished.
fn ledger() -> Ledger {
    let instances = (0..INSTANCES).map(|n| {
        let (state, counted, reason) = match n % 100 {
            0..=89 => (State::Ready, true, None),
            90..=92 => (State::Booting, false, None),
            93..=94 => (State::Requested, false, None),
            95..=96 => (State::Draining, true, Some(Reason::Idle)),
            97 => (State::Deleting, true, Some(Reason::Expired)),
            _ => (State::Gone, false, Some(Reason::Idle)),
        };
        let age = (n as u64 % 600) * 1000;
        let created_at = NOW - 3_600_000 + age;
        Instance {
            state_since: NOW - 60_000 + age / 10,
            seen_at: counted.then_some(NOW - 1_800_000),
            counted,
            reason,
            approved_at: reason.map(|_| NOW - 30_000),
            deleted_at: (state == State::Gone).then_some(NOW - 20_000),
            stopped_at: (state == State::Gone).then_some(NOW - 20_000),
            ip: Some(format!("10.{}.{}.{}", n / 65536, n / 256 % 256, n % 256)),
            ..Instance::new(&format!("vsg-{n:012x}"), state, Origin::Scaler, created_at)
        }
    });
    Ledger::from_parts(instances, 0)
}

fn shards(total: u32, available: u32, now: u64) -> Vec<ShardState> {
    (0..SHARDS)
        .map(|n| ShardState {
            name: format!("shard{n}"),
            url: format!("http://10.0.{n}.10:8888/stats"),
            last: Some(Reading {
                total,
                // One shard sees one gateway fewer: the conservative merge has work to do.
                available: available - u32::from(n == 7),
                taken_at: now - 2_000,
                sip: Default::default(),
            }),
            last_error: None,
            last_attempt: Some(now - 2_000),
            errors: 0,
        })
        .collect()
}

fn stats(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    println!(
        "{name:<34} min {:>9.3} ms  p50 {:>9.3} ms  p99 {:>9.3} ms",
        samples[0].as_secs_f64() * 1e3,
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
    );
}

fn main() {
    let base = ledger();
    let counted = base.instances().filter(|i| i.counted).count() as u32;
    let settings = Settings {
        min_available: 20,
        max_total: 1000,
        bulk_max: 5,
    };
    let timing = Timing::default();
    let (mut tick_only, mut with_clone, mut clone_only) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let now = NOW + round as u64 * 15_000;
        // Each reading differs a little, so the ledger attributes arrivals and departures.
        let total = counted + (round % 5) as u32;
        let shards = shards(total, 25 + (round % 3) as u32, now);

        let t0 = Instant::now();
        let mut ledger = black_box(&base).clone();
        let t1 = Instant::now();
        let merged = merge(black_box(&shards), now, timing.stats_max_age_ms);
        let tick = policy::tick(
            &mut ledger,
            &settings,
            merged.observation.as_ref(),
            &timing,
            now,
        );
        let t2 = Instant::now();
        black_box((&tick, &ledger));
        clone_only.push(t1 - t0);
        tick_only.push(t2 - t1);
        with_clone.push(t2 - t0);
    }
    println!(
        "policy tick: {INSTANCES} instances, {SHARDS} shards, {ROUNDS} rounds (release: {})",
        !cfg!(debug_assertions)
    );
    stats("merge + policy::tick", tick_only);
    stats("ledger clone (as in step)", clone_only);
    stats("clone + merge + tick", with_clone);
}
