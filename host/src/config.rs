//! The operator's configuration file (TOML): listen address, store, admin token, and the tenants
//! with their plugin, limits, capabilities and webhook sources.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// The smallest `limits.ingest_per_second`: slower rates make the limiter's wait times overflow.
pub const MIN_INGEST_PER_SECOND: f64 = 0.001;

/// The whole configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server listens on (webhooks, admin API, health).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The embedded SQLite database file (relative paths are relative to the config file).
    pub database: PathBuf,
    /// Whether each acknowledged webhook is fsynced before the 2xx (`durable`, the default) or
    /// only written to the OS (`fast`: survives a process crash, not a power loss).
    #[serde(default)]
    pub durability: Durability,
    /// Where precompiled plugins are cached (default: `<database dir>/cache`).
    pub cache_dir: Option<PathBuf>,
    /// Largest webhook body accepted, in bytes; larger ones get 413 before being buffered.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// The HTTP server's own limits (connections, slow clients, buffered bodies).
    #[serde(default)]
    pub http: HttpSettings,
    /// `GET /metrics`.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// The admin API.
    #[serde(default)]
    pub admin: AdminConfig,
    /// How events are dispatched to plugins.
    #[serde(default)]
    pub dispatch: DispatchConfig,
    /// The WebAssembly engine's pooling allocator (fixed at start).
    #[serde(default)]
    pub runtime: RuntimeSettings,
    /// Events finished (done, skipped, dead) longer ago than this many hours are deleted, with
    /// their attempts, in the background. 0 keeps everything. Default: 7 days.
    #[serde(default = "default_retention_hours")]
    pub retention_hours: u64,
    /// A built-in request sink (`POST /sink/{name}`) that records what plugins send, so the demo
    /// and a merchant's dev loop have a "merchant backend" without running one. Off by default:
    /// it takes requests without a credential (bounded in bytes, bodies never logged), so enable
    /// it only for development and demos. When off, `/sink` does not exist.
    #[serde(default)]
    pub sink: bool,
    /// The merchants, by tenant name (used in webhook URLs: `/hooks/{tenant}/{source}`).
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantConfig>,
    /// The file this config was read from (for reloads); not a setting.
    #[serde(skip)]
    pub path: Option<PathBuf>,
    /// Answer only requests whose `Host` is a loopback name (`hookhost dev` sets it, against DNS
    /// rebinding from a browser); not a file setting.
    #[serde(skip)]
    pub loopback_host_only: bool,
}

fn default_listen() -> SocketAddr {
    "127.0.0.1:8080".parse().expect("valid literal address")
}

fn default_retention_hours() -> u64 {
    7 * 24
}

fn default_max_body() -> usize {
    1024 * 1024
}

/// Whether acknowledged webhooks survive power loss.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// fsync before acknowledging (grouped across concurrent requests).
    #[default]
    Durable,
    /// Write to the OS before acknowledging; fsync periodically.
    Fast,
}

/// Limits of the HTTP server itself, protecting it from callers before they are authenticated.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Connections served at once; further connections wait in the listen backlog until one
    /// closes (default 1024).
    pub max_connections: usize,
    /// How long a client may take to send a request's head (the request line and headers); a
    /// connection that takes longer, or stays idle between requests that long, is closed
    /// (default 30,000 ms, hyper's own: slowloris protection). Clients that pool connections
    /// should drop idle ones sooner.
    pub header_read_timeout_ms: u64,
    /// Webhook bodies buffered before their request is authenticated, in bytes, across all
    /// connections together (default 64 MiB); a webhook that finds no room within 5 s gets 503 +
    /// `Retry-After`. Must be at least `max_body_bytes`.
    pub max_pending_body_bytes: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            max_connections: 1024,
            header_read_timeout_ms: 30_000,
            max_pending_body_bytes: 64 * 1024 * 1024,
        }
    }
}

/// `GET /metrics` (Prometheus text).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// A bearer token scrapers must present (`Authorization: Bearer ...`, as Prometheus'
    /// `authorization` scrape setting sends it). Without one `/metrics` is open: its labels name
    /// every tenant and source, so set one wherever the port is reachable by others.
    pub token: Option<Secret>,
}

/// The admin API (`/admin/...`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Bearer token required on every admin request. Without one the admin API is disabled.
    pub token: Option<Secret>,
}

/// Dispatcher settings shared by all tenants.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DispatchConfig {
    /// How many events run at once across all tenants.
    pub workers: usize,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig { workers: 32 }
    }
}

