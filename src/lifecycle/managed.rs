//! The managed set: which hosts the scaler may delete or power off although it did not launch
//! them. A host is inside when the lifecycle manager has it in the hostgroup the scaler creates
//! into (Foreman), or named with a managed prefix, or listed by the command's `list`. Nothing
//! outside is ever sent a delete or a power call, whoever asked ([`Lifecycle::inspect`] is what
//! the one guard in front of those calls asks).

use std::net::IpAddr;

use policy::Membership;
use serde_json::Value;

use super::{Lifecycle, LifecycleError};

/// What the managed set is made of, from the config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagedSet {
    /// Name prefixes: `<prefix>-...` is managed (lower case, without the `-`).
    pub prefixes: Vec<String>,
    /// Foreman: the hostgroup the scaler creates into; `None`: it creates into none, so hosts
    /// without a hostgroup are inside.
    pub hostgroup: Option<Hostgroup>,
}

/// A Foreman hostgroup as `host_parameters` names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hostgroup {
    /// `hostgroup_id`.
    Id(u64),
    /// `hostgroup_name` (or `hostgroup_title`): compared with both of a host's.
    Name(String),
}

impl std::fmt::Display for Hostgroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hostgroup::Id(id) => write!(f, "hostgroup id {id}"),
            Hostgroup::Name(n) => write!(f, "hostgroup {n:?}"),
        }
    }
}

impl ManagedSet {
    /// The set for `prefixes` (empty: `name_prefix`) and Foreman's `host_parameters`.
    pub fn new(prefixes: &[String], name_prefix: &str, host_parameters: &toml::Table) -> Self {
        let mut prefixes: Vec<String> = if prefixes.is_empty() {
            vec![name_prefix.to_string()]
        } else {
            prefixes.to_vec()
        };
        for p in &mut prefixes {
            *p = p.trim().trim_end_matches('-').to_ascii_lowercase();
        }
        prefixes.retain(|p| !p.is_empty());
        prefixes.sort();
        prefixes.dedup();
        let text = |key: &str| host_parameters.get(key).and_then(|v| v.as_str());
        let hostgroup = match host_parameters.get("hostgroup_id") {
            Some(toml::Value::Integer(id)) => u64::try_from(*id).ok().map(Hostgroup::Id),
            Some(toml::Value::String(s)) => s.trim().parse().ok().map(Hostgroup::Id),
            _ => text("hostgroup_title")
                .or_else(|| text("hostgroup_name"))
                .map(|n| Hostgroup::Name(n.trim().to_string())),
        };
        ManagedSet {
            prefixes,
            hostgroup,
        }
    }

    /// Whether `name` (short or qualified) starts with a managed prefix and a `-`.
    pub fn prefixed(&self, name: &str) -> bool {
        let name = name.trim().to_ascii_lowercase();
        self.prefixes.iter().any(|p| {
            name.strip_prefix(p.as_str())
                .is_some_and(|r| r.starts_with('-'))
        })
    }

    fn prefixes_text(&self) -> String {
        let list: Vec<String> = self.prefixes.iter().map(|p| format!("{p}-")).collect();
        list.join(", ")
    }

    /// Whether a Foreman host object is in the hostgroup, with what it says of its own.
    fn hostgroup_of(&self, host: &Value) -> (bool, String) {
        let id = host.get("hostgroup_id").and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        });
        let names: Vec<&str> = ["hostgroup_title", "hostgroup_name"]
            .iter()
            .filter_map(|k| host.get(*k).and_then(Value::as_str))
            .collect();
        let theirs = match (id, names.first()) {
            (None, None) => "no hostgroup".to_string(),
            (Some(id), None) => format!("hostgroup id {id}"),
            (None, Some(n)) => format!("hostgroup {n:?}"),
            (Some(id), Some(n)) => format!("hostgroup {n:?} (id {id})"),
        };
        let inside = match &self.hostgroup {
            None => id.is_none() && names.is_empty(),
            Some(Hostgroup::Id(want)) => id == Some(*want),
            Some(Hostgroup::Name(want)) => names.iter().any(|n| n.eq_ignore_ascii_case(want)),
        };
        (inside, theirs)
    }
}

