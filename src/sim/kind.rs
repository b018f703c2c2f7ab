//! Which policy `simulate` runs, and its controller: the one place that knows every policy,
//! so the policies (`policies`, `sidecar`, which builds on `policies::Ours`) need not know each
//! other.

use policy::{Settings, Timing};

use super::policies::{AutoscalerStyle, Legacy, Ours, PolicyOptions};
use super::sidecar::SidecarFleet;
use super::world::Controller;

/// Which policy to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum PolicyKind {
    /// The `policy` crate, as `serve` runs it.
    Ours,
    /// The existing scaler and its known flaws.
    Legacy,
    /// jitsi-autoscaler's threshold rule with periods and a cooldown.
    Autoscaler,
    /// Ours, with gateways on jitsi-autoscaler's sidecar: the scaler picks which spares go.
    Sidecar,
}

impl PolicyKind {
    /// The name used in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::Ours => "ours",
            PolicyKind::Legacy => "legacy",
            PolicyKind::Autoscaler => "autoscaler",
            PolicyKind::Sidecar => "sidecar",
        }
    }

    /// Builds the controller.
    pub fn controller(
        self,
        settings: Settings,
        timing: Timing,
        tick_ms: u64,
        opts: &PolicyOptions,
    ) -> Box<dyn Controller> {
        match self {
            PolicyKind::Ours => Box::new(Ours::new(settings, timing, tick_ms).with_target(opts)),
            PolicyKind::Legacy => Box::new(Legacy::new(settings)),
            PolicyKind::Autoscaler => Box::new(AutoscalerStyle::new(settings, opts.autoscaler)),
            PolicyKind::Sidecar => Box::new(SidecarFleet::new(settings, timing, tick_ms)),
        }
    }
}
