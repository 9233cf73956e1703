//! `http`: outbound requests from a plugin, denied unless the host is on the tenant's allow-list.
//!
//! Redirects are not followed by the host: a 3xx is returned to the plugin, which may request the
//! new location itself (and that request is checked against the allow-list again). Response bodies
//! are read in chunks and cut off at the tenant's limit, so a hostile server cannot exhaust memory.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use reqwest::Url;

pub use crate::storage::OutboundRequest;

/// An HTTP method a plugin may use (mirrors WIT `http.method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// HEAD
    Head,
    /// POST
    Post,
    /// PUT
    Put,
    /// PATCH
    Patch,
    /// DELETE
    Delete,
}

/// A plugin's outbound request.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// Method.
    pub method: Method,
    /// Absolute URL.
    pub url: String,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Option<Vec<u8>>,
    /// Requested timeout (capped by the tenant's limit).
    pub timeout_ms: Option<u32>,
}

/// The response handed back to the plugin.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// The whole body.
    pub body: Vec<u8>,
}

/// Why no response (mirrors WIT `http.error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// Not on the allow-list.
    Denied(String),
    /// Malformed request.
    InvalidRequest(String),
    /// No response in time.
    Timeout,
    /// Connection failure.
    Transport(String),
    /// Body over the limit (bytes).
    ResponseTooLarge(u64),
    /// Too many requests in this attempt (the limit).
    TooManyRequests(u32),
}

/// The hosts a tenant's plugin may call: `host` (any port) or `host:port`, matched exactly
/// (case-insensitive); `*.example.com` matches subdomains of example.com.
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    entries: Vec<(String, Option<u16>)>,
}

impl AllowList {
    /// Parses the tenant's `allowed_hosts`.
    pub fn parse(hosts: &[String]) -> anyhow::Result<AllowList> {
        let mut entries = Vec::new();
        for h in hosts {
            let h = h.trim().to_ascii_lowercase();
            let (host, port) = match h.rsplit_once(':') {
                Some((host, _)) if !host.ends_with(']') && host.contains(':') => (h.clone(), None), // bare IPv6
                Some((host, port)) => (
                    host.to_string(),
                    Some(port.parse::<u16>().map_err(|_| {
                        anyhow::anyhow!(
                            "allowed host {h:?} has an invalid port: write host or host:port"
                        )
                    })?),
                ),
                None => (h.clone(), None),
            };
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            if host.is_empty() || host.contains('/') {
                anyhow::bail!("allowed host {h:?} is not a host name: write host or host:port, without a scheme or path");
            }
            entries.push((host, port));
        }
        Ok(AllowList { entries })
    }

    /// The entries as written (`host` or `host:port`), for display.
    pub fn entries(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|(h, p)| match p {
                Some(p) => format!("{h}:{p}"),
                None => h.clone(),
            })
            .collect()
    }

    /// Whether `url` may be requested.
    pub fn allows(&self, url: &Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let port = url.port_or_known_default();
        self.entries.iter().any(|(allowed, allowed_port)| {
            let host_ok = match allowed.strip_prefix("*.") {
                Some(domain) => host.ends_with(&format!(".{domain}")),
                None => *allowed == host,
            };
            host_ok && allowed_port.is_none_or(|p| Some(p) == port)
        })
    }
}

