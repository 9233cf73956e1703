//! The operator's configuration file (TOML): listen address, store, admin token, and the tenants
//! with their plugin, limits, capabilities and webhook sources. Rooms: this module holds the
//! process-wide settings, loading and validation; [`tenant`] a tenant's settings, [`source`] a
//! webhook source's provider and authentication, [`secret`] secret values, [`parse_error`]
//! error messages that never quote the file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

mod parse_error;
mod secret;
mod source;
mod tenant;

use parse_error::describe_parse_error;
pub use secret::{Secret, Secrets};

/// Where the journal lives.
#[derive(Debug, Clone)]
pub enum Database {
    /// The embedded store: one process per file.
    Sqlite(PathBuf),
    /// A PostgreSQL server shared by any number of replicas. The URL is kept as a secret: it may
    /// hold the password.
    Postgres(Secret),
}

impl<'de> Deserialize<'de> for Database {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spec = String::deserialize(d)?;
        let value = if spec.starts_with("env:") || spec.starts_with("file:") {
            Secret::resolve(&spec)
                .map_err(|e| serde::de::Error::custom(format!("database: {e:#}")))?
        } else {
            Secret::new(spec)
        };
        let text = value.expose();
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Ok(Database::Postgres(value))
        } else if text.contains("://") {
            Err(serde::de::Error::custom(
                "database: only postgres:// URLs (or a SQLite file path) are supported",
            ))
        } else {
            Ok(Database::Sqlite(PathBuf::from(text)))
        }
    }
}
pub use source::{
    AuthConfig, HmacAlgorithm, HmacEncoding, MappingConfig, ProviderConfig, SecretScheme,
    SourceConfig, TimestampedScheme, TokenIn,
};
pub use tenant::{Limits, RetryPolicy, SelfTestConfig, SelfTestExpect, TenantConfig};

/// The smallest `limits.ingest_per_second`: slower rates make the limiter's wait times overflow.
pub const MIN_INGEST_PER_SECOND: f64 = 0.001;

/// The whole configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server listens on (webhooks, admin API, health).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Where the journal lives: the embedded SQLite database file (relative paths are relative to
    /// the config file), or a `postgres://` URL for several replicas over one PostgreSQL (the URL
    /// may also be given as `env:VAR` or `file:PATH`, like every secret).
    pub database: Database,
    /// The PostgreSQL password, when it is not in the URL (`env:VAR`, `file:PATH` or the value).
    pub database_password: Option<Secret>,
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
    /// How long a claim on an event lasts without renewal (renewed every third of it while its
    /// attempt runs). A process that stops for longer loses its claims to the reaper.
    pub lease_seconds: u64,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            workers: 32,
            lease_seconds: 30,
        }
    }
}

impl DispatchConfig {
    /// The dispatcher's pacing.
    pub fn settings(&self) -> crate::dispatcher::DispatchSettings {
        let lease = std::time::Duration::from_secs(self.lease_seconds);
        crate::dispatcher::DispatchSettings {
            lease,
            renew_every: lease / 3,
            ..crate::dispatcher::DispatchSettings::new(self.workers)
        }
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

impl Config {
    /// Reads and validates a config file; relative paths in it become relative to its folder.
    pub fn load(path: &Path) -> Result<Config> {
        Config::load_with_text(path).map(|(config, _)| config)
    }

    /// [`Self::load`], and the text it was read from (what a reload shares with other replicas).
    pub fn load_with_text(path: &Path) -> Result<(Config, String)> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let config: Config = toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "config file {} is invalid: {}",
                path.display(),
                describe_parse_error(&text, &e)
            )
        })?;
        let mut config = config.resolved(path.parent().unwrap_or(Path::new(".")))?;
        config.path = Some(path.to_path_buf());
        Ok((config, text))
    }

    /// Parses and validates a config's text; relative paths in it become relative to `base`.
    /// The host built from it cannot reload it (it has no file).
    pub fn from_toml(text: &str, base: &Path) -> Result<Config> {
        let config: Config = toml::from_str(text).map_err(|e| {
            anyhow::anyhow!("config is invalid: {}", describe_parse_error(text, &e))
        })?;
        config.resolved(base)
    }

    fn resolved(mut self, base: &Path) -> Result<Config> {
        self.resolve_paths(base);
        self.validate()?;
        Ok(self)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let abs = |p: &PathBuf| {
            if p.is_absolute() {
                p.clone()
            } else {
                base.join(p)
            }
        };
        if let Database::Sqlite(file) = &self.database {
            self.database = Database::Sqlite(abs(file));
        }
        self.cache_dir = Some(match (&self.cache_dir, &self.database) {
            (Some(dir), _) => abs(dir),
            (None, Database::Sqlite(file)) => file.parent().unwrap_or(Path::new(".")).join("cache"),
            (None, Database::Postgres(_)) => base.join("cache"),
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
        if self.dispatch.lease_seconds < 3 {
            bail!(
                "dispatch.lease_seconds must be at least 3 (leases are renewed every third of it)"
            );
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
    fn a_lease_too_short_to_renew_is_refused() {
        let parse = |lease: u64| {
            let mut cfg: Config = toml::from_str(&format!(
                "database = 'x'\n[dispatch]\nlease_seconds = {lease}\n[tenants.a]\nplugin = 'p.wasm'\n"
            ))
            .unwrap();
            cfg.resolve_paths(Path::new("/etc"));
            cfg
        };
        let err = parse(2).validate().unwrap_err().to_string();
        assert!(
            err.contains("dispatch.lease_seconds must be at least 3"),
            "{err}"
        );
        let ok = parse(9);
        ok.validate().unwrap();
        let settings = ok.dispatch.settings();
        assert_eq!(
            (settings.lease.as_secs(), settings.renew_every.as_secs()),
            (9, 3)
        );
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
        assert!(
            matches!(&cfg.database, Database::Sqlite(file) if file == Path::new("/srv/hh/data/h.db"))
        );
        assert_eq!(
            cfg.cache_dir.as_deref(),
            Some(Path::new("/srv/hh/data/cache"))
        );
        assert_eq!(cfg.tenants["a"].plugin, Path::new("/srv/hh/p.wasm"));
    }
}