/// Sizes of the pooling allocator: every slot is reserved up front, so these bound the host's
/// memory whatever the plugins do.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeSettings {
    /// Plugin instances alive at once (default: twice `dispatch.workers`, at least 16). Must
    /// exceed `dispatch.workers` (a new version's self-tests run beside the attempts).
    pub max_instances: Option<u32>,
    /// Largest linear memory any tenant may be given, in MiB: each slot's size (default: the
    /// largest tenant `limits.memory_mib`). Config reloads cannot raise a tenant above it.
    pub max_memory_mib: Option<u64>,
    /// Most elements a plugin's table may grow to (default 100,000).
    pub max_table_elements: Option<usize>,
    /// Most core module instances one plugin component may create (default 64; a Rust plugin
    /// uses 4, scripted plugins a few more).
    pub max_core_instances: Option<u32>,
    /// Freed instances whose memory is returned to the OS in one batch (default 1: at once).
    /// Batching saves syscalls at high event rates but keeps up to this many instances' touched
    /// memory resident until the batch fills.
    pub decommit_batch: Option<usize>,
    /// Reset a freed instance's memory by rewriting only the pages it dirtied, found with Linux's
    /// PAGEMAP_SCAN (6.7+), instead of returning the memory and faulting it back in (default
    /// true; ignored where the kernel lacks it). `false` is the fallback should it misbehave.
    pub pagemap_scan: Option<bool>,
}

impl Config {
    /// Plugin instances alive at once.
    pub fn max_instances(&self) -> u32 {
        self.runtime
            .max_instances
            .unwrap_or((self.dispatch.workers as u32 * 2).max(16))
    }

    /// The pool's slot size in MiB.
    pub fn max_memory_mib(&self) -> u64 {
        self.runtime.max_memory_mib.unwrap_or_else(|| {
            self.tenants
                .values()
                .map(|t| t.limits.memory_mib)
                .max()
                .unwrap_or(64)
        })
    }

    /// Largest table a plugin may grow.
    pub fn max_table_elements(&self) -> usize {
        self.runtime.max_table_elements.unwrap_or(100_000)
    }

    /// Core instances one component may create.
    pub fn max_core_instances(&self) -> u32 {
        self.runtime.max_core_instances.unwrap_or(64).max(1)
    }

    /// Freed instances decommitted together.
    pub fn decommit_batch(&self) -> usize {
        self.runtime.decommit_batch.unwrap_or(1).max(1)
    }
}

/// One merchant.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// The plugin component (`.wasm`), relative to the config file.
    pub plugin: PathBuf,
    /// Hosts the plugin may call over HTTP: `host` or `host:port`. Everything else is denied.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Let allow-listed host names resolve to loopback, private or link-local addresses (off by
    /// default: a name that points inside is refused). IP literals on the allow-list are always
    /// explicit and allowed.
    #[serde(default)]
    pub allow_private_networks: bool,
    /// Values the plugin reads through the `config` capability.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Secrets the plugin reads through `config.get-secret`; never logged or shown.
    #[serde(default)]
    pub secrets: BTreeMap<String, Secret>,
    /// Resource limits for each attempt.
    #[serde(default)]
    pub limits: Limits,
    /// How failed attempts are retried.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// The webhook endpoints of this tenant, by source name.
    #[serde(default)]
    pub sources: BTreeMap<String, SourceConfig>,
    /// Webhooks every new version of the plugin must handle before it may replace the serving
    /// one (hot reload, config reload, start). A version that fails is not loaded.
    #[serde(default)]
    pub self_test: Vec<SelfTestConfig>,
}

/// One self-test case: a webhook body as `source` would deliver it, and what the plugin must do.
/// It runs in a fresh instance like a real attempt, with the tenant's limits; its kv writes are
/// discarded and outbound HTTP is refused.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfTestConfig {
    /// The tenant's source whose provider normalizes the body (authentication is not checked).
    pub source: String,
    /// The webhook body (JSON), relative to the config file.
    pub file: PathBuf,
    /// Headers the provider would send with it (e.g. `x-shopify-topic`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// What the plugin must answer (default `ok`: done, skipped or retry-after, not an error).
    #[serde(default)]
    pub expect: SelfTestExpect,
}

/// What a self-test requires of the plugin.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SelfTestExpect {
    /// Any outcome; no error, trap or exceeded limit.
    #[default]
    Ok,
    /// `done`.
    Done,
    /// `skipped`.
    Skipped,
    /// `retry-after`.
    Retry,
}

