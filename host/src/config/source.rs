//! A webhook source's part of the file: which provider sends to it, how its requests are
//! authenticated, and (for generic sources) how its JSON maps to the normalized event.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::secret::{Secret, Secrets};

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
    Stripe(TimestampedScheme),
    /// Shopify webhooks (`X-Shopify-Hmac-Sha256`).
    Shopify(SecretScheme),
    /// GitHub webhooks (`X-Hub-Signature-256`).
    Github(SecretScheme),
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
#[derive(Debug, Clone, Deserialize)]
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
    StandardWebhooks(TimestampedScheme),
    /// Stripe-style signatures.
    Stripe(TimestampedScheme),
    /// Shopify-style signatures.
    Shopify(SecretScheme),
    /// GitHub-style signatures.
    Github(SecretScheme),
    /// No credential: allowed only together with `allow_ips`.
    None,
}

/// The settings of a timestamped signature scheme (Stripe's, Standard Webhooks'): the same for
/// the provider of that name and for a generic source using its scheme.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimestampedScheme {
    /// Signing secrets (`whsec_...`); several during a rotation.
    pub secret: Secrets,
    /// How far the signed timestamp may be from now, in seconds.
    #[serde(default = "default_tolerance")]
    pub tolerance_secs: u64,
}

/// The settings of a signature scheme that has only secrets (Shopify's, GitHub's).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretScheme {
    /// Signing secrets; several during a rotation.
    pub secret: Secrets,
}

impl ProviderConfig {
    /// The authentication of a signing provider, as the scheme a generic source would name:
    /// one mapping from configured scheme to check serves both.
    pub fn signature_scheme(&self) -> Option<AuthConfig> {
        match self {
            ProviderConfig::StandardWebhooks {
                secret,
                tolerance_secs,
                ..
            } => Some(AuthConfig::StandardWebhooks(TimestampedScheme {
                secret: secret.clone(),
                tolerance_secs: *tolerance_secs,
            })),
            ProviderConfig::Stripe(scheme) => Some(AuthConfig::Stripe(scheme.clone())),
            ProviderConfig::Shopify(scheme) => Some(AuthConfig::Shopify(scheme.clone())),
            ProviderConfig::Github(scheme) => Some(AuthConfig::Github(scheme.clone())),
            _ => None,
        }
    }
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
