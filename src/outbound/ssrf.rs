//! Where deliveries may go. A tenant chooses the URL, so without care it could make Payrail
//! call into its own network (SSRF). A URL is checked when it is set (scheme, then every
//! address its host resolves to) and again at connect time by the client's resolver, so a name
//! that later resolves elsewhere (DNS rebinding) is refused too. Redirects are never followed.
//!
//! Names are looked up by the system's resolver, or only by the nameservers configuration
//! names ([`DnsServers`]). Either way each check and each connection is a lookup of its own:
//! nothing here keeps an answer, whatever its TTL, so what is checked is what the name
//! resolves to at that moment.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Resolver, TokioResolver};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use url::{Host, Url};

/// What configuration allows beyond public `https://` targets, and where target names are
/// looked up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetPolicy {
    /// `http://` URLs.
    pub allow_http: bool,
    /// Loopback, private, link-local and other non-public addresses (tests, demos).
    pub allow_private: bool,
    /// The nameservers that say what a target's name resolves to.
    pub dns_servers: DnsServers,
}

/// Why a URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefused {
    #[error("not a valid absolute URL")]
    Malformed,
    #[error("the URL must use https")]
    Scheme,
    #[error("the URL must not carry credentials")]
    Credentials,
    #[error("the host does not resolve")]
    Unresolved,
    #[error("the host resolves to a {0} address, which is not allowed")]
    Address(&'static str),
}

/// The guarded resolver found no address the policy allows for a host: the connection is
/// refused before it is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the host resolves to no allowed address")]
pub struct NoAllowedAddress;

/// The class of an address that may not be a target, if it is one.
pub fn forbidden_class(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_class(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => v4_class(v4),
            None => v6_class(v6),
        },
    }
}

/// The IPv4 address an IPv6 address stands for, where the network may take it there: mapped
/// (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`) and NAT64 (`64:ff9b::a.b.c.d`, which a
/// NAT64 gateway translates into a connection to `a.b.c.d`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let [a, b, c, d] = ip.octets()[12..] else {
        return None;
    };
    let v4 = Ipv4Addr::new(a, b, c, d);
    match s[..6] {
        // `::` and `::1` are themselves, not 0.0.0.0 and 0.0.0.1.
        [0, 0, 0, 0, 0, 0] if !ip.is_unspecified() && !ip.is_loopback() => Some(v4),
        [0x64, 0xff9b, 0, 0, 0, 0] => Some(v4),
        _ => None,
    }
}

fn v4_class(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(if ip.is_loopback() {
        "loopback"
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
        // 100.64.0.0/10: carrier-grade NAT, private in practice.
        "private"
    } else if ip.is_link_local() {
        // 169.254.0.0/16 holds the cloud metadata services (169.254.169.254).
        if ip == Ipv4Addr::new(169, 254, 169, 254) {
            "metadata"
        } else {
            "link-local"
        }
    } else if ip.is_multicast() {
        "multicast"
    } else if ip.is_unspecified() || ip.is_broadcast() || a == 0 || a >= 240 {
        "reserved"
    } else if matches!(
        ip.octets(),
        [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _]
    ) {
        // TEST-NET-1, -2 and -3 (RFC 5737): examples, never a real receiver.
        "documentation"
    } else if a == 198 && (b & 0xfe) == 18 {
        // 198.18.0.0/15 (RFC 2544): network benchmarking, often routed inside a lab or a VPC.
        "benchmarking"
    } else if matches!(ip.octets(), [192, 0, 0, _]) {
        // IETF protocol assignments (RFC 6890).
        "reserved"
    } else {
        return None;
    })
}

fn v6_class(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    Some(if ip.is_loopback() {
        "loopback"
    } else if ip.is_unspecified() {
        "reserved"
    } else if ip.is_multicast() {
        "multicast"
    } else if first & 0xffc0 == 0xfe80 {
        "link-local"
    } else if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        "metadata"
    } else if first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfec0 {
        // Unique local, and the site-local range it replaced.
        "private"
    } else if ip.segments()[..2] == [0x2001, 0xdb8] {
        // RFC 3849: examples, never a real receiver.
        "documentation"
    } else if ip.segments()[..3] == [0x64, 0xff9b, 1] {
        // Local-use NAT64 (RFC 8215): translated into the operator's own IPv4 network.
        "private"
    } else {
        return None;
    })
}