/// Per-attempt resource limits, with defaults safe for a shared host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Wall-clock time for one attempt, including host calls.
    pub timeout_ms: u64,
    /// Linear memory the plugin may grow to, in MiB.
    pub memory_mib: u64,
    /// Log bytes kept per attempt; more are dropped (and counted).
    pub log_bytes: usize,
    /// Largest kv value, in bytes.
    pub kv_value_bytes: usize,
    /// Most keys the tenant's kv may hold.
    pub kv_max_keys: u64,
    /// Bytes of kv writes (keys and values) one attempt may buffer before they commit; past it a
    /// `set` fails with `value-too-large` (the writes are held in host memory, outside the
    /// plugin's `memory_mib`, until the attempt ends).
    pub kv_write_bytes: usize,
    /// Outbound HTTP requests per attempt.
    pub http_requests: u32,
    /// Timeout of one outbound request.
    pub http_timeout_ms: u64,
    /// Largest outbound response body, in bytes.
    pub http_response_bytes: usize,
    /// Most of this tenant's events running at once, so one tenant cannot take every worker
    /// (default 16: half the default workers, so that one busy tenant is not held back by the
    /// journal's commit latency while another still finds free workers).
    pub max_concurrency: usize,
    /// Instruction budget of one attempt (wasmtime fuel, about one unit per wasm instruction),
    /// for operators who want a deterministic CPU cap like Shopify Functions' instruction limit;
    /// `timeout_ms` still applies. Unset: no budget. Counting fuel costs every plugin some speed,
    /// so the engine counts it only when a tenant had a budget at start.
    pub fuel: Option<u64>,
    /// Authenticated webhooks accepted per second for this tenant (all sources together); above
    /// it callers get 429 with `Retry-After`. Unset: no limit.
    pub ingest_per_second: Option<f64>,
    /// Webhooks that may arrive at once above `ingest_per_second` (default: one second's worth).
    pub ingest_burst: Option<u32>,
    /// Events one plugin instance may handle before it is replaced (default 1: a fresh instance
    /// per event). JavaScript and Python plugins start an interpreter per instance (~1-2 ms, see
    /// docs/BENCHMARKS.md); reusing an instance saves that, at the price that the plugin's
    /// globals persist between this tenant's events. An instance never serves another tenant or
    /// another plugin version, and is dropped after any trap or timeout.
    pub instance_reuse: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout_ms: 5_000,
            memory_mib: 64,
            log_bytes: 64 * 1024,
            kv_value_bytes: 256 * 1024,
            kv_max_keys: 100_000,
            kv_write_bytes: 16 * 1024 * 1024,
            http_requests: 10,
            http_timeout_ms: 10_000,
            http_response_bytes: 1024 * 1024,
            max_concurrency: 16,
            fuel: None,
            ingest_per_second: None,
            ingest_burst: None,
            instance_reuse: 1,
        }
    }
}

/// Retries with exponential backoff and jitter; after `max_attempts` an event is a dead letter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Delay before the first retry.
    pub base_ms: u64,
    /// Longest delay between attempts.
    pub cap_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base_ms: 1_000,
            cap_ms: 10 * 60 * 1_000,
        }
    }
}

/// A webhook endpoint (`/hooks/{tenant}/{source}`): which provider sends to it and how its
/// requests are authenticated. Any source may also be restricted to caller networks.
#[derive(Debug)]
pub struct SourceConfig {
    /// The provider and its credentials.
    pub provider: ProviderConfig,
    /// If set, callers must come from one of these networks (CIDR, e.g. `203.0.113.0/24`).
    pub allow_ips: Vec<String>,
    /// A header carrying the caller's address set by a reverse proxy you trust (e.g.
    /// `X-Forwarded-For`); without it the TCP peer address is used.
    pub trusted_proxy_header: Option<String>,
    /// The reverse proxies (CIDR) whose `trusted_proxy_header` is believed: the header is read
    /// only when the TCP peer is one of them, and the caller is its rightmost address that is not
    /// one of them. Required with `trusted_proxy_header`.
    pub trusted_proxies: Vec<String>,
}

impl<'de> Deserialize<'de> for SourceConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut table = toml::Table::deserialize(d)?;
        let allow_ips = match table.remove("allow_ips") {
            None => Vec::new(),
            Some(v) => Vec::<String>::deserialize(v)
                .map_err(|e| D::Error::custom(format!("allow_ips: {e}")))?,
        };
        let trusted_proxy_header = match table.remove("trusted_proxy_header") {
            None => None,
            Some(v) => Some(
                String::deserialize(v)
                    .map_err(|e| D::Error::custom(format!("trusted_proxy_header: {e}")))?,
            ),
        };
        let trusted_proxies = match table.remove("trusted_proxies") {
            None => Vec::new(),
            Some(v) => Vec::<String>::deserialize(v)
                .map_err(|e| D::Error::custom(format!("trusted_proxies: {e}")))?,
        };
        let provider = ProviderConfig::deserialize(toml::Value::Table(table))
            .map_err(|e| D::Error::custom(e.to_string()))?;
        Ok(SourceConfig {
            provider,
            allow_ips,
            trusted_proxy_header,
            trusted_proxies,
        })
    }
}

