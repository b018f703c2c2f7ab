//! The bounded label sets of decisions ([`Kind`], [`Outcome`]): metric labels, the `kind` and
//! `outcome` of log lines, audit records and `/scaler/status`.

/// Declares a label enum with its `ALL` list and its label text, from one table.
macro_rules! labels {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal,)+ }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $v,)+ }

        impl $name {
            /// Every label, for documentation and pre-registered metrics.
            pub const ALL: &'static [$name] = &[$($name::$v,)+];

            /// The label text.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$v => $s,)+ }
            }
        }
    };
}

labels! {
    /// What a decision is about (the `kind` label).
    Kind {
        /// The launch rule.
        Launch = "launch",
        /// A remove-me request.
        Remove = "remove",
        /// `POST /scaler/instance`.
        Add = "add",
        /// A lifecycle create call.
        Create = "create",
        /// A lifecycle delete call.
        Delete = "delete",
        /// An agent's drain confirmation.
        Drained = "drained",
        /// A launch counted by Jicofo.
        Seen = "seen",
        /// An approved host no longer counted.
        Left = "left",
        /// A boot, drain or pending timeout.
        Timeout = "timeout",
        /// An API setting changed.
        Setting = "setting",
        /// Reconciliation with the lifecycle manager.
        Reconcile = "reconcile",
        /// A lifecycle node's circuit breaker.
        Breaker = "breaker",
        /// The leader lease.
        Leader = "leader",
        /// Target mode's spare floor.
        Capacity = "capacity",
        /// The warm pool: power calls, refills, trims.
        Pool = "pool",
        /// A jitsi-autoscaler sidecar host.
        Sidecar = "sidecar",
        /// An agent announced its host at start.
        Hello = "hello",
        /// Whether a host the scaler did not launch is one it may delete or power off.
        Managed = "managed",
    }
}

labels! {
    /// How a decision came out (the `outcome` label).
    Outcome {
        /// A removal approved.
        Accepted = "accepted",
        /// A removal refused.
        Keep = "keep",
        /// Refused: an add over `max`, or a decision whose store write was refused.
        Refused = "refused",
        /// A launch recorded on request.
        Requested = "requested",
        /// A setting changed.
        Changed = "changed",
        /// A drained host may now be deleted.
        Delete = "delete",
        /// A drain confirmation for a host with no approved removal.
        Unknown = "unknown",
        /// Hosts launched.
        Launch = "launch",
        /// The launch rule holds.
        Hold = "hold",
        /// `max` holds back what the spare floor needs.
        Capped = "capped",
        /// The spare floor fits under `max` again.
        Uncapped = "uncapped",
        /// A launch is counted by Jicofo.
        Ready = "ready",
        /// A host no longer counted.
        Left = "left",
        /// A launch not seen within the boot timeout.
        LaunchFailed = "launch_failed",
        /// Deleted without a drain confirmation.
        Deleting = "deleting",
        /// No longer pending removal.
        NotPending = "not_pending",
        /// The lifecycle manager created the host.
        Created = "created",
        /// A lifecycle call failed and is retried.
        Retry = "retry",
        /// The lifecycle manager deleted the host.
        Deleted = "deleted",
        /// Missing from the lifecycle manager.
        Gone = "gone",
        /// A breaker opened.
        Open = "open",
        /// A breaker closed.
        Closed = "closed",
        /// A breaker lets a trial call through.
        HalfOpen = "half_open",
        /// This replica took the lease.
        Acquired = "acquired",
        /// This replica lost the lease.
        Lost = "lost",
        /// An approval queued while the store was down is now stored.
        Recorded = "recorded",
        /// An entry that can never be deleted, reported once and no longer retried.
        Parked = "parked",
        /// Warm pool: hosts started (powered on), or a power-on confirmed.
        Started = "started",
        /// Warm pool: a power-off confirmed, or a stopped host learned: in the pool.
        Stopped = "stopped",
        /// Warm pool: a failed start is being powered off and checked.
        Stopping = "stopping",
        /// Warm pool: hosts created to refill it.
        Refill = "refill",
        /// `POST /scaler/instance` not needed: answered as accepted, nothing launched.
        NotNeeded = "not_needed",
        /// A sidecar host told to shut down.
        Shutdown = "shutdown",
        /// A sidecar's `/sidecar/shutdown` arrived.
        ShutdownConfirmed = "shutdown_confirmed",
        /// A sidecar host the ledger did not know, from its first report.
        Adopted = "adopted",
        /// An adopted sidecar host silent past the TTL, no longer tracked.
        Forgotten = "forgotten",
        /// A host the ledger had in flight proved it runs (its agent's hello).
        Alive = "alive",
        /// The lifecycle manager confirms the host inside the managed set.
        Managed = "managed",
        /// Outside the managed set: nothing is sent to the lifecycle manager for it.
        NotManaged = "not_managed",
        /// The lifecycle manager has no such host: known from reports alone, never deleted.
        ReportsOnly = "reports_only",
        /// Its requests come from another address than the host's at the lifecycle manager.
        AddressMismatch = "address_mismatch",
    }
}