/// Checks a URL's form against the policy (no network); answers it parsed.
pub fn check_form(raw: &str, policy: &TargetPolicy) -> Result<Url, UrlRefused> {
    let url = Url::parse(raw).map_err(|_| UrlRefused::Malformed)?;
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_http => {}
        _ => return Err(UrlRefused::Scheme),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlRefused::Credentials);
    }
    match url.host() {
        None => Err(UrlRefused::Malformed),
        Some(Host::Ipv4(ip)) => check_ip(IpAddr::V4(ip), policy).map(|_| url),
        Some(Host::Ipv6(ip)) => check_ip(IpAddr::V6(ip), policy).map(|_| url),
        Some(Host::Domain(_)) => Ok(url),
    }
}

fn check_ip(ip: IpAddr, policy: &TargetPolicy) -> Result<(), UrlRefused> {
    match forbidden_class(ip) {
        Some(class) if !policy.allow_private => Err(UrlRefused::Address(class)),
        _ => Ok(()),
    }
}

/// The nameservers target names are looked up with: none (the default) means the system's
/// resolver; otherwise these alone, with no fallback to the system's resolver or its hosts
/// file. Written as a comma-separated list of `ip[:port]` (port 53 when left out; IPv6 in
/// brackets when a port follows: `[::1]:5353`), or in TOML as a list of such strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsServers(Vec<SocketAddr>);

/// A nameserver entry that is not an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a nameserver address: expected an IP address, optionally with a port (10.0.0.2, 10.0.0.2:5353, [fd00::2]:5353)")]
pub struct BadDnsServer(String);

impl DnsServers {
    /// The system's resolver.
    pub const SYSTEM: DnsServers = DnsServers(Vec::new());

    fn entry(raw: &str) -> Result<SocketAddr, BadDnsServer> {
        let raw = raw.trim();
        let bad = || BadDnsServer(raw.to_owned());
        let addr = match SocketAddr::from_str(raw) {
            Ok(addr) => addr,
            Err(_) => {
                let bare = raw
                    .strip_prefix('[')
                    .and_then(|r| r.strip_suffix(']'))
                    .unwrap_or(raw);
                SocketAddr::new(IpAddr::from_str(bare).map_err(|_| bad())?, 53)
            }
        };
        if addr.port() == 0 {
            return Err(bad());
        }
        Ok(addr)
    }
}

impl FromStr for DnsServers {
    type Err = BadDnsServer;

    /// A comma-separated list; an empty (or blank) one is the system's resolver.
    fn from_str(raw: &str) -> Result<Self, BadDnsServer> {
        if raw.trim().is_empty() {
            return Ok(Self::SYSTEM);
        }
        raw.split(',')
            .map(Self::entry)
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl<'de> Deserialize<'de> for DnsServers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Servers;

        impl<'de> Visitor<'de> for Servers {
            type Value = DnsServers;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("nameserver addresses, comma-separated or as a list")
            }

            fn visit_str<E: de::Error>(self, raw: &str) -> Result<DnsServers, E> {
                raw.parse().map_err(E::custom)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<DnsServers, A::Error> {
                let mut found = Vec::new();
                while let Some(raw) = seq.next_element::<String>()? {
                    found.push(DnsServers::entry(&raw).map_err(de::Error::custom)?);
                }
                Ok(DnsServers(found))
            }
        }

        deserializer.deserialize_any(Servers)
    }
}

/// A resolver that asks these nameservers only (`localhost` alone it answers itself, with
/// loopback: RFC 6761), and keeps no answer: it is made for one lookup and dropped after it,
/// and its cache is switched off as well, so a TTL, however long, keeps nothing. A and AAAA
/// are asked for together, so that every address is seen.
fn nameservers_only(
    servers: &[SocketAddr],
) -> Result<TokioResolver, hickory_resolver::net::NetError> {
    let name_servers = servers
        .iter()
        .map(|addr| {
            let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                .into_iter()
                .map(|mut c| {
                    c.port = addr.port();
                    c
                })
                .collect();
            NameServerConfig::new(addr.ip(), true, connections)
        })
        .collect();
    let mut builder = Resolver::builder_with_config(
        ResolverConfig::from_name_servers(name_servers),
        TokioRuntimeProvider::default(),
    );
    let options = builder.options_mut();
    options.cache_size = 0;
    options.use_hosts_file = ResolveHosts::Never;
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    builder.build()
}

type LookupError = Box<dyn std::error::Error + Send + Sync>;

/// Every address `host` resolves to now, with `port`.
async fn lookup(
    host: &str,
    port: u16,
    servers: &DnsServers,
) -> Result<Vec<SocketAddr>, LookupError> {
    if servers.0.is_empty() {
        return Ok(tokio::net::lookup_host((host, port)).await?.collect());
    }
    let found = nameservers_only(&servers.0)?.lookup_ip(host).await?;
    Ok(found.iter().map(|ip| SocketAddr::new(ip, port)).collect())
}