/// What the lifecycle manager says of one host, for the guard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFacts {
    /// The name to send calls for (a host asked for by address resolves to its name).
    pub name: String,
    /// The lifecycle manager has this host.
    pub found: bool,
    /// It is inside the managed set.
    pub inside: bool,
    /// Its address at the lifecycle manager, when it says.
    pub ip: Option<String>,
    /// With an address to check: whether it is the host's.
    pub address_ok: Option<bool>,
    /// One sentence saying why, for the decision line.
    pub note: String,
}

impl HostFacts {
    /// The ledger's verdict on an adopted host.
    pub fn membership(&self) -> Membership {
        if !self.found {
            Membership::ReportsOnly
        } else if !self.inside {
            Membership::Outside
        } else if self.address_ok == Some(false) {
            Membership::Mismatch
        } else {
            Membership::Managed
        }
    }

    fn absent(name: &str, note: String) -> Self {
        HostFacts {
            name: name.to_string(),
            found: false,
            inside: false,
            ip: None,
            address_ok: None,
            note,
        }
    }
}

impl Lifecycle {
    /// The managed set of this backend.
    pub fn managed_set(&self) -> &ManagedSet {
        match self {
            Lifecycle::Foreman(c) => &c.managed,
            Lifecycle::Command(c) => &c.managed,
        }
    }