/// Whether an address is on the public internet, following IANA's IPv4 and IPv6 Special-Purpose
/// Address Registries: loopback, private (RFC 1918, ULA), link-local, site-local, shared (CGNAT),
/// unspecified, "this network", IETF protocol assignments (192.0.0.0/24, 2001::/23), benchmarking,
/// documentation, reserved (240.0.0.0/4), multicast, broadcast, discard-only and SRv6 addresses
/// are not. Addresses that embed an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64
/// `64:ff9b::/96`) are judged by it, and 6to4 (`2002::/16`), Teredo and local-use NAT64
/// (`64:ff9b:1::/48`) are refused outright: through a translator they can reach inside. A plugin
/// must not reach the host's own services or its network through a hostname (SSRF), unless the
/// operator allows private networks for that tenant.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_loopback() // 127.0.0.0/8
                || v4.is_private() // 10/8, 172.16/12, 192.168/16
                || v4.is_link_local() // 169.254/16
                || v4.is_unspecified()
                || v4.is_multicast() // 224/4
                || v4.is_broadcast()
                || v4.is_documentation() // 192.0.2/24, 198.51.100/24, 203.0.113/24
                || a == 0 // "this network"
                || a >= 240 // reserved 240/4
                || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
                || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
                || (a == 192 && b == 88 && c == 99) // deprecated 6to4 relay anycast
                || (a == 198 && (b == 18 || b == 19))) // benchmarking
        }
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            let embedded_v4 = |hi: u16, lo: u16| {
                std::net::Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)
            };
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            // NAT64 well-known prefix: public only if the IPv4 address it stands for is.
            if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return is_public(IpAddr::V4(embedded_v4(segments[6], segments[7])));
            }
            let first = segments[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast() // ff00::/8
                || segments[..6] == [0; 6] // IPv4-compatible (deprecated) ::a.b.c.d
                || (first == 0x64 && segments[1] == 0xff9b && segments[2] == 1) // local-use NAT64
                || (first == 0x100 && segments[1..4] == [0, 0, 0]) // discard-only 100::/64
                || (first == 0x2001 && segments[1] < 0x200) // IETF 2001::/23 (Teredo included)
                || (first == 0x2001 && segments[1] == 0x0db8) // documentation
                || first == 0x2002 // 6to4
                || (first == 0x3fff && segments[1] < 0x1000) // documentation 3fff::/20
                || first == 0x5f00 // SRv6 SIDs
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first & 0xffc0) == 0xfec0) // site-local (deprecated)
        }
    }
}

/// Why a host name was not connected to: it resolves only to non-public addresses.
#[derive(Debug)]
pub struct NonPublicAddress(pub String);

impl std::fmt::Display for NonPublicAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} resolves only to loopback, private or link-local addresses (allow_private_networks is off)", self.0)
    }
}

impl std::error::Error for NonPublicAddress {}

/// Resolves names with the system resolver and keeps only public addresses, so the check holds
/// after DNS resolution (and for every redirect or retry the client makes).
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = addrs.into_iter().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err(
                    Box::new(NonPublicAddress(host)) as Box<dyn std::error::Error + Send + Sync>
                );
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Limits on one attempt's outbound HTTP.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Requests per attempt.
    pub max_requests: u32,
    /// Longest timeout of one request.
    pub timeout: Duration,
    /// Largest response body.
    pub max_response_bytes: usize,
}

/// What becomes of an attempt's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outbound {
    /// Sent (a real attempt).
    Send,
    /// Recorded, not sent (a dry attempt: shadow runs, backtests). The plugin gets a `200` with
    /// an empty body and the header `x-hookhost-dry-run: true`.
    Record,
}

/// One attempt's outbound HTTP.
pub struct HttpCapability {
    client: reqwest::Client,
    allow: std::sync::Arc<AllowList>,
    limits: HttpLimits,
    sent: u32,
    outbound: Outbound,
    requested: Vec<OutboundRequest>,
}

impl HttpCapability {
    /// A capability for one attempt. `client` is shared across attempts (connection reuse) and must
    /// not follow redirects.
    pub fn new(
        client: reqwest::Client,
        allow: std::sync::Arc<AllowList>,
        limits: HttpLimits,
    ) -> HttpCapability {
        HttpCapability {
            client,
            allow,
            limits,
            sent: 0,
            outbound: Outbound::Send,
            requested: Vec::new(),
        }
    }

    /// This capability in a dry attempt: requests are checked and recorded as usual, not sent.
    pub fn dry(mut self) -> HttpCapability {
        self.outbound = Outbound::Record;
        self
    }

    /// The requests made (sent, or recorded in a dry attempt), in order.
    pub fn take_requested(&mut self) -> Vec<OutboundRequest> {
        std::mem::take(&mut self.requested)
    }

