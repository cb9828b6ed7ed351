//! The one guarded HTTP client for URLs the gateway did not choose itself: OAuth client ID
//! metadata documents, and everything it reaches for a backend's OAuth credential (protected-
//! resource and authorization-server metadata, registration, authorization and token endpoints).
//!
//! Every request is checked on the address it then uses (the host is resolved here and the
//! connection pinned to that address, so DNS cannot swap it between check and use):
//! - public addresses only (no loopback, private, link-local, shared, documentation, …) unless
//!   the policy allows private ones;
//! - `https` only unless the policy allows plain `http`;
//! - redirects followed only for `GET`, only to the same origin, at most three;
//! - no proxy (a proxy would resolve the host itself, around the check);
//! - a time limit for the whole exchange and a size limit for the body.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, LOCATION};

/// What a guarded request may reach, and how much it may cost.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub allow_private: bool,
    pub allow_http: bool,
    pub timeout: Duration,
    pub max_bytes: usize,
    /// With `allow_private`: private addresses only for this origin (`origin_key`), not for
    /// hosts a response names (the security scanner's opt-in covers its target only).
    pub private_origin: Option<u64>,
}

/// A compact key of a URL's origin (scheme, host, port) for `Policy::private_origin`.
pub fn origin_key(url: &url::Url) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    url.origin().ascii_serialization().hash(&mut h);
    h.finish()
}

/// Why a guarded request failed; the message is safe to show to an admin (it never carries a
/// token, and names hosts only).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FetchError(pub String);

fn fail(message: impl Into<String>) -> FetchError {
    FetchError(message.into())
}

/// A response read whole (within the policy's size limit).
#[derive(Debug)]
pub struct Fetched {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The URL that answered (after same-origin redirects).
    pub url: url::Url,
}

impl Fetched {
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, FetchError> {
        serde_json::from_slice(&self.body).map_err(|_| {
            fail(format!(
                "{} did not answer with the expected JSON",
                host_of(&self.url)
            ))
        })
    }
}

pub fn host_of(url: &url::Url) -> String {
    url.host_str().unwrap_or("?").to_string()
}

/// Whether an address is one a guarded request must not reach unless allowed (loopback,
/// private, link-local, shared, multicast, documentation, unspecified, …).
pub fn is_forbidden_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_unspecified()
                || v4.is_multicast()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64/10 shared address space
                || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0/24 protocol assignments
                || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18/15 benchmarking
                || o[0] >= 240 // reserved
        }
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00 // unique local
                || (seg[0] & 0xffc0) == 0xfe80 // link local
                || (seg[0] == 0x2001 && seg[1] == 0xdb8) // documentation
                || (seg[0] & 0xffc0) == 0xfec0 // site local (deprecated)
                || (seg[0] == 0x2001 && seg[1] == 0) // Teredo
                || (seg[0] == 0x64 && seg[1] == 0xff9b && seg[2] == 1) // local-use NAT64
                || v6.to_ipv4_mapped().is_some_and(|v4| is_forbidden_address(IpAddr::V4(v4)))
                // IPv4-compatible (::a.b.c.d, deprecated).
                || (seg[..6] == [0, 0, 0, 0, 0, 0]
                    && is_forbidden_address(IpAddr::V4(embedded(seg[6], seg[7]))))
                // IPv4 embedded by NAT64 (64:ff9b::/96) and 6to4 (2002::/16).
                || (seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6] == [0, 0, 0, 0]
                    && is_forbidden_address(IpAddr::V4(embedded(seg[6], seg[7]))))
                || (seg[0] == 0x2002 && is_forbidden_address(IpAddr::V4(embedded(seg[1], seg[2]))))
        }
    }
}

/// Addresses never reached, even where private ones are allowed: link-local (cloud metadata
/// services live there, and at AWS's IPv6 `fd00:ec2::254`; Alibaba's at 100.100.100.200 and
/// Azure's WireServer at 168.63.129.16), unspecified, multicast and broadcast, also as IPv4
/// embedded in IPv6 (mapped, compatible, NAT64, 6to4). MCP backends are never reached there
/// either (`mcp::backend::GuardedResolver`).
pub fn is_never_allowed(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                // Alibaba Cloud's metadata service and Azure's WireServer, outside link-local.
                || v4.octets() == [100, 100, 100, 200]
                || v4.octets() == [168, 63, 129, 16]
        }
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            let v4 = |hi: u16, lo: u16| is_never_allowed(IpAddr::V4(embedded(hi, lo)));
            (seg[0] & 0xffc0) == 0xfe80
                || v6.is_unspecified()
                || v6.is_multicast()
                || seg == [0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254]
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| is_never_allowed(IpAddr::V4(v4)))
                || (seg[..6] == [0, 0, 0, 0, 0, 0] && v4(seg[6], seg[7]))
                || (seg[0] == 0x64 && seg[1] == 0xff9b && v4(seg[6], seg[7]))
                || (seg[0] == 0x2002 && v4(seg[1], seg[2]))
        }
    }
}

