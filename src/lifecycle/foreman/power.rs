//! Foreman power actions for the warm pool: `PUT /api/hosts/:id/power` with
//! `{"power_action": "start"|"stop"|"status"}`, through the same retry, failover and breaker
//! rules as create and delete (`ForemanClient::call`). A start or stop counts only once
//! `status` confirms the state.

use reqwest::Method;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};

use super::super::{LifecycleError, PowerAction, PowerState};
use super::{Answer, ForemanClient, Step, classify, send};

impl ForemanClient {
    /// Sends one power action (with the client's retries and failover) and reads its answer.
    pub async fn power(
        &self,
        name: &str,
        action: PowerAction,
    ) -> Result<PowerState, LifecycleError> {
        let op = match action {
            PowerAction::Start => "power_start",
            PowerAction::Stop => "power_stop",
            PowerAction::Status => "power_status",
        };
        let loud = action != PowerAction::Status;
        self.call(op, loud, name, |i| self.power_on_node(i, name, action))
            .await
    }

    /// Powers the host on or off and confirms the state with `status`: polled up to
    /// `attempts` times with the client's backoff, since a guest may take a moment to stop.
    /// A state not reached is a transient error (the caller retries next tick).
    pub async fn power_confirmed(
        &self,
        name: &str,
        action: PowerAction,
    ) -> Result<PowerState, LifecycleError> {
        let Some(want) = action.target() else {
            return self.power(name, action).await;
        };
        self.power(name, action).await?;
        let mut last = PowerState::Unknown(String::new());
        for round in 0..self.attempts {
            if round > 0 {
                tokio::time::sleep(self.backoff_delay(round - 1)).await;
            }
            last = self.power(name, PowerAction::Status).await?;
            if last == want {
                return Ok(last);
            }
        }
        Err(LifecycleError::Transient(format!(
            "power {} {name}: status is {} after the action, not {}",
            action.as_str(),
            last.as_str(),
            want.as_str()
        )))
    }

    async fn power_on_node(
        &self,
        index: usize,
        name: &str,
        action: PowerAction,
    ) -> Answer<PowerState> {
        let url = &self.nodes[index].url;
        let path = format!("{}/power", self.host_path(name));
        let body = json!({ "power_action": action.as_str() });
        let request = self
            .request(Method::PUT, index, &path, self.timeout)
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_string());
        let what = format!("power {}", action.as_str());
        let (status, text) = match send(request).await {
            Ok(answer) => answer,
            Err(e) => return Answer::unreachable(format!("{url}: {what} {name}: {e}")),
        };
        match status.as_u16() {
            200..=299 => match parse_power(&text, action) {
                Some(state) => Answer::new(status, Step::Done(state)),
                None => Answer::new(
                    status,
                    Step::Retry(format!("{url}: {what} {name}: unreadable answer")),
                ),
            },
            // 404 (no such host) and 422 (unknown action, or a compute resource without power
            // management) are definitive, as every other 4xx.
            _ => Answer::new(status, classify(url, &what, name, status, &text)),
        }
    }
}

/// `{"power": ...}`: a state word for `status` ("on", "running", "off", ...), `true`/`false`
/// for an action (done or not).
fn parse_power(text: &str, action: PowerAction) -> Option<PowerState> {
    let v: Value = serde_json::from_str(text).ok()?;
    match v.get("power")? {
        Value::String(s) => Some(PowerState::parse(s)),
        Value::Bool(true) => Some(match action {
            PowerAction::Start => PowerState::On,
            PowerAction::Stop => PowerState::Off,
            PowerAction::Status => PowerState::Unknown("true".into()),
        }),
        Value::Bool(false) => Some(PowerState::Unknown("false".into())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_power_answers() {
        let p = |t: &str, a| parse_power(t, a);
        assert_eq!(
            p(r#"{"power":"on"}"#, PowerAction::Status),
            Some(PowerState::On)
        );
        assert_eq!(
            p(r#"{"power":"running"}"#, PowerAction::Status),
            Some(PowerState::On)
        );
        assert_eq!(
            p(r#"{"power":"off"}"#, PowerAction::Status),
            Some(PowerState::Off)
        );
        assert_eq!(
            p(r#"{"power":true}"#, PowerAction::Stop),
            Some(PowerState::Off)
        );
        assert_eq!(
            p(r#"{"power":true}"#, PowerAction::Start),
            Some(PowerState::On)
        );
        assert!(matches!(
            p(r#"{"power":false}"#, PowerAction::Start),
            Some(PowerState::Unknown(_))
        ));
        assert_eq!(p("<html>", PowerAction::Status), None);
        assert_eq!(p(r#"{"x":1}"#, PowerAction::Status), None);
    }
}