    /// A client shared by attempts: no redirects, rustls, no proxy from the environment. With
    /// `public_only`, host names that resolve only to non-public addresses are refused.
    pub fn shared_client(public_only: bool) -> anyhow::Result<reqwest::Client> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("hookhost/", env!("CARGO_PKG_VERSION")));
        if public_only {
            builder = builder.dns_resolver(std::sync::Arc::new(PublicOnly));
        }
        builder
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the outbound HTTP client: {e}"))
    }

    /// Sends a request if the allow-list and limits permit.
    pub async fn send(&mut self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        if self.sent >= self.limits.max_requests {
            return Err(HttpError::TooManyRequests(self.limits.max_requests));
        }
        let url = Url::parse(&request.url)
            .map_err(|e| HttpError::InvalidRequest(format!("bad URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(HttpError::InvalidRequest(format!(
                "scheme {} is not http or https",
                url.scheme()
            )));
        }
        if !self.allow.allows(&url) {
            return Err(HttpError::Denied(format!(
                "{} is not on this tenant's allowed_hosts",
                url.host_str().unwrap_or("(no host)")
            )));
        }
        self.sent += 1;
        let method = match request.method {
            Method::Get => reqwest::Method::GET,
            Method::Head => reqwest::Method::HEAD,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
        };
        let timeout = request
            .timeout_ms
            .map(|ms| Duration::from_millis(ms.into()).min(self.limits.timeout))
            .unwrap_or(self.limits.timeout);
        let mut builder = self.client.request(method, url.clone()).timeout(timeout);
        for (name, value) in &request.headers {
            if name.eq_ignore_ascii_case("host") {
                return Err(HttpError::InvalidRequest(
                    "the host header is set from the URL".into(),
                ));
            }
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| HttpError::InvalidRequest(format!("bad header name {name:?}")))?;
            let value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|_| HttpError::InvalidRequest(format!("bad value for header {name}")))?;
            builder = builder.header(name, value);
        }
        self.requested.push(OutboundRequest {
            method: format!("{:?}", request.method).to_uppercase(),
            host: url_host(&url),
            path: url.path().to_string(),
            body_sha256: request
                .body
                .as_deref()
                .map(|b| crate::storage::component_digest(b)[..16].to_string()),
        });
        if self.outbound == Outbound::Record {
            return Ok(HttpResponse {
                status: 200,
                headers: vec![("x-hookhost-dry-run".into(), "true".into())],
                body: Vec::new(),
            });
        }
        if let Some(body) = request.body {
            builder = builder.body(body);
        }
        let read = async {
            let mut response = builder.send().await.map_err(transport)?;
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(transport)? {
                if body.len() + chunk.len() > self.limits.max_response_bytes {
                    return Err(HttpError::ResponseTooLarge(
                        self.limits.max_response_bytes as u64,
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(HttpResponse {
                status,
                headers,
                body,
            })
        };
        tokio::time::timeout(timeout, read)
            .await
            .map_err(|_| HttpError::Timeout)?
    }
}

/// `host` or `host:port` (the port only when it is not the scheme's default).
fn url_host(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

fn transport(e: reqwest::Error) -> HttpError {
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        if let Some(denied) = c.downcast_ref::<NonPublicAddress>() {
            return HttpError::Denied(denied.to_string());
        }
        cause = c.source();
    }
    if e.is_timeout() {
        HttpError::Timeout
    } else {
        // The source chain says why (connection refused, DNS, TLS) without the URL's query.
        let e = e.without_url();
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        HttpError::Transport(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn allow(hosts: &[&str]) -> AllowList {
        AllowList::parse(&hosts.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn allow_list_matches_host_port_and_wildcards() {
        let a = allow(&[
            "api.shop.example",
            "127.0.0.1:9000",
            "*.hooks.example",
            "[::1]:81",
        ]);
        let ok = |u: &str| a.allows(&Url::parse(u).unwrap());
        assert!(ok("https://api.shop.example/orders"));
        assert!(ok("http://API.shop.example:8080/x"));
        assert!(ok("http://127.0.0.1:9000/notify"));
        assert!(!ok("http://127.0.0.1:9001/notify"));
        assert!(!ok("http://127.0.0.1/notify"));
        assert!(ok("https://eu.hooks.example/"));
        assert!(!ok("https://hooks.example/"));
        assert!(!ok("https://evilhooks.example/"));
        assert!(!ok("https://api.shop.example.evil.com/"));
        assert!(ok("http://[::1]:81/"));
        assert!(AllowList::parse(&["http://x.com/".into()]).is_err());
        assert!(AllowList::parse(&["x.com:http".into()]).is_err());
    }

    fn capability(hosts: &[&str], max_requests: u32) -> HttpCapability {
        HttpCapability::new(
            HttpCapability::shared_client(true).unwrap(),
            Arc::new(allow(hosts)),
            HttpLimits {
                max_requests,
                timeout: Duration::from_secs(2),
                max_response_bytes: 64,
            },
        )
    }

    fn get(url: &str) -> HttpRequest {
        HttpRequest {
            method: Method::Get,
            url: url.into(),
            headers: vec![],
            body: None,
            timeout_ms: None,
        }
    }

    #[tokio::test]
    async fn denied_and_invalid_requests_never_leave_the_host() {
        let mut http = capability(&["allowed.example"], 10);
        assert!(matches!(
            http.send(get("http://other.example/")).await,
            Err(HttpError::Denied(_))
        ));
        assert!(matches!(
            http.send(get("file:///etc/passwd")).await,
            Err(HttpError::InvalidRequest(_))
        ));
        assert!(matches!(
            http.send(get("not a url")).await,
            Err(HttpError::InvalidRequest(_))
        ));
        assert_eq!(http.sent, 0);
    }

    #[test]
    fn public_addresses() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.20.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "224.0.0.1",
            // Found by the review: NAT64, 6to4, site-local, IETF assignments, reserved.
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::1",
            "2002:c0a8:101::1",
            "fec0::1",
            "192.0.0.1",
            "192.0.0.170",
            "240.0.0.1",
            "255.255.255.254",
            // The rest of the special-purpose registries.
            "64:ff9b:1::1",
            "100::1",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:db8::1",
            "3fff::1",
            "5f00::1",
            "::127.0.0.1",
            "192.88.99.1",
            "198.18.0.1",
            "ff02::1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2a00:1450::1",
            "2400:cb00::1",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[tokio::test]
    async fn a_host_name_that_resolves_to_loopback_is_refused_unless_private_networks_are_allowed()
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "inside" }));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let allow = Arc::new(allow(&[&format!("localhost:{port}")]));
        let limits = HttpLimits {
            max_requests: 5,
            timeout: Duration::from_secs(2),
            max_response_bytes: 64,
        };
        let url = format!("http://localhost:{port}/");
        let mut guarded = HttpCapability::new(
            HttpCapability::shared_client(true).unwrap(),
            allow.clone(),
            limits,
        );
        match guarded.send(get(&url)).await {
            Err(HttpError::Denied(why)) => assert!(
                why.contains("localhost") && why.contains("allow_private_networks"),
                "{why}"
            ),
            other => panic!("reached loopback through a host name: {other:?}"),
        }
        let mut open =
            HttpCapability::new(HttpCapability::shared_client(false).unwrap(), allow, limits);
        assert_eq!(open.send(get(&url)).await.unwrap().body, b"inside");
    }

    #[tokio::test]
    async fn talks_to_an_allowed_server_within_limits() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new()
            .route(
                "/small",
                axum::routing::post(|body: String| async move { format!("got {body}") }),
            )
            .route("/big", axum::routing::get(|| async { "x".repeat(1000) }))
            .route(
                "/slow",
                axum::routing::get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let mut http = capability(&[&format!("127.0.0.1:{port}")], 3);
        let base = format!("http://127.0.0.1:{port}");
        let r = http
            .send(HttpRequest {
                method: Method::Post,
                url: format!("{base}/small"),
                headers: vec![],
                body: Some(b"hi".to_vec()),
                timeout_ms: None,
            })
            .await
            .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"got hi"[..]));
        assert_eq!(
            http.send(get(&format!("{base}/big"))).await.unwrap_err(),
            HttpError::ResponseTooLarge(64)
        );
        let slow = HttpRequest {
            timeout_ms: Some(100),
            ..get(&format!("{base}/slow"))
        };
        assert_eq!(http.send(slow).await.unwrap_err(), HttpError::Timeout);
        assert_eq!(
            http.send(get(&format!("{base}/small"))).await.unwrap_err(),
            HttpError::TooManyRequests(3)
        );
    }

    #[tokio::test]
    async fn a_redirect_is_handed_to_the_plugin_not_followed() {
        // Following it would reach a host nobody allow-listed (here the cloud metadata address).
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new().route(
            "/moved",
            axum::routing::get(|| async {
                (
                    axum::http::StatusCode::FOUND,
                    [(
                        axum::http::header::LOCATION,
                        "http://169.254.169.254/latest/",
                    )],
                )
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let mut http = capability(&[&format!("127.0.0.1:{port}")], 3);
        let r = http
            .send(get(&format!("http://127.0.0.1:{port}/moved")))
            .await
            .unwrap();
        assert_eq!(r.status, 302);
        assert!(r
            .headers
            .iter()
            .any(|(k, v)| k == "location" && v.contains("169.254.169.254")));
    }
}