    /// Asks the lifecycle manager about `host` (a name, or an address to resolve): does it
    /// exist, is it inside the managed set, and, with `address`, is that the host's address?
    /// Foreman: `GET /api/hosts/:name` (its `ip` and hostgroup); the command backend: `list
    /// <prefix>` for each managed prefix, and `find-ip <address>`.
    pub async fn inspect(
        &self,
        host: &str,
        address: Option<IpAddr>,
    ) -> Result<HostFacts, LifecycleError> {
        let name = if host.parse::<IpAddr>().is_ok() {
            match self.find_by_ip(host).await? {
                Some(name) => name,
                None => {
                    return Ok(HostFacts::absent(
                        host,
                        format!("the lifecycle manager has no host with address {host}"),
                    ));
                }
            }
        } else {
            super::validate_name(host)?;
            host.to_string()
        };
        match self {
            Lifecycle::Foreman(c) => {
                let Some(found) = c.show(&name).await? else {
                    return Ok(HostFacts::absent(
                        &name,
                        format!("Foreman has no host {name}"),
                    ));
                };
                let set = &c.managed;
                let ip = found.get("ip").and_then(Value::as_str).map(str::to_string);
                let (in_group, theirs) = set.hostgroup_of(&found);
                let prefixed = set.prefixed(&name);
                let inside = in_group || prefixed;
                let ours = match &set.hostgroup {
                    Some(g) => g.to_string(),
                    None => "no hostgroup".to_string(),
                };
                let mut note = if inside {
                    format!(
                        "Foreman has {name} in {theirs}{}",
                        if prefixed {
                            ", with a managed prefix"
                        } else {
                            ""
                        }
                    )
                } else {
                    format!(
                        "Foreman has {name} in {theirs}, not the managed {ours}, and its name has no managed prefix ({})",
                        set.prefixes_text()
                    )
                };
                let address_ok = address.map(|a| {
                    ip.as_deref()
                        .and_then(|ip| ip.parse::<IpAddr>().ok())
                        .is_some_and(|ip| ip.to_canonical() == a.to_canonical())
                });
                if address_ok == Some(false) {
                    note = format!(
                        "{note}; its address there is {}, not the caller's {}",
                        ip.as_deref().unwrap_or("unknown"),
                        address.map(|a| a.to_string()).unwrap_or_default()
                    );
                }
                Ok(HostFacts {
                    name,
                    found: true,
                    inside,
                    ip,
                    address_ok,
                    note,
                })
            }
            Lifecycle::Command(c) => {
                let short = |s: &str| s.split('.').next().unwrap_or(s).to_ascii_lowercase();
                let mut listed = false;
                for prefix in &c.managed.prefixes {
                    let names = c.list(prefix).await?;
                    if names.iter().any(|n| short(n) == short(&name)) {
                        listed = true;
                        break;
                    }
                }
                if !listed {
                    let note = format!(
                        "`list {}` does not name {name}",
                        c.managed.prefixes.join("`, `list ")
                    );
                    return Ok(HostFacts::absent(&name, note));
                }
                let mut note = format!("`list` names {name}");
                let address_ok = match address {
                    None => None,
                    Some(a) => {
                        let owner = c.find_by_ip(&a.to_string()).await?;
                        let ok = owner.as_deref().is_some_and(|o| short(o) == short(&name));
                        if !ok {
                            note = format!(
                                "{note}; `find-ip {a}` names {}, not {name}",
                                owner.as_deref().unwrap_or("no host")
                            );
                        }
                        Some(ok)
                    }
                };
                Ok(HostFacts {
                    name,
                    found: true,
                    inside: true,
                    ip: address
                        .filter(|_| address_ok == Some(true))
                        .map(|a| a.to_string()),
                    address_ok,
                    note,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(toml: &str) -> toml::Table {
        toml.parse().expect("toml")
    }

    #[test]
    fn the_set_comes_from_the_prefixes_and_the_hostgroup_created_into() {
        let s = ManagedSet::new(&[], "vsg", &params("hostgroup_id = 3"));
        assert_eq!(s.prefixes, ["vsg"]);
        assert_eq!(s.hostgroup, Some(Hostgroup::Id(3)));
        assert!(s.prefixed("vsg-abc") && s.prefixed("VSG-abc.example.org"));
        assert!(!s.prefixed("vsgx-abc") && !s.prefixed("vsg") && !s.prefixed("prod-db"));
        assert!(s.hostgroup_of(&json!({"hostgroup_id": 3})).0);
        assert!(s.hostgroup_of(&json!({"hostgroup_id": "3"})).0);
        let (inside, theirs) = s.hostgroup_of(&json!({"hostgroup_id": 7, "hostgroup_title": "db"}));
        assert!(!inside);
        assert_eq!(theirs, "hostgroup \"db\" (id 7)");
        assert!(!s.hostgroup_of(&json!({})).0);

        let named = ManagedSet::new(
            &["gw-".into(), "VSG".into()],
            "vsg",
            &params("hostgroup_title = \"Jitsi/SIP gateways\""),
        );
        assert_eq!(named.prefixes, ["gw", "vsg"]);
        assert!(named.prefixed("gw-legacy"));
        assert!(
            named
                .hostgroup_of(&json!({"hostgroup_title": "jitsi/sip gateways"}))
                .0
        );
        assert!(
            !named
                .hostgroup_of(&json!({"hostgroup_title": "Jitsi/other"}))
                .0
        );

        // Creating into no hostgroup: hosts without one are inside, hosts with one are not.
        let none = ManagedSet::new(&[], "vsg", &toml::Table::new());
        assert_eq!(none.hostgroup, None);
        assert!(
            none.hostgroup_of(&json!({"name": "gw-1", "hostgroup_id": null}))
                .0
        );
        assert!(!none.hostgroup_of(&json!({"hostgroup_id": 7})).0);
    }

    #[test]
    fn facts_give_the_ledger_verdict() {
        let f = |found, inside, address_ok| HostFacts {
            name: "h".into(),
            found,
            inside,
            ip: None,
            address_ok,
            note: String::new(),
        };
        assert_eq!(f(false, false, None).membership(), Membership::ReportsOnly);
        assert_eq!(f(true, false, Some(true)).membership(), Membership::Outside);
        assert_eq!(
            f(true, true, Some(false)).membership(),
            Membership::Mismatch
        );
        assert_eq!(f(true, true, Some(true)).membership(), Membership::Managed);
        assert_eq!(f(true, true, None).membership(), Membership::Managed);
    }
}
