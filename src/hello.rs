//! `POST {prefix}/hello`: a gateway's agent announces itself by name when it starts. The
//! ledger then knows the host runs at once, by name rather than by counting, so a
//! slow boot is never failed and deleted under a call (see `policy::Ledger::hello`).

use crate::decision::{Decision, Record};
use crate::ops::now_ms;
use crate::service::{Service, ServiceError};

/// What a hello changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Greeting {
    /// The ledger had the host in flight or failed: it is now known to run.
    Alive,
    /// Nothing to change (already counted, or not a host of the ledger).
    Noted,
}

impl Service {
    /// Records that the agent on `host` has started (any replica may take it: the write goes
    /// through the store like a remove-me). One decision when it changes the ledger.
    pub async fn hello(&self, host: &str, by: &str) -> Result<Greeting, ServiceError> {
        let now = now_ms();
        let before = self
            .apply(None, |snap, _, _| {
                let state = snap.ledger.find(host).map(|i| i.state);
                snap.ledger.hello(host, now).then_some(state).flatten()
            })
            .await?;
        let Some(was) = before else {
            tracing::debug!(host, by, "hello: nothing to change");
            return Ok(Greeting::Noted);
        };
        self.record(
            Record::new(
                now,
                Decision::Hello {
                    host: host.to_string(),
                    adopted: was == policy::State::LaunchFailed,
                },
            )
            .by(by),
        );
        self.wake();
        Ok(Greeting::Alive)
    }
}
