//! `POST {prefix}/hello`: a gateway's agent announces itself by name when it starts (issue 15,
//! case 10). The ledger then knows the host runs at once, by name rather than by counting, so a
//! slow boot is never failed and deleted under a call (see `policy::Ledger::hello`).

use crate::service::{Service, ServiceError, now_ms};

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
            .mutate(None, |snap, _| {
                let state = snap.ledger.find(host).map(|i| i.state);
                snap.ledger.hello(host, now).then_some(state).flatten()
            })
            .await?;
        let Some(was) = before else {
            tracing::debug!(host, by, "hello: nothing to change");
            return Ok(Greeting::Noted);
        };
        let why = match was {
            policy::State::LaunchFailed => {
                "its agent started after the boot timeout: adopted, not deleted".to_string()
            }
            other => format!(
                "its agent started ({}): it runs; Jicofo's next rise is attributed to it",
                other.as_str()
            ),
        };
        self.record(Service::decision(
            "hello",
            Some(host),
            "alive",
            why,
            Some(by),
        ));
        self.wake.notify_one();
        Ok(Greeting::Alive)
    }
}
