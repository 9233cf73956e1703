//! `http`: outbound requests from a plugin, denied unless the host is on the tenant's allow-list.
//!
//! Redirects are not followed by the host: a 3xx is returned to the plugin, which may request the
//! new location itself (and that request is checked against the allow-list again). Response bodies
//! are read in chunks and cut off at the tenant's limit, so a hostile server cannot exhaust memory.

use std::time::Duration;

use reqwest::Url;

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

/// One attempt's outbound HTTP.
pub struct HttpCapability {
    client: reqwest::Client,
    allow: std::sync::Arc<AllowList>,
    limits: HttpLimits,
    sent: u32,
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
        }
    }

    /// The client every attempt shares: no redirects, rustls, no proxy from the environment.
    pub fn shared_client() -> anyhow::Result<reqwest::Client> {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("hookhost/", env!("CARGO_PKG_VERSION")))
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
        let mut builder = self.client.request(method, url).timeout(timeout);
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

fn transport(e: reqwest::Error) -> HttpError {
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
            HttpCapability::shared_client().unwrap(),
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
}