fn default_tolerance() -> u64 {
    300
}

fn default_selldone_cost() -> u32 {
    10
}

fn authorization() -> String {
    "authorization".to_string()
}

/// A provider and its credentials (`provider = "..."` selects the variant).
#[derive(Debug, Deserialize)]
#[serde(tag = "provider", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ProviderConfig {
    /// Fincart order status: the `Authorization` header carries the webhook token verbatim.
    Fincart {
        /// The token(s) Fincart sends; several during a rotation.
        token: Secrets,
    },
    /// Sevi order payment: the source's token in a header.
    Sevi {
        /// Accepted tokens.
        token: Secrets,
        /// The header carrying it (default `Authorization`).
        #[serde(default = "authorization")]
        header: String,
    },
    /// Juspay payouts: mandatory HTTP Basic authentication, plus optional custom headers.
    Juspay {
        /// The Basic user name (no `@` or `:`, as Juspay requires).
        username: String,
        /// Accepted passwords.
        password: Secrets,
        /// Custom headers configured at Juspay that must be present with these values.
        #[serde(default)]
        required_headers: BTreeMap<String, Secret>,
    },
    /// FinchPay transactions. FinchPay signs nothing, so the source needs its own secret (a token
    /// in the URL's query or path, or a header) and/or an IP allow-list.
    Finchpay {
        /// Accepted tokens.
        token: Option<Secrets>,
        /// Where the token is: `query` (default), `path` or `header`.
        #[serde(default)]
        token_in: TokenIn,
        /// Query parameter or header name (default `token`, or `Authorization` for a header).
        token_name: Option<String>,
    },
    /// Selldone online orders: a bearer token, and optionally the Selldone-Sign-Id/-Hash pair.
    Selldone {
        /// Accepted bearer tokens.
        token: Secrets,
        /// The webhook sign key(s), to also verify `Selldone-Sign-Hash`.
        sign_key: Option<Secrets>,
        /// How far `Selldone-Sign-Id` (a timestamp) may be from now, in seconds.
        #[serde(default = "default_tolerance")]
        tolerance_secs: u64,
        /// The bcrypt cost Selldone signs with (default 10); hashes of any other cost are
        /// refused before hashing.
        #[serde(default = "default_selldone_cost")]
        sign_cost: u32,
    },
    /// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
    StandardWebhooks {
        /// `whsec_...` secrets.
        secret: Secrets,
        /// Timestamp tolerance in seconds.
        #[serde(default = "default_tolerance")]
        tolerance_secs: u64,
        /// How to read the payload (default: status from `type`, id from `webhook-id`).
        mapping: Option<MappingConfig>,
    },
    /// Stripe events (`Stripe-Signature`).
    Stripe {
        /// Endpoint signing secrets (`whsec_...`).
        secret: Secrets,
        /// Timestamp tolerance in seconds.
        #[serde(default = "default_tolerance")]
        tolerance_secs: u64,
    },
    /// Shopify webhooks (`X-Shopify-Hmac-Sha256`).
    Shopify {
        /// The app's client secret(s).
        secret: Secrets,
    },
    /// GitHub webhooks (`X-Hub-Signature-256`).
    Github {
        /// The webhook secret(s).
        secret: Secrets,
    },
    /// Any JSON provider, described in the config: an authentication scheme and a mapping.
    Generic {
        /// How requests are authenticated.
        auth: AuthConfig,
        /// How the payload becomes the normalized event.
        mapping: MappingConfig,
    },
}

/// Where a token is presented.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenIn {
    /// `?token=...` (name configurable).
    #[default]
    Query,
    /// `/hooks/{tenant}/{source}/{token}`.
    Path,
    /// A header (name configurable; a `Bearer ` prefix is accepted).
    Header,
}