/// Checks the URL's form, then every address its host resolves to now.
pub async fn check(raw: &str, policy: TargetPolicy) -> Result<Url, UrlRefused> {
    let url = check_form(raw, &policy)?;
    if let Some(Host::Domain(name)) = url.host() {
        let port = url.port_or_known_default().unwrap_or(443);
        let addrs = lookup(name, port, &policy.dns_servers)
            .await
            .map_err(|_| UrlRefused::Unresolved)?;
        if addrs.is_empty() {
            return Err(UrlRefused::Unresolved);
        }
        for addr in addrs {
            check_ip(addr.ip(), &policy)?;
        }
    }
    Ok(url)
}

/// The delivery client's resolver: the policy's (the system's or the configured nameservers),
/// minus every address the policy refuses, so a connection can only go where [`check`] would
/// have allowed at that moment. Each new connection looks its name up afresh.
#[derive(Debug, Clone)]
pub struct GuardedResolver(pub TargetPolicy);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let found: Vec<SocketAddr> = lookup(name.as_str(), 0, &policy.dns_servers)
                .await?
                .into_iter()
                .filter(|a| policy.allow_private || forbidden_class(a.ip()).is_none())
                .collect();
            if found.is_empty() {
                let refused: LookupError = Box::new(NoAllowedAddress);
                return Err(refused);
            }
            let addrs: Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

