//! The client's IP address: the socket peer, unless the peer is a trusted proxy, in which case
//! `X-Forwarded-For` is read right to left through trusted proxies: the first entry that is not
//! a trusted proxy is the client. An entry that is not an address ends the chain at the last
//! trusted hop (a client cannot choose its address by appending garbage before the proxy's own
//! entry). A client-sent `X-Forwarded-For` from an untrusted peer is ignored, so it cannot dodge
//! per-IP limits.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;

use crate::config::{IpNet, canonical_ip};
use crate::state::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ci| ci.0.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        Ok(ClientIp(resolve(
            peer,
            &parts.headers,
            &state.config.trusted_proxies,
        )))
    }
}

pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = canonical_ip(peer);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    // Every entry of every header, in order; a value that is not text is one unreadable entry.
    let entries: Vec<Option<&str>> = headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| match v.to_str() {
            Ok(text) => text.split(',').map(|s| Some(s.trim())).collect::<Vec<_>>(),
            Err(_) => vec![None],
        })
        .collect();
    let mut last_trusted = peer;
    for entry in entries.iter().rev() {
        match entry
            .and_then(|s| s.parse::<IpAddr>().ok())
            .map(canonical_ip)
        {
            Some(ip) if is_trusted(ip) => last_trusted = ip,
            Some(ip) => return ip,
            None => return last_trusted,
        }
    }
    last_trusted
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn check(peer: &str, xff: Option<&str>, trusted: &[&str], expected: &str) {
        let mut headers = HeaderMap::new();
        if let Some(xff) = xff {
            headers.insert("x-forwarded-for", HeaderValue::from_str(xff).unwrap());
        }
        let trusted: Vec<IpNet> = trusted.iter().map(|t| t.parse().unwrap()).collect();
        assert_eq!(
            resolve(peer.parse().unwrap(), &headers, &trusted),
            expected.parse::<IpAddr>().unwrap(),
            "peer {peer} xff {xff:?} trusted {trusted:?}"
        );
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        check("203.0.113.9", Some("1.2.3.4"), &[], "203.0.113.9");
        check(
            "203.0.113.9",
            Some("1.2.3.4"),
            &["10.0.0.0/8"],
            "203.0.113.9",
        );
        check("10.0.0.2", Some("1.2.3.4"), &["10.0.0.0/8"], "1.2.3.4");
        // The client prepends a spoofed hop; the proxy appends the real one.
        check(
            "10.0.0.2",
            Some("6.6.6.6, 1.2.3.4"),
            &["10.0.0.0/8"],
            "1.2.3.4",
        );
        // Chains of trusted proxies are skipped from the right.
        check(
            "10.0.0.2",
            Some("1.2.3.4, 10.0.0.7"),
            &["10.0.0.0/8"],
            "1.2.3.4",
        );
        check("10.0.0.2", None, &["10.0.0.0/8"], "10.0.0.2");
        check("10.0.0.2", Some("garbage"), &["10.0.0.0/8"], "10.0.0.2");
        // Garbage ends the chain where it stands: the client cannot choose its address by
        // appending something unparsable before the proxy's own entry.
        check(
            "10.0.0.2",
            Some("9.9.9.9, garbage, 1.2.3.4"),
            &["10.0.0.0/8"],
            "1.2.3.4",
        );
        check(
            "10.0.0.2",
            Some("9.9.9.9, garbage"),
            &["10.0.0.0/8"],
            "10.0.0.2",
        );
        check(
            "10.0.0.2",
            Some("9.9.9.9, [::1]:80, 10.0.0.7"),
            &["10.0.0.0/8"],
            "10.0.0.7",
        );
        check("10.0.0.2", Some("9.9.9.9,,"), &["10.0.0.0/8"], "10.0.0.2");
        // All hops trusted: the left-most.
        check(
            "10.0.0.2",
            Some("10.0.0.9, 10.0.0.7"),
            &["10.0.0.0/8"],
            "10.0.0.9",
        );
        check(
            "::ffff:10.0.0.2",
            Some("1.2.3.4"),
            &["10.0.0.0/8"],
            "1.2.3.4",
        );
    }
}
