//! The call load: Poisson arrivals, lognormal durations (the simulator's generators); each call
//! takes an idle gateway or is rejected. It starts once the scaler has brought up its floor
//! ([`wait_for_floor`]), as calls reach a real pool only after it has been deployed.

use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio_util::sync::CancellationToken;

use super::gateway::World;
use crate::sim::trace::{exponential, lognormal};

/// Coefficient of variation of call durations (lognormal).
const DURATION_CV: f64 = 1.0;

/// Parameters of the call load.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Mean arrivals per second (0: no calls).
    pub per_second: f64,
    /// Mean call duration.
    pub mean_duration: Duration,
}

/// How often [`wait_for_floor`] looks at the pool.
const FLOOR_POLL: Duration = Duration::from_millis(100);

/// Waits until `floor` gateways are idle, at most `limit`; `false` when the limit passed
/// first or the demo stops.
pub async fn wait_for_floor(
    world: &World,
    floor: u32,
    limit: Duration,
    shutdown: &CancellationToken,
) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if world.view().idle >= floor {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::select! {
            () = tokio::time::sleep(FLOOR_POLL) => {}
            () = shutdown.cancelled() => return false,
        }
    }
}

/// Places calls on the world until `shutdown`.
pub async fn run(world: Arc<World>, load: Load, shutdown: CancellationToken) {
    if load.per_second <= 0.0 {
        shutdown.cancelled().await;
        return;
    }
    let mut rng = StdRng::from_os_rng();
    let mean_s = load.mean_duration.as_secs_f64().max(0.001);
    loop {
        let gap = Duration::from_secs_f64(exponential(&mut rng, load.per_second).min(86_400.0));
        tokio::select! {
            () = tokio::time::sleep(gap) => {}
            () = shutdown.cancelled() => return,
        }
        let duration =
            Duration::from_secs_f64(lognormal(&mut rng, mean_s, DURATION_CV).min(86_400.0));
        if world.place_call(duration) {
            tracing::debug!(duration_s = duration.as_secs(), "call placed");
        } else {
            tracing::info!("call rejected: no idle gateway");
        }
    }
}