/// An authentication scheme for a generic source (`scheme = "..."`).
#[derive(Debug, Deserialize)]
#[serde(tag = "scheme", rename_all = "kebab-case", deny_unknown_fields)]
pub enum AuthConfig {
    /// A shared token in a header, the query or the path.
    Token {
        /// Accepted tokens.
        token: Secrets,
        /// Where: `header` (default here), `query` or `path`.
        #[serde(default = "token_in_header")]
        token_in: TokenIn,
        /// Header or query parameter name (default `Authorization` / `token`).
        name: Option<String>,
    },
    /// HTTP Basic.
    Basic {
        /// User name.
        username: String,
        /// Accepted passwords.
        password: Secrets,
    },
    /// An HMAC signature in a header.
    Hmac {
        /// Signing secrets.
        secret: Secrets,
        /// Header carrying the signature.
        header: String,
        /// `sha256` (default) or `sha512`.
        #[serde(default)]
        algorithm: HmacAlgorithm,
        /// `hex` (default) or `base64`.
        #[serde(default)]
        encoding: HmacEncoding,
        /// Text before the signature (e.g. `sha256=`).
        prefix: Option<String>,
        /// Signed content: `{body}` (default), `{timestamp}`, `{header:Name}`.
        #[serde(default = "body_template")]
        template: String,
        /// Header with a timestamp checked against `tolerance_secs`.
        timestamp_header: Option<String>,
        /// Timestamp tolerance in seconds.
        #[serde(default = "default_tolerance")]
        tolerance_secs: u64,
    },
    /// Standard Webhooks signatures.
    StandardWebhooks {
        /// `whsec_...` secrets.
        secret: Secrets,
        /// Timestamp tolerance in seconds.
        #[serde(default = "default_tolerance")]
        tolerance_secs: u64,
    },
    /// Stripe-style signatures.
    Stripe {
        /// Secrets.
        secret: Secrets,
        /// Timestamp tolerance in seconds.
        #[serde(default = "default_tolerance")]
        tolerance_secs: u64,
    },
    /// Shopify-style signatures.
    Shopify {
        /// Secrets.
        secret: Secrets,
    },
    /// GitHub-style signatures.
    Github {
        /// Secrets.
        secret: Secrets,
    },
    /// No credential: allowed only together with `allow_ips`.
    None,
}

fn token_in_header() -> TokenIn {
    TokenIn::Header
}

fn body_template() -> String {
    "{body}".to_string()
}

/// HMAC digest for the generic scheme.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HmacAlgorithm {
    /// HMAC-SHA256.
    #[default]
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

/// Signature encoding for the generic scheme.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HmacEncoding {
    /// Hex.
    #[default]
    Hex,
    /// Base64.
    Base64,
}

/// How a generic provider's JSON becomes the normalized event: dotted JSON paths
/// (`data.object.id`, `items.0.sku`) for each field, and a status table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingConfig {
    /// Path of the event's unique id (the dedupe key).
    pub id: Option<String>,
    /// Or a header carrying it. With neither, the body's digest is the dedupe key.
    pub id_header: Option<String>,
    /// The kind of every event of this source (default `other`).
    pub kind: Option<crate::event::EventKind>,
    /// Or a path whose value is looked up in `kinds`.
    pub kind_path: Option<String>,
    /// Provider values of `kind_path` → kind.
    #[serde(default)]
    pub kinds: BTreeMap<String, crate::event::EventKind>,
    /// Path of the provider's order id.
    pub order_id: Option<String>,
    /// Path of the merchant's own order reference.
    pub merchant_ref: Option<String>,
    /// Path of the provider's status.
    pub status: Option<String>,
    /// Path of the provider's sub-status.
    pub sub_status: Option<String>,
    /// Path of a reason.
    pub reason: Option<String>,
    /// Path of the amount (kept exactly as sent).
    pub amount: Option<String>,
    /// Path of the currency.
    pub currency: Option<String>,
    /// Path of when it happened (seconds, milliseconds or RFC 3339).
    pub occurred_at: Option<String>,
    /// Provider status → canonical status (matched ignoring case); others are `unknown`.
    #[serde(default)]
    pub statuses: BTreeMap<String, crate::event::CanonicalStatus>,
    /// Further paths that must be present (422 naming the first missing one).
    #[serde(default)]
    pub required: Vec<String>,
}

/// A secret value. Written in the config as the value itself, `env:VAR` or `file:PATH`; resolved
/// when the config is loaded. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret's value, for comparing or handing to a plugin. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A secret from a literal (tests, tooling).
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    fn resolve(spec: &str) -> Result<Secret> {
        let value = if let Some(var) = spec.strip_prefix("env:") {
            std::env::var(var).with_context(|| {
                format!("secret refers to environment variable {var}, which is not set: export it or write the value in the config")
            })?
        } else if let Some(path) = spec.strip_prefix("file:") {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("secret refers to file {path}, which cannot be read"))?;
            text.trim_end_matches(['\n', '\r']).to_string()
        } else {
            spec.to_string()
        };
        if value.is_empty() {
            bail!("a secret is empty: give it a value (an empty secret would accept anything)");
        }
        Ok(Secret(value))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spec = String::deserialize(d)?;
        Secret::resolve(&spec).map_err(|e| serde::de::Error::custom(format!("{e:#}")))
    }
}

/// One or more secrets accepted at once, so a provider's secret can be rotated without downtime.
#[derive(Debug, Clone)]
pub struct Secrets(pub Vec<Secret>);

impl<'de> Deserialize<'de> for Secrets {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(Secret),
            Many(Vec<Secret>),
        }
        let list = match OneOrMany::deserialize(d)? {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        };
        if list.is_empty() {
            return Err(serde::de::Error::custom("at least one secret is required"));
        }
        Ok(Secrets(list))
    }
}

