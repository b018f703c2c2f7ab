//! The one host-name rule, shared by the API, the agent, the lifecycle backends and
//! reconciliation, and the names the scaler gives its hosts.

use policy::Ledger;
use rand::Rng;

/// Whether `host` is a name every part of the program accepts: an IP address, or a DNS name
/// (FQDN or short; an optional final dot) of labels of ASCII letters, digits and `-`, none
/// empty, none longer than 63, none starting or ending with `-`. No `_`: a lifecycle manager
/// refuses it, so a host with such a name could be approved but never deleted.
pub fn is_valid(host: &str) -> bool {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// A fresh host name `<prefix>-<12 hex digits>` not used in the ledger.
pub fn new_host_name(prefix: &str, ledger: &Ledger) -> String {
    let mut rng = rand::rng();
    loop {
        let name = format!("{prefix}-{:012x}", rng.random::<u64>() & 0xffff_ffff_ffff);
        if ledger.get(&name).is_none() {
            return name;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rule() {
        for ok in [
            "vsg-1",
            "vsg-1.example.org",
            "vsg-1.example.org.",
            "10.0.0.1",
            "::1",
            "ip-10-0-0-1",
        ] {
            assert!(is_valid(ok), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "-x",
            "x-",
            "x..y",
            "a/b",
            "gw_1",
            &"x".repeat(300),
            &format!("{}.org", "x".repeat(64)),
            "ä",
        ] {
            assert!(!is_valid(bad), "{bad}");
        }
    }

    #[test]
    fn new_names_are_valid_and_unused() {
        let mut ledger = Ledger::new();
        for _ in 0..50 {
            let n = new_host_name("vsg", &ledger);
            assert!(is_valid(&n) && n.starts_with("vsg-"), "{n}");
            ledger.record_launch(&n, policy::Origin::Scaler, 1);
        }
        assert_eq!(ledger.instances().count(), 50);
    }
}
