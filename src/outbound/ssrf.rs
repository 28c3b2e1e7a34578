//! Where deliveries may go. A tenant chooses the URL, so without care it could make Payrail
//! call into its own network (SSRF). A URL is checked when it is set (scheme, then every
//! address its host resolves to) and again at connect time by the client's resolver, so a name
//! that later resolves elsewhere (DNS rebinding) is refused too. Redirects are never followed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// What configuration allows beyond public `https://` targets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TargetPolicy {
    /// `http://` URLs.
    pub allow_http: bool,
    /// Loopback, private, link-local and other non-public addresses (tests, demos).
    pub allow_private: bool,
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
    } else if ip.segments()[..3] == [0x64, 0xff9b, 1] {
        // Local-use NAT64 (RFC 8215): translated into the operator's own IPv4 network.
        "private"
    } else {
        return None;
    })
}

/// Checks a URL's form against the policy (no network); answers it parsed.
pub fn check_form(raw: &str, policy: TargetPolicy) -> Result<Url, UrlRefused> {
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

fn check_ip(ip: IpAddr, policy: TargetPolicy) -> Result<(), UrlRefused> {
    match forbidden_class(ip) {
        Some(class) if !policy.allow_private => Err(UrlRefused::Address(class)),
        _ => Ok(()),
    }
}

/// Checks the URL's form, then every address its host resolves to now.
pub async fn check(raw: &str, policy: TargetPolicy) -> Result<Url, UrlRefused> {
    let url = check_form(raw, policy)?;
    if let Some(Host::Domain(name)) = url.host() {
        let port = url.port_or_known_default().unwrap_or(443);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name, port))
            .await
            .map_err(|_| UrlRefused::Unresolved)?
            .collect();
        if addrs.is_empty() {
            return Err(UrlRefused::Unresolved);
        }
        for addr in addrs {
            check_ip(addr.ip(), policy)?;
        }
    }
    Ok(url)
}

/// The delivery client's resolver: the system's, minus every address the policy refuses, so
/// a connection can only go where [`check`] would have allowed at that moment.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver(pub TargetPolicy);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| policy.allow_private || forbidden_class(a.ip()).is_none())
                .collect();
            if found.is_empty() {
                let refused: Box<dyn std::error::Error + Send + Sync> = Box::new(NoAllowedAddress);
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
        ] {
            assert_eq!(forbidden_class(ip.parse().unwrap()), Some(class), "{ip}");
        }
        assert_eq!(forbidden_class("93.184.216.34".parse().unwrap()), None);
        assert_eq!(forbidden_class("2606:4700::1".parse().unwrap()), None);
        // Public IPv4 behind NAT64 is public.
        assert_eq!(forbidden_class("64:ff9b::5db8:d822".parse().unwrap()), None);
    }

    #[test]
    fn forms_are_checked_before_any_lookup() {
        assert_eq!(check_form("ftp://x.test/", STRICT), Err(UrlRefused::Scheme));
        assert_eq!(
            check_form("http://x.test/", STRICT),
            Err(UrlRefused::Scheme)
        );
        assert_eq!(check_form("not a url", STRICT), Err(UrlRefused::Malformed));
        assert_eq!(
            check_form("https://u:p@x.test/", STRICT),
            Err(UrlRefused::Credentials)
        );
        assert_eq!(
            check_form("https://[::1]/", STRICT),
            Err(UrlRefused::Address("loopback"))
        );
        assert!(check_form("https://x.test/hook", STRICT).is_ok());
        let open = TargetPolicy {
            allow_http: true,
            allow_private: true,
        };
        assert!(check_form("http://127.0.0.1:9/", open).is_ok());
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused() {
        assert_eq!(
            check("https://localhost/hook", STRICT).await,
            Err(UrlRefused::Address("loopback"))
        );
    }
}