impl Config {
    /// Reads and validates a config file; relative paths in it become relative to its folder.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let mut config: Config = toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "config file {} is invalid: {}",
                path.display(),
                describe_parse_error(&text, &e)
            )
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        config.validate()?;
        config.path = Some(path.to_path_buf());
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let abs = |p: &PathBuf| {
            if p.is_absolute() {
                p.clone()
            } else {
                base.join(p)
            }
        };
        self.database = abs(&self.database);
        self.cache_dir = Some(match &self.cache_dir {
            Some(dir) => abs(dir),
            None => self
                .database
                .parent()
                .unwrap_or(Path::new("."))
                .join("cache"),
        });
        for tenant in self.tenants.values_mut() {
            tenant.plugin = abs(&tenant.plugin);
            for case in &mut tenant.self_test {
                case.file = abs(&case.file);
            }
        }
    }

    fn validate(&self) -> Result<()> {
        let valid_name = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        for (name, tenant) in &self.tenants {
            if !valid_name(name) {
                bail!("tenant name {name:?} must be 1-64 letters, digits, '-' or '_' (it appears in URLs)");
            }
            for source in tenant.sources.keys() {
                if !valid_name(source) {
                    bail!("source name {source:?} of tenant {name} must be 1-64 letters, digits, '-' or '_'");
                }
            }
            if tenant.limits.timeout_ms == 0
                || tenant.limits.memory_mib == 0
                || tenant.limits.max_concurrency == 0
            {
                bail!("tenant {name}: limits.timeout_ms, limits.memory_mib and limits.max_concurrency must be above zero");
            }
            if tenant
                .limits
                .ingest_per_second
                .is_some_and(|r| !(r.is_finite() && r >= MIN_INGEST_PER_SECOND))
            {
                bail!("tenant {name}: limits.ingest_per_second must be a number of at least {MIN_INGEST_PER_SECOND} (one webhook in about 17 minutes; leave it out for no limit)");
            }
            if tenant.limits.kv_write_bytes < tenant.limits.kv_value_bytes {
                bail!("tenant {name}: limits.kv_write_bytes ({}) must be at least limits.kv_value_bytes ({}): an attempt must be able to write one value", tenant.limits.kv_write_bytes, tenant.limits.kv_value_bytes);
            }
            if !(1..=100_000).contains(&tenant.limits.instance_reuse) {
                bail!("tenant {name}: limits.instance_reuse must be from 1 (a fresh instance per event) to 100000");
            }
            if tenant.limits.fuel == Some(0) {
                bail!("tenant {name}: limits.fuel must be above zero (leave it out for no budget)");
            }
            if tenant.retry.max_attempts == 0 {
                bail!("tenant {name}: retry.max_attempts must be at least 1");
            }
            if tenant.limits.memory_mib > self.max_memory_mib() {
                bail!(
                    "tenant {name}: limits.memory_mib is {} but runtime.max_memory_mib (the pool's slot size) is {}: raise runtime.max_memory_mib or lower the tenant's limit",
                    tenant.limits.memory_mib,
                    self.max_memory_mib()
                );
            }
        }
        if self.dispatch.workers == 0 {
            bail!("dispatch.workers must be at least 1");
        }
        if self.http.max_connections == 0 || self.http.header_read_timeout_ms == 0 {
            bail!("http.max_connections and http.header_read_timeout_ms must be above zero");
        }
        if self.http.max_pending_body_bytes < self.max_body_bytes {
            bail!(
                "http.max_pending_body_bytes ({}) must be at least max_body_bytes ({}): a webhook of the largest size must fit",
                self.http.max_pending_body_bytes,
                self.max_body_bytes
            );
        }
        if self.max_body_bytes > u32::MAX as usize || self.http.max_pending_body_bytes > (1 << 40) {
            bail!("max_body_bytes must be below 4 GiB and http.max_pending_body_bytes below 1 TiB");
        }
        if self.max_instances() as usize <= self.dispatch.workers {
            bail!(
                "runtime.max_instances ({}) must be above dispatch.workers ({}): every running attempt holds an instance",
                self.max_instances(),
                self.dispatch.workers
            );
        }
        if self.max_memory_mib() == 0 || self.max_memory_mib() > 4096 {
            bail!("runtime.max_memory_mib must be 1 to 4096 (32-bit WebAssembly memories)");
        }
        Ok(())
    }
}

