//! Client addresses: CIDR matching and `X-Forwarded-For` behind trusted proxies.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;

/// Most `X-Forwarded-For` hops looked at; a longer chain is not a real one.
const MAX_HOPS: usize = 32;

/// An IP network written as an address (`10.1.2.3`, `::1`) or a CIDR (`10.0.0.0/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `addr` or `addr/prefix`; `None` if malformed or the prefix is too long.
    pub fn parse(s: &str) -> Option<IpNet> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().ok()?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(IpNet { addr, prefix })
    }

    /// Whether `ip` (IPv4-mapped IPv6 counts as IPv4) lies in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(
                u128::from(net.to_bits()),
                u128::from(ip.to_bits()),
                self.prefix,
                32,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(net.to_bits(), ip.to_bits(), self.prefix, 128)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, prefix: u8, bits: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = u32::from(bits - prefix.min(bits));
    (a >> shift) == (b >> shift)
}

/// Parses a list of IPs/CIDRs, skipping bad entries (validation reports them).
pub(crate) fn parse_nets(list: &[String]) -> Vec<IpNet> {
    list.iter().filter_map(|s| IpNet::parse(s)).collect()
}

fn trusted(nets: &[IpNet], ip: IpAddr) -> bool {
    nets.iter().any(|n| n.contains(ip))
}

/// One `X-Forwarded-For` element: `1.2.3.4`, `1.2.3.4:5678`, `::1` or `[::1]:80`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sa) = hop.parse::<SocketAddr>() {
        return Some(sa.ip().to_canonical());
    }
    hop.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the
/// rightmost `X-Forwarded-For` hop that is not itself a trusted proxy.
///
/// Walking from the right means a client cannot choose its address by sending
/// its own `X-Forwarded-For`: only entries appended by trusted proxies count.
/// An unparsable hop stops the walk at the last address a trusted proxy vouched for.
pub fn client_ip(headers: &HeaderMap, peer: SocketAddr, trusted_proxies: &[IpNet]) -> IpAddr {
    let peer = peer.ip().to_canonical();
    if !trusted(trusted_proxies, peer) {
        return peer;
    }
    let mut hops = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(value) = value.to_str() else {
            return peer;
        };
        hops.extend(value.split(',').map(str::trim).filter(|h| !h.is_empty()));
    }
    let mut client = peer;
    for hop in hops.iter().rev().take(MAX_HOPS) {
        let Some(ip) = parse_hop(hop) else {
            return client;
        };
        client = ip;
        if !trusted(trusted_proxies, ip) {
            return ip;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().filter_map(|s| IpNet::parse(s)).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test IP")
    }

    fn peer(s: &str) -> SocketAddr {
        SocketAddr::new(ip(s), 40000)
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                "x-forwarded-for",
                HeaderValue::from_str(v).expect("test header"),
            );
        }
        h
    }

    #[test]
    fn cidr_parse_and_contains() {
        let n = IpNet::parse("10.0.0.0/8").expect("cidr");
        assert!(n.contains(ip("10.200.1.1")));
        assert!(!n.contains(ip("11.0.0.1")));
        assert!(
            n.contains(ip("::ffff:10.1.2.3")),
            "mapped IPv4 counts as IPv4"
        );
        assert!(!n.contains(ip("::1")));
        let one = IpNet::parse("192.0.2.7").expect("ip");
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        let v6 = IpNet::parse("fd00::/8").expect("v6");
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        assert!(
            IpNet::parse("0.0.0.0/0")
                .expect("any")
                .contains(ip("8.8.8.8"))
        );
        for bad in ["", "10.0.0.0/33", "::/129", "host", "10.0.0.0/x", "1.2.3"] {
            assert!(IpNet::parse(bad).is_none(), "{bad}");
        }
    }

    /// The client of a request from `from` with the X-Forwarded-For headers `hops`, behind the
    /// `trusted` proxies.
    fn client(trusted: &[&str], hops: &[&str], from: &str) -> IpAddr {
        client_ip(&xff(hops), peer(from), &nets(trusted))
    }

    #[test]
    fn untrusted_peer_ignores_forwarded_for() {
        let got = client(&["127.0.0.1"], &["10.0.0.9"], "192.0.2.1");
        assert_eq!(got, ip("192.0.2.1"));
    }

    #[test]
    fn trusted_peer_takes_rightmost_untrusted_hop() {
        let t = ["127.0.0.1", "10.9.0.0/16"];
        // client spoofs a leading entry; haproxy (10.9.0.2) appended the real client.
        let got = client(&t, &["6.6.6.6, 192.0.2.50, 10.9.0.2"], "127.0.0.1");
        assert_eq!(got, ip("192.0.2.50"));
        // several headers are one list, in order
        let got = client(&t, &["6.6.6.6", "192.0.2.50"], "127.0.0.1");
        assert_eq!(got, ip("192.0.2.50"));
    }

    #[test]
    fn trusted_peer_without_header_is_the_client() {
        assert_eq!(client(&["127.0.0.1"], &[], "127.0.0.1"), ip("127.0.0.1"));
    }

    #[test]
    fn garbage_hop_stops_at_last_trusted_address() {
        let got = client(
            &["127.0.0.1", "10.9.0.2"],
            &["192.0.2.50, junk, 10.9.0.2"],
            "127.0.0.1",
        );
        assert_eq!(got, ip("10.9.0.2"));
    }

    #[test]
    fn hop_forms_and_mapped_peer() {
        let t = ["127.0.0.1", "::1"];
        assert_eq!(client(&t, &["192.0.2.5:1234"], "::1"), ip("192.0.2.5"));
        assert_eq!(client(&t, &["[2001:db8::5]:80"], "::1"), ip("2001:db8::5"));
        let got = client(&t, &["192.0.2.6"], "::ffff:127.0.0.1");
        assert_eq!(got, ip("192.0.2.6"));
    }
}