fn embedded(hi: u16, lo: u16) -> std::net::Ipv4Addr {
    let [a, b] = hi.to_be_bytes();
    let [c, d] = lo.to_be_bytes();
    std::net::Ipv4Addr::new(a, b, c, d)
}

fn bare_host(url: &url::Url) -> Result<String, FetchError> {
    Ok(url
        .host_str()
        .ok_or_else(|| fail("the URL has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string())
}

/// Resolves a URL's host before `deadline` (all its addresses).
pub async fn resolve(
    url: &url::Url,
    deadline: tokio::time::Instant,
) -> Result<Vec<SocketAddr>, FetchError> {
    let host = bare_host(url)?;
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs: Vec<SocketAddr> =
        tokio::time::timeout_at(deadline, tokio::net::lookup_host((host.as_str(), port)))
            .await
            .map_err(|_| fail(format!("resolving {host} timed out")))?
            .map_err(|_| fail(format!("{host} does not resolve")))?
            .collect();
    if addrs.is_empty() {
        return Err(fail(format!("{host} does not resolve")));
    }
    Ok(addrs)
}

/// Whether every address of a URL's host is loopback, private or otherwise non-public (the
/// backend policy: a server registered on such an address may have its OAuth endpoints there
/// too). A host with any public address is not.
pub async fn is_private_url(url: &url::Url) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    match resolve(url, deadline).await {
        Ok(addrs) => addrs.iter().all(|a| is_forbidden_address(a.ip())),
        Err(_) => false,
    }
}

/// Checks a URL against the policy and returns the address to connect to.
async fn admit(
    policy: &Policy,
    url: &url::Url,
    deadline: tokio::time::Instant,
) -> Result<SocketAddr, FetchError> {
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_http => {}
        _ => return Err(fail(format!("{} must use https", host_of(url)))),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(fail("a URL must not carry credentials"));
    }
    let addrs = resolve(url, deadline).await?;
    let private_ok = policy.allow_private
        && policy
            .private_origin
            .is_none_or(|key| key == origin_key(url));
    if addrs.iter().any(|a| is_never_allowed(a.ip()))
        || (!private_ok && addrs.iter().any(|a| is_forbidden_address(a.ip())))
    {
        return Err(fail(format!(
            "{} is on a private or reserved address",
            host_of(url)
        )));
    }
    Ok(addrs[0])
}

fn same_origin(a: &url::Url, b: &url::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Sends one request under the policy. `build` adds headers and a body to the request for a
/// URL (called again for a same-origin redirect of a `GET`).
pub async fn send(
    policy: &Policy,
    method: reqwest::Method,
    url: &str,
    build: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
) -> Result<Fetched, FetchError> {
    let deadline = tokio::time::Instant::now() + policy.timeout;
    let first = url::Url::parse(url).map_err(|_| fail("not a valid URL"))?;
    let mut current = first.clone();
    for _hop in 0..4 {
        let addr = admit(policy, &current, deadline).await?;
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(policy.timeout)
            .resolve(&bare_host(&current)?, addr)
            .build()
            .map_err(|_| fail("internal error"))?;
        let req = build(client.request(method.clone(), current.clone()));
        let exchange = async {
            let mut res = req
                .send()
                .await
                .map_err(|_| fail(format!("{} could not be reached", host_of(&current))))?;
            let status = res.status().as_u16();
            let headers = res.headers().clone();
            if (300..400).contains(&status) {
                return Ok((status, headers, Bytes::new()));
            }
            if res
                .content_length()
                .is_some_and(|n| n > policy.max_bytes as u64)
            {
                return Err(fail(format!(
                    "{} sent a response too large",
                    host_of(&current)
                )));
            }
            let mut body = Vec::new();
            while let Some(chunk) = res
                .chunk()
                .await
                .map_err(|_| fail(format!("reading from {} failed", host_of(&current))))?
            {
                body.extend_from_slice(&chunk);
                if body.len() > policy.max_bytes {
                    return Err(fail(format!(
                        "{} sent a response too large",
                        host_of(&current)
                    )));
                }
            }
            Ok((status, headers, Bytes::from(body)))
        };
        let (status, headers, body) = tokio::time::timeout_at(deadline, exchange)
            .await
            .map_err(|_| fail(format!("{} did not answer in time", host_of(&current))))??;
        if (300..400).contains(&status) && status != 304 {
            let next = headers
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| current.join(l).ok());
            match next {
                Some(next) if method == reqwest::Method::GET && same_origin(&first, &next) => {
                    current = next;
                    continue;
                }
                _ => {
                    return Err(fail(format!(
                        "{} redirected elsewhere; only same-origin redirects of reads are followed",
                        host_of(&current)
                    )));
                }
            }
        }
        return Ok(Fetched {
            status,
            headers,
            body,
            url: current,
        });
    }
    Err(fail(format!("{} redirected too often", host_of(&first))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "64:ff9b::a9fe:a9fe",
            "2002:a00:1::",
            "2002:a9fe:a9fe::1",
            "224.0.0.1",
            "240.0.0.1",
        ] {
            assert!(is_forbidden_address(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "::7f00:1",
            "2001:0:4136:e378::1",
            "fec0::1",
            "64:ff9b:1::a00:1",
        ] {
            assert!(is_forbidden_address(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:4700::1111", "8.8.8.8"] {
            assert!(!is_forbidden_address(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "169.254.169.254",
            "fe80::1",
            "0.0.0.0",
            "::",
            "::ffff:169.254.169.254",
            "224.0.0.1",
            // AWS's IPv6 metadata service, and link-local IPv4 embedded by NAT64, 6to4 and
            // the deprecated IPv4-compatible form.
            "fd00:ec2::254",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "::169.254.169.254",
        ] {
            assert!(is_never_allowed(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["127.0.0.1", "10.0.0.1", "::1", "fd00::1", "64:ff9b::a00:1"] {
            assert!(!is_never_allowed(ip.parse().unwrap()), "{ip}");
        }
    }

    fn policy(allow_private: bool, allow_http: bool) -> Policy {
        Policy {
            allow_private,
            allow_http,
            timeout: Duration::from_secs(2),
            max_bytes: 1024,
            private_origin: None,
        }
    }

    #[tokio::test]
    async fn refuses_what_the_policy_does_not_allow() {
        let err = send(
            &policy(false, true),
            reqwest::Method::GET,
            "http://127.0.0.1:9/x",
            |r| r,
        )
        .await
        .unwrap_err();
        assert!(err.0.contains("private"), "{err}");
        let err = send(
            &policy(true, false),
            reqwest::Method::GET,
            "http://127.0.0.1:9/x",
            |r| r,
        )
        .await
        .unwrap_err();
        assert!(err.0.contains("https"), "{err}");
        let err = send(
            &policy(true, true),
            reqwest::Method::GET,
            "http://u:p@127.0.0.1:9/",
            |r| r,
        )
        .await
        .unwrap_err();
        assert!(err.0.contains("credentials"), "{err}");
        let err = send(
            &policy(true, true),
            reqwest::Method::GET,
            "file:///etc/passwd",
            |r| r,
        )
        .await
        .unwrap_err();
        assert!(err.0.contains("https"), "{err}");
    }

    #[tokio::test]
    async fn follows_same_origin_redirects_only_and_caps_the_body() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let n = sock.read(&mut buf).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buf[..n]).to_string();
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let reply = match path.as_str() {
                        "/same" => "HTTP/1.1 302 Found\r\nLocation: /ok\r\nContent-Length: 0\r\n\r\n".to_string(),
                        "/other" => "HTTP/1.1 302 Found\r\nLocation: http://localhost:1/ok\r\nContent-Length: 0\r\n\r\n".to_string(),
                        "/big" => format!("HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n{}", "x".repeat(2000)),
                        _ => "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}".to_string(),
                    };
                    let _ = sock.write_all(reply.as_bytes()).await;
                });
            }
        });
        let base = format!("http://127.0.0.1:{port}");
        let p = policy(true, true);
        let ok = send(&p, reqwest::Method::GET, &format!("{base}/same"), |r| r)
            .await
            .unwrap();
        assert_eq!((ok.status, ok.url.path()), (200, "/ok"));
        let err = send(&p, reqwest::Method::GET, &format!("{base}/other"), |r| r)
            .await
            .unwrap_err();
        assert!(err.0.contains("redirected elsewhere"), "{err}");
        let err = send(&p, reqwest::Method::POST, &format!("{base}/same"), |r| r)
            .await
            .unwrap_err();
        assert!(err.0.contains("redirected elsewhere"), "{err}");
        let err = send(&p, reqwest::Method::GET, &format!("{base}/big"), |r| r)
            .await
            .unwrap_err();
        assert!(err.0.contains("too large"), "{err}");
    }
}