/// The resolver as the client takes it.
pub fn resolver(policy: TargetPolicy) -> Arc<GuardedResolver> {
    Arc::new(GuardedResolver(policy))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: TargetPolicy = TargetPolicy {
        allow_http: false,
        allow_private: false,
        dns_servers: DnsServers::SYSTEM,
    };

    #[test]
    fn every_non_public_class_is_refused() {
        for (ip, class) in [
            ("127.0.0.1", "loopback"),
            ("::1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "private"),
            ("fd12::1", "private"),
            ("169.254.1.1", "link-local"),
            ("fe80::1", "link-local"),
            ("169.254.169.254", "metadata"),
            ("fd00:ec2::254", "metadata"),
            ("224.0.0.1", "multicast"),
            ("ff02::1", "multicast"),
            ("0.0.0.0", "reserved"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::127.0.0.1", "loopback"),
            ("::10.0.0.8", "private"),
            ("64:ff9b::127.0.0.1", "loopback"),
            ("64:ff9b::169.254.169.254", "metadata"),
            ("64:ff9b::10.1.2.3", "private"),
            ("64:ff9b:1::a01:203", "private"),
            ("fec0::1", "private"),
            ("::", "reserved"),
            ("192.0.2.10", "documentation"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.255", "documentation"),
            ("2001:db8::1", "documentation"),
            ("::ffff:203.0.113.9", "documentation"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.254", "benchmarking"),
            ("192.0.0.8", "reserved"),
        ] {
            assert_eq!(forbidden_class(ip.parse().unwrap()), Some(class), "{ip}");
        }
        assert_eq!(forbidden_class("93.184.216.34".parse().unwrap()), None);
        assert_eq!(forbidden_class("2606:4700::1".parse().unwrap()), None);
        // The neighbours of the refused ranges are public.
        for ip in [
            "192.0.3.1",
            "198.17.255.255",
            "198.20.0.1",
            "203.0.114.1",
            "2001:db9::1",
        ] {
            assert_eq!(forbidden_class(ip.parse().unwrap()), None, "{ip}");
        }
        // Public IPv4 behind NAT64 is public.
        assert_eq!(forbidden_class("64:ff9b::5db8:d822".parse().unwrap()), None);
    }

    #[test]
    fn forms_are_checked_before_any_lookup() {
        assert_eq!(
            check_form("ftp://x.test/", &STRICT),
            Err(UrlRefused::Scheme)
        );
        assert_eq!(
            check_form("http://x.test/", &STRICT),
            Err(UrlRefused::Scheme)
        );
        assert_eq!(check_form("not a url", &STRICT), Err(UrlRefused::Malformed));
        assert_eq!(
            check_form("https://u:p@x.test/", &STRICT),
            Err(UrlRefused::Credentials)
        );
        assert_eq!(
            check_form("https://[::1]/", &STRICT),
            Err(UrlRefused::Address("loopback"))
        );
        assert!(check_form("https://x.test/hook", &STRICT).is_ok());
        let open = TargetPolicy {
            allow_http: true,
            allow_private: true,
            ..STRICT
        };
        assert!(check_form("http://127.0.0.1:9/", &open).is_ok());
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused() {
        assert_eq!(
            check("https://localhost/hook", STRICT).await,
            Err(UrlRefused::Address("loopback"))
        );
    }

    fn servers(list: &[&str]) -> DnsServers {
        DnsServers(list.iter().map(|a| a.parse().unwrap()).collect())
    }

    #[test]
    fn dns_servers_are_addresses_with_an_optional_port() {
        for (raw, want) in [
            ("", DnsServers::SYSTEM),
            ("  ", DnsServers::SYSTEM),
            ("127.0.0.1:5353", servers(&["127.0.0.1:5353"])),
            ("10.0.0.2", servers(&["10.0.0.2:53"])),
            ("[fd00::2]:5353", servers(&["[fd00::2]:5353"])),
            ("fd00::2", servers(&["[fd00::2]:53"])),
            ("[fd00::2]", servers(&["[fd00::2]:53"])),
            (
                " 10.0.0.2 , 10.0.0.3:5353,[::1]:53 ",
                servers(&["10.0.0.2:53", "10.0.0.3:5353", "[::1]:53"]),
            ),
        ] {
            assert_eq!(raw.parse::<DnsServers>(), Ok(want), "{raw:?}");
        }
    }

    #[test]
    fn a_bad_dns_server_is_named_in_the_error() {
        for (raw, bad) in [
            ("dns.internal", "dns.internal"),
            ("dns.internal:53", "dns.internal:53"),
            ("10.0.0.2:0", "10.0.0.2:0"),
            ("10.0.0.2:65536", "10.0.0.2:65536"),
            ("10.0.0.300", "10.0.0.300"),
            ("::1:5353x", "::1:5353x"),
            ("10.0.0.2;10.0.0.3", "10.0.0.2;10.0.0.3"),
            ("10.0.0.2,", ""),
            ("10.0.0.2,,10.0.0.3", ""),
            ("udp://10.0.0.2", "udp://10.0.0.2"),
        ] {
            let error = raw.parse::<DnsServers>().unwrap_err();
            assert_eq!(error, BadDnsServer(bad.to_owned()), "{raw:?}");
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("{bad:?} is not a nameserver address")),
                "{error}"
            );
        }
    }

    /// The setting as configuration gives it: an environment variable (figment parses its
    /// value first: `[::1]` alone becomes a list) or TOML, and a bad value stops the start-up
    /// with the setting's name and the entry at fault.
    #[test]
    fn dns_servers_from_the_environment_and_toml() {
        use crate::config::Settings;
        use figment::providers::{Format, Serialized, Toml};
        use figment::value::Value;
        use figment::Figment;

        let from_env = |raw: &str| {
            let value: Value = raw.parse().unwrap();
            Figment::from(Serialized::default("outbound.dns_servers", value))
                .extract::<Settings>()
                .map(|s| s.outbound.dns_servers)
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            from_env("127.0.0.1:5353,[::1]:5353").unwrap(),
            servers(&["127.0.0.1:5353", "[::1]:5353"])
        );
        assert_eq!(from_env("10.0.0.2").unwrap(), servers(&["10.0.0.2:53"]));
        assert_eq!(from_env("[::1]").unwrap(), servers(&["[::1]:53"]));
        assert_eq!(from_env("").unwrap(), DnsServers::SYSTEM);
        let error = from_env("127.0.0.1:5353,dns.internal").unwrap_err();
        assert!(
            error.contains("\"dns.internal\" is not a nameserver address")
                && error.contains("outbound.dns_servers"),
            "{error}"
        );
        assert!(from_env("53").is_err());

        let from_toml = |toml: &str| {
            Figment::new()
                .merge(Toml::string(toml))
                .extract::<Settings>()
                .map(|s| s.outbound.dns_servers)
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            from_toml("[outbound]\ndns_servers = [\"10.0.0.2\", \"[fd00::2]:5353\"]").unwrap(),
            servers(&["10.0.0.2:53", "[fd00::2]:5353"])
        );
        assert_eq!(
            from_toml("[outbound]\ndns_servers = \"10.0.0.2:5353\"").unwrap(),
            servers(&["10.0.0.2:5353"])
        );
        assert_eq!(from_toml("").unwrap(), DnsServers::SYSTEM);
        let error = from_toml("[outbound]\ndns_servers = [\"10.0.0.2:0\"]").unwrap_err();
        assert!(
            error.contains("\"10.0.0.2:0\" is not a nameserver address"),
            "{error}"
        );
    }
}