/// A parse error as line, column, key and what is wrong, never the text of a value: the file
/// holds secrets, and the message reaches the log, the admin API and the reload's answer. toml's
/// own rendering quotes the offending line, and serde's messages quote string values
/// (`invalid type: string "..."`), so both are rebuilt here.
fn describe_parse_error(text: &str, error: &toml::de::Error) -> String {
    let message = redact_values(error.message());
    let Some(span) = error.span() else {
        return message;
    };
    let start = span.start.min(text.len());
    let before = &text[..start];
    let line_no = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..start].chars().count() + 1;
    let line = text[line_start..].lines().next().unwrap_or("");
    // The table the error is in: the nearest header at or above the error's line.
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let table = text[..line_end]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .and_then(|l| l.split(']').next())
        .map(|l| l.trim_start_matches('[').trim().to_string());
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().to_string())
        .filter(|k| !k.is_empty() && !k.starts_with('#'));
    let place = match (key, table) {
        (Some(key), Some(table)) => format!(", key `{key}` in [{table}]"),
        (Some(key), None) => format!(", key `{key}`"),
        (None, Some(table)) => format!(", in [{table}]"),
        (None, None) => String::new(),
    };
    format!("line {line_no}, column {column}{place}: {message}")
}

/// Removes quoted text from a parser message (values: `string "..."`, `unknown variant `...``),
/// keeping what names keys and expectations.
fn redact_values(message: &str) -> String {
    let mut out = String::new();
    let mut rest = message.trim();
    while let Some(open) = rest.find('"') {
        out.push_str(&rest[..open]);
        match rest[open + 1..].find('"') {
            Some(close) => {
                out.push_str("(value hidden)");
                rest = &rest[open + 1 + close + 1..];
            }
            None => {
                out.push_str("(value hidden)");
                rest = "";
            }
        }
    }
    out.push_str(rest);
    // `unknown variant `x`, expected ...`: the variant is the value written.
    const VARIANT: &str = "unknown variant `";
    while let Some(at) = out.find(VARIANT) {
        let after = &out[at + VARIANT.len()..];
        let rest = after.find('`').map_or("", |close| &after[close + 1..]);
        out = format!("{}unknown value{rest}", &out[..at]);
    }
    out.lines().next().unwrap_or("").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_file_names_line_column_and_key_never_a_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.toml");
        let secret = "sup3r-s3cret-t0ken";
        for (text, key) in [
            // A syntax error on the secret's line (the review's case: the quote is not closed).
            (
                format!("database = 'x'\n[tenants.a]\nplugin = 'p.wasm'\n[tenants.a.sources.s]\nprovider = 'fincart'\ntoken = \"{secret}\n"),
                "token",
            ),
            // A type error: a string where a number belongs.
            (
                format!("database = 'x'\n[tenants.a]\nplugin = 'p.wasm'\n[tenants.a.limits]\ntimeout_ms = \"{secret}\"\n"),
                "timeout_ms",
            ),
            // A secret written where a provider name belongs.
            (
                format!("database = 'x'\n[tenants.a]\nplugin = 'p.wasm'\n[tenants.a.sources.s]\nprovider = \"{secret}\"\ntoken = 't'\n"),
                "",
            ),
        ] {
            std::fs::write(&path, &text).unwrap();
            let err = format!("{:#}", Config::load(&path).unwrap_err());
            assert!(!err.contains(secret), "value echoed: {err}");
            assert!(!err.contains("sup3r"), "part of the value echoed: {err}");
            assert!(err.contains("line "), "no line: {err}");
            assert!(err.contains(key), "key {key} not named: {err}");
        }
    }

    #[test]
    fn secrets_resolve_from_env_and_never_print() {
        std::env::set_var("HOOKHOST_TEST_SECRET_A", "s3cr3t");
        let cfg: Config = toml::from_str(
            r#"
            database = "db.sqlite"
            [tenants.acme]
            plugin = "p.wasm"
            [tenants.acme.sources.fc]
            provider = "fincart"
            token = ["env:HOOKHOST_TEST_SECRET_A", "literal"]
            "#,
        )
        .unwrap();
        let ProviderConfig::Fincart { token } = &cfg.tenants["acme"].sources["fc"].provider else {
            panic!()
        };
        assert_eq!(token.0[0].expose(), "s3cr3t");
        assert_eq!(token.0[1].expose(), "literal");
        let shown = format!("{cfg:?}");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("literal"),
            "{shown}"
        );
    }

    #[test]
    fn missing_env_secret_says_which_variable() {
        let err = toml::from_str::<Config>(
            r#"
            database = "db.sqlite"
            [admin]
            token = "env:HOOKHOST_TEST_SURELY_UNSET"
            "#,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("HOOKHOST_TEST_SURELY_UNSET"),
            "{err}"
        );
    }

    #[test]
    fn the_pool_is_sized_from_the_config_and_checked_against_the_tenants() {
        let parse = |text: &str| {
            let mut cfg: Config = toml::from_str(text).unwrap();
            cfg.resolve_paths(Path::new("/etc"));
            cfg
        };
        let tenant = "[tenants.a]\nplugin = 'p.wasm'\nlimits = { memory_mib = 128 }\n";
        let defaults = parse(&format!("database = 'x'\n{tenant}"));
        defaults.validate().unwrap();
        assert_eq!(
            (defaults.max_instances(), defaults.max_memory_mib()),
            (64, 128)
        );
        let sized = parse(&format!(
            "database = 'x'\n[runtime]\nmax_instances = 40\nmax_memory_mib = 256\n{tenant}"
        ));
        sized.validate().unwrap();
        assert_eq!((sized.max_instances(), sized.max_memory_mib()), (40, 256));
        let small_slots = parse(&format!(
            "database = 'x'\n[runtime]\nmax_memory_mib = 64\n{tenant}"
        ));
        let err = small_slots.validate().unwrap_err().to_string();
        assert!(err.contains("runtime.max_memory_mib"), "{err}");
        let few = parse(&format!(
            "database = 'x'\n[runtime]\nmax_instances = 32\n{tenant}"
        ));
        let err = few.validate().unwrap_err().to_string();
        assert!(err.contains("dispatch.workers (32)"), "{err}");
    }

    #[test]
    fn unknown_keys_and_bad_names_are_rejected() {
        assert!(toml::from_str::<Config>("database = 'x'\nlisten_addr = '1'").is_err());
        let mut cfg: Config =
            toml::from_str("database = 'x'\n[tenants.'a b']\nplugin = 'p.wasm'").unwrap();
        cfg.resolve_paths(Path::new("/etc"));
        assert!(cfg.validate().unwrap_err().to_string().contains("a b"));
    }

    #[test]
    fn instance_reuse_is_bounded_and_defaults_to_a_fresh_instance() {
        let with = |reuse: &str| {
            let mut cfg: Config = toml::from_str(&format!(
                "database = 'x'\n[tenants.a]\nplugin = 'p.wasm'\n[tenants.a.limits]\n{reuse}"
            ))
            .unwrap();
            cfg.resolve_paths(Path::new("/etc"));
            cfg
        };
        let default = with("");
        assert_eq!(default.tenants["a"].limits.instance_reuse, 1);
        default.validate().unwrap();
        with("instance_reuse = 500").validate().unwrap();
        for bad in ["instance_reuse = 0", "instance_reuse = 100001"] {
            let err = with(bad).validate().unwrap_err().to_string();
            assert!(err.contains("limits.instance_reuse"), "{bad}: {err}");
        }
    }

    #[test]
    fn source_typos_and_unknown_providers_are_named() {
        let parse = |source: &str| {
            toml::from_str::<Config>(&format!(
                "database = 'x'\n[tenants.a]\nplugin = 'p.wasm'\n[tenants.a.sources.s]\n{source}"
            ))
            .map(|_| ())
            .unwrap_err()
            .to_string()
        };
        let typo = parse("provider = 'fincart'\ntokn = 'x'");
        assert!(typo.contains("tokn"), "{typo}");
        let unknown = parse("provider = 'paypal'\ntoken = 'x'");
        assert!(unknown.contains("fincart"), "{unknown}");
        let missing = parse("provider = 'juspay'\nusername = 'u'");
        assert!(missing.contains("password"), "{missing}");
        let ips = parse("provider = 'finchpay'\nallow_ips = '10.0.0.0/8'");
        assert!(ips.contains("allow_ips"), "{ips}");
        let cfg: Config = toml::from_str(
            "database = 'x'\n[tenants.a]\nplugin = 'p.wasm'\n[tenants.a.sources.s]\nprovider = 'finchpay'\nallow_ips = ['10.0.0.0/8']\ntoken_in = 'path'\ntoken = 't'",
        )
        .unwrap();
        let source = &cfg.tenants["a"].sources["s"];
        assert_eq!(source.allow_ips, vec!["10.0.0.0/8"]);
        assert!(matches!(
            source.provider,
            ProviderConfig::Finchpay {
                token_in: TokenIn::Path,
                ..
            }
        ));
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        let mut cfg: Config =
            toml::from_str("database = 'data/h.db'\n[tenants.a]\nplugin = 'p.wasm'").unwrap();
        cfg.resolve_paths(Path::new("/srv/hh"));
        assert_eq!(cfg.database, Path::new("/srv/hh/data/h.db"));
        assert_eq!(
            cfg.cache_dir.as_deref(),
            Some(Path::new("/srv/hh/data/cache"))
        );
        assert_eq!(cfg.tenants["a"].plugin, Path::new("/srv/hh/p.wasm"));
    }
}
