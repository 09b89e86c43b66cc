//! Who the client is when a reverse proxy stands in front of the server.
//!
//! The per-address limits key on the client's address. Behind a proxy every connection comes
//! from the proxy, so the client's address must be read from `X-Forwarded-For` — but only when
//! the connection really comes from a proxy we trust (`TRUSTED_PROXIES`): from anyone else the
//! header is ignored, or anybody could pick their own address and dodge every limit.
//!
//! Each proxy appends the address it received the request from, so the header reads
//! `client, proxy1, proxy2` and only its right end is trustworthy. Read from the right, the
//! first address that is not one of our proxies is the client; everything to its left was
//! written by the client itself and is worthless. A malformed entry stops the walk at the last
//! trusted hop: the request then counts as coming from that proxy (never from an address the
//! client chose).

use http::HeaderMap;
use ipnet::IpNet;
use std::net::IpAddr;

/// The proxies whose `X-Forwarded-For` is believed; none by default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Addresses or CIDR blocks separated by commas or spaces: `127.0.0.1, 10.0.0.0/8 ::1`.
    /// An empty text trusts nobody.
    pub fn parse(text: &str) -> Result<Self, String> {
        text.split(|c: char| c == ',' || c.is_whitespace())
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .map(|net| net.trunc())
                    .or_else(|_| {
                        entry
                            .parse::<IpAddr>()
                            .map(|ip| IpNet::from(ip.to_canonical()))
                    })
                    .map_err(|_| format!("{entry:?} is not an address or a CIDR block"))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: the peer's, unless the peer is a trusted proxy, in which case the
    /// right-most address of `X-Forwarded-For` that is not a trusted proxy.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        // Several header lines are one list, in order.
        let mut entries = headers
            .get_all("x-forwarded-for")
            .iter()
            .flat_map(|line| match line.to_str() {
                Ok(text) => text.split(',').map(forwarded_ip).collect::<Vec<_>>(),
                Err(_) => vec![None],
            })
            .collect::<Vec<_>>();
        let mut client = peer;
        while let Some(entry) = entries.pop() {
            let Some(ip) = entry else { break };
            client = ip;
            if !self.contains(ip) {
                break;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, perhaps with a port (`1.2.3.4:5`, `[::1]:5`).
fn forwarded_ip(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<std::net::SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn forwarded(lines: &[&[u8]]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append("x-forwarded-for", HeaderValue::from_bytes(line).unwrap());
        }
        headers
    }

    fn proxies() -> TrustedProxies {
        TrustedProxies::parse("127.0.0.1, 10.0.0.0/8 ::1").unwrap()
    }

    #[test]
    fn parses_addresses_and_blocks() {
        let p = proxies();
        assert!(p.contains(ip("127.0.0.1")));
        assert!(p.contains(ip("10.200.3.4")));
        assert!(p.contains(ip("::1")));
        assert!(
            p.contains(ip("::ffff:10.1.1.1")),
            "IPv4-mapped IPv6 is IPv4"
        );
        assert!(!p.contains(ip("127.0.0.2")));
        assert!(!p.contains(ip("192.168.1.1")));
        assert!(TrustedProxies::parse("").unwrap().is_empty());
        assert!(TrustedProxies::parse(" , ").unwrap().is_empty());
        // A block written with host bits is the block.
        assert!(TrustedProxies::parse("10.1.2.3/8")
            .unwrap()
            .contains(ip("10.9.9.9")));
        for bad in ["localhost", "10.0.0.0/33", "1.2.3", "::1/129", "*"] {
            let err = TrustedProxies::parse(bad).unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn nobody_trusted_means_the_header_is_ignored() {
        let headers = forwarded(&[b"203.0.113.9"]);
        let none = TrustedProxies::default();
        assert_eq!(none.client(ip("127.0.0.1"), &headers), ip("127.0.0.1"));
    }

    #[test]
    fn a_spoofed_header_from_an_untrusted_peer_is_ignored() {
        let headers = forwarded(&[b"203.0.113.9"]);
        assert_eq!(
            proxies().client(ip("198.51.100.7"), &headers),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn through_one_proxy_the_client_is_the_last_entry() {
        let headers = forwarded(&[b"203.0.113.9"]);
        assert_eq!(
            proxies().client(ip("127.0.0.1"), &headers),
            ip("203.0.113.9")
        );
        // No header at all: the proxy itself.
        assert_eq!(
            proxies().client(ip("127.0.0.1"), &HeaderMap::new()),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn what_the_client_wrote_itself_is_skipped() {
        // The client sent "X-Forwarded-For: 1.1.1.1"; our proxy appended its real address.
        let headers = forwarded(&[b"1.1.1.1, 203.0.113.9"]);
        assert_eq!(
            proxies().client(ip("127.0.0.1"), &headers),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn a_chain_of_trusted_proxies_is_walked_from_the_right() {
        let headers = forwarded(&[b"1.1.1.1, 203.0.113.9, 10.0.0.5", b"10.0.0.6"]);
        assert_eq!(
            proxies().client(ip("127.0.0.1"), &headers),
            ip("203.0.113.9")
        );
        // Every hop trusted: the furthest one.
        let headers = forwarded(&[b"10.0.0.4, 10.0.0.5"]);
        assert_eq!(proxies().client(ip("::1"), &headers), ip("10.0.0.4"));
    }

    #[test]
    fn ports_and_ipv6_are_understood() {
        let headers = forwarded(&[b"[2001:db8::1]:4711, 203.0.113.9:80"]);
        assert_eq!(
            proxies().client(ip("::ffff:127.0.0.1"), &headers),
            ip("203.0.113.9")
        );
        let headers = forwarded(&[b" 2001:db8::1 "]);
        assert_eq!(proxies().client(ip("::1"), &headers), ip("2001:db8::1"));
    }

    #[test]
    fn malformed_entries_stop_at_the_last_trusted_hop() {
        let cases: [(&[&[u8]], &str); 4] = [
            (&[b"203.0.113.9, not-an-ip, 10.0.0.5"], "10.0.0.5"),
            (&[b"203.0.113.9, , 10.0.0.5"], "10.0.0.5"),
            (&[b"203.0.113.9", b"\xff\xfe", b"10.0.0.5"], "10.0.0.5"),
            (&[b"203.0.113.9, unknown"], "127.0.0.1"),
        ];
        for (lines, expected) in cases {
            let headers = forwarded(lines);
            assert_eq!(
                proxies().client(ip("127.0.0.1"), &headers),
                ip(expected),
                "{lines:?}"
            );
        }
    }
}
