//! Power actions for the warm pool: start and stop a host that exists, and read its
//! power state. Foreman: `PUT /api/hosts/:id/power`; command: `start`/`stop`/`status`.

use serde::{Deserialize, Serialize};

use super::{Lifecycle, LifecycleError, validate_name};

/// A power action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerAction {
    /// Power on.
    Start,
    /// Power off.
    Stop,
    /// Read the power state.
    Status,
}

impl PowerAction {
    /// The `power_action` value (and the command's subcommand).
    pub fn as_str(self) -> &'static str {
        match self {
            PowerAction::Start => "start",
            PowerAction::Stop => "stop",
            PowerAction::Status => "status",
        }
    }

    /// The state the action brings the host to (`None` for `Status`, which only reads it).
    pub fn target(self) -> Option<PowerState> {
        match self {
            PowerAction::Start => Some(PowerState::On),
            PowerAction::Stop => Some(PowerState::Off),
            PowerAction::Status => None,
        }
    }
}

/// A host's power state as the lifecycle manager reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerState {
    /// Running.
    On,
    /// Powered off.
    Off,
    /// Anything else the manager said (suspended, unknown, ...).
    Unknown(String),
}

impl PowerState {
    /// Reads a state word: compute resources name the states differently (libvirt `running`
    /// / `shutoff`, VMware `poweredOn` / `poweredOff`, Foreman's own `on` / `off`).
    pub fn parse(text: &str) -> PowerState {
        let t = text.trim().to_ascii_lowercase();
        match t.as_str() {
            "on" | "running" | "poweredon" | "up" | "active" | "started" => PowerState::On,
            "off" | "stopped" | "poweredoff" | "shutoff" | "shut off" | "down" | "shutdown" => {
                PowerState::Off
            }
            _ => PowerState::Unknown(super::bounded(&t)),
        }
    }

    /// `on`, `off`, or the word reported.
    pub fn as_str(&self) -> &str {
        match self {
            PowerState::On => "on",
            PowerState::Off => "off",
            PowerState::Unknown(s) => s,
        }
    }
}

impl Lifecycle {
    /// Powers host `name` on and confirms it is on (Foreman: `status` after `start`).
    pub async fn start(&self, name: &str) -> Result<(), LifecycleError> {
        validate_name(name)?;
        match self {
            Lifecycle::Foreman(c) => c.power_confirmed(name, PowerAction::Start).await.map(drop),
            Lifecycle::Command(c) => c.power(name, PowerAction::Start).await.map(drop),
        }
    }

    /// Powers host `name` off and confirms it is off.
    pub async fn stop(&self, name: &str) -> Result<(), LifecycleError> {
        validate_name(name)?;
        match self {
            Lifecycle::Foreman(c) => c.power_confirmed(name, PowerAction::Stop).await.map(drop),
            Lifecycle::Command(c) => c.power(name, PowerAction::Stop).await.map(drop),
        }
    }

    /// The power state of host `name` (reconciliation learns stopped hosts with it).
    pub async fn power_status(&self, name: &str) -> Result<PowerState, LifecycleError> {
        validate_name(name)?;
        match self {
            Lifecycle::Foreman(c) => c.power(name, PowerAction::Status).await,
            Lifecycle::Command(c) => c.power(name, PowerAction::Status).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_words() {
        assert_eq!(PowerState::parse("poweredOn"), PowerState::On);
        assert_eq!(PowerState::parse(" shutoff "), PowerState::Off);
        assert_eq!(
            PowerState::parse("suspended"),
            PowerState::Unknown("suspended".into())
        );
    }
}
