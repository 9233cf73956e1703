//! The Rust SDK for hookhost merchant plugins.
//!
//! A plugin is a type that implements [`Plugin`], exported with [`export_plugin!`], built for
//! `wasm32-wasip2` as a `cdylib`. hookhost calls [`Plugin::handle`] once per webhook, in a fresh
//! instance, with the webhook normalized into an [`Event`]. The plugin reacts through the host's
//! capabilities: [`kv`] (the tenant's own store, committed only when the attempt succeeds),
//! [`http`] (outbound requests to allow-listed hosts), [`config`] and [`log`].
//!
//! ```no_run
//! use hookhost_guest::prelude::*;
//!
//! struct LatestStatus;
//!
//! impl Plugin for LatestStatus {
//!     fn handle(event: Event) -> Result<Outcome> {
//!         let order = event.order_key().context("event carries no order id")?;
//!         kv::set_string(&format!("status/{order}"), event.raw_status.as_deref().unwrap_or(""))?;
//!         info!("order {order} is now {:?}", event.status);
//!         Ok(Outcome::Done)
//!     }
//! }
//!
//! export_plugin!(LatestStatus);
//! ```
//!
//! Build it with `cargo build --target wasm32-wasip2 --release`; the `.wasm` in
//! `target/wasm32-wasip2/release/` is already a component hookhost loads.

#![warn(missing_docs)]

use std::fmt;

/// The raw bindings generated from `wit/v0.1.0` by `wit-bindgen`. Most plugins never need them:
/// the SDK re-exports the types and wraps the imports.
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit/v0.1.0",
        world: "merchant-plugin",
        pub_export_macro: true,
        export_macro_name: "__export_handler",
        default_bindings_module: "hookhost_guest::bindings",
        generate_all,
    });
}

pub use bindings::hookhost::plugin::types::{CanonicalStatus, Event, EventKind, Money, Outcome};

/// Re-exported so [`export_plugin!`] can name it from the plugin's crate.
#[doc(hidden)]
pub use bindings::exports::hookhost::plugin::handler::Guest as __Guest;

/// Helpers for a plugin's native unit tests (`cargo test`): the plugin's pure logic runs
/// natively; the host's capabilities (kv, http, …) exist only inside hookhost.
pub mod testing {
    use crate::{CanonicalStatus, Event, EventKind, Money};

    /// A typical event to start a test from: the successful payment of order `1001` (merchant
    /// reference `#1001`), 49.99 USD, first attempt. Change the fields the test is about.
    ///
    /// ```
    /// let mut event = hookhost_guest::testing::event();
    /// event.status = hookhost_guest::CanonicalStatus::Failed;
    /// assert_eq!(event.order_key(), Some("#1001"));
    /// ```
    pub fn event() -> Event {
        Event {
            id: "evt-1".into(),
            tenant: "test".into(),
            source: "test".into(),
            provider: "test".into(),
            kind: EventKind::Payment,
            order_id: Some("1001".into()),
            merchant_ref: Some("#1001".into()),
            status: CanonicalStatus::Succeeded,
            raw_status: Some("PAID".into()),
            raw_sub_status: None,
            reason: None,
            amount: Some(Money {
                amount: "49.99".into(),
                currency: Some("USD".into()),
            }),
            occurred_at_ms: Some(1_738_336_796_000),
            received_at_ms: 1_738_336_797_000,
            attempt: 1,
            payload: r#"{"orderId":"1001","status":"PAID"}"#.into(),
        }
    }
}

/// Everything a plugin usually needs, in one `use`.
pub mod prelude {
    pub use crate::{
        bail, config, debug, error, export_plugin, http, info, kv, warn, CanonicalStatus, Context,
        Error, Event, EventKind, Money, Outcome, Plugin, Result,
    };
    pub use serde::{Deserialize, Serialize};
    pub use serde_json::json;
}

/// A merchant's reaction to webhooks.
pub trait Plugin {
    /// Handles one event. Return an [`Outcome`] to say what happened, or an [`Error`] to have
    /// hookhost record the message and retry the event with backoff (kv writes of this attempt are
    /// discarded either way unless the outcome is `Done` or `Skipped`).
    fn handle(event: Event) -> Result<Outcome>;
}

/// Exports a [`Plugin`] implementation as the component's handler.
///
/// ```no_run
/// # use hookhost_guest::prelude::*;
/// struct Noop;
/// impl Plugin for Noop {
///     fn handle(_event: Event) -> Result<Outcome> { Ok(Outcome::Skipped("nothing to do".into())) }
/// }
/// hookhost_guest::export_plugin!(Noop);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[doc(hidden)]
        struct __HookhostExport;

        impl $crate::__Guest for __HookhostExport {
            fn handle(
                event: $crate::Event,
            ) -> ::core::result::Result<$crate::Outcome, ::std::string::String> {
                <$plugin as $crate::Plugin>::handle(event).map_err(|e| e.to_string())
            }
        }

        $crate::bindings::__export_handler!(__HookhostExport with_types_in $crate::bindings);
    };
}

/// Why a plugin could not handle an event. Any `std::error::Error` converts into it with `?`;
/// use [`Context::context`] on an `Option` or a foreign error to say what was being done.
pub struct Error {
    message: String,
}

impl Error {
    /// An error with this message.
    pub fn msg(message: impl fmt::Display) -> Error {
        Error {
            message: message.to_string(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error> From<E> for Error {
    fn from(e: E) -> Error {
        Error::msg(e)
    }
}

/// The result type of a plugin's handler and of the SDK's helpers.
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// Adds a message to a missing value or a failure, like `anyhow::Context`.
pub trait Context<T> {
    /// Turns `None` or an error into an [`Error`] that says `message` (and the cause, if any).
    fn context(self, message: impl fmt::Display) -> Result<T>;
}

impl<T> Context<T> for Option<T> {
    fn context(self, message: impl fmt::Display) -> Result<T> {
        self.ok_or_else(|| Error::msg(message))
    }
}

impl<T, E: fmt::Display> Context<T> for core::result::Result<T, E> {
    fn context(self, message: impl fmt::Display) -> Result<T> {
        self.map_err(|e| Error::msg(format!("{message}: {e}")))
    }
}

impl Event {
    /// The order as the merchant names it, for keying the plugin's own state: the merchant's
    /// reference when the provider sends one, else the provider's order id. It is not the key
    /// hookhost serializes delivery on (the provider's order id first: see `order-id` in the WIT),
    /// so two events with the same `order_key` but different order ids may run at the same time;
    /// kv stays consistent (a conflicting attempt runs again).
    pub fn order_key(&self) -> Option<&str> {
        self.merchant_ref.as_deref().or(self.order_id.as_deref())
    }

    /// Whether the provider's raw status equals `status`, ignoring ASCII case.
    pub fn raw_status_is(&self, status: &str) -> bool {
        self.raw_status
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case(status))
    }

    /// Whether the canonical status is final: nothing more is expected to happen to the order.
    pub fn is_final(&self) -> bool {
        matches!(
            self.status,
            CanonicalStatus::Succeeded
                | CanonicalStatus::Failed
                | CanonicalStatus::Cancelled
                | CanonicalStatus::Refunded
        )
    }

    /// The provider's payload parsed into `T` (use `serde_json::Value` for ad-hoc access).
    pub fn payload_as<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_str(&self.payload)
            .context("the event payload does not have the expected shape")
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EventKind::OrderStatusChanged => "order-status-changed",
            EventKind::OrderUpdated => "order-updated",
            EventKind::Payment => "payment",
            EventKind::Payout => "payout",
            EventKind::Transaction => "transaction",
            EventKind::Other => "other",
        })
    }
}

impl fmt::Display for CanonicalStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CanonicalStatus::Pending => "pending",
            CanonicalStatus::Processing => "processing",
            CanonicalStatus::Succeeded => "succeeded",
            CanonicalStatus::Failed => "failed",
            CanonicalStatus::Cancelled => "cancelled",
            CanonicalStatus::Refunded => "refunded",
            CanonicalStatus::Unknown => "unknown",
        })
    }
}

/// The tenant's private key-value store. Writes become visible to other events only when this
/// attempt succeeds; reads see this attempt's own writes.
pub mod kv {
    use super::{Context, Result};
    use crate::bindings::hookhost::plugin::kv as raw;

    fn map<T>(r: core::result::Result<T, raw::Error>, key: &str) -> Result<T> {
        r.map_err(|e| {
            crate::Error::msg(match e {
                raw::Error::InvalidKey(max) => {
                    format!("kv key {key:?} is empty or longer than {max} bytes")
                }
                raw::Error::ValueTooLarge(max) => {
                    format!("kv value for {key:?} is larger than {max} bytes")
                }
                raw::Error::TooManyKeys(max) => {
                    format!("kv store is full ({max} keys); cannot add {key:?}")
                }
                raw::Error::Storage(m) => format!("kv store failed on {key:?}: {m}"),
            })
        })
    }

    /// The bytes stored under `key`.
    pub fn get(key: &str) -> Result<Option<Vec<u8>>> {
        map(raw::get(key), key)
    }

    /// Stores bytes under `key`.
    pub fn set(key: &str, value: &[u8]) -> Result<()> {
        map(raw::set(key, value), key)
    }

    /// The UTF-8 string stored under `key`.
    pub fn get_string(key: &str) -> Result<Option<String>> {
        get(key)?
            .map(|v| String::from_utf8(v).context(format!("kv value of {key:?} is not UTF-8")))
            .transpose()
    }

    /// Stores a string under `key`.
    pub fn set_string(key: &str, value: &str) -> Result<()> {
        set(key, value.as_bytes())
    }

    /// The JSON value stored under `key`, deserialized.
    pub fn get_json<T: serde::de::DeserializeOwned>(key: &str) -> Result<Option<T>> {
        get(key)?
            .map(|v| {
                serde_json::from_slice(&v)
                    .context(format!("kv value of {key:?} is not the expected JSON"))
            })
            .transpose()
    }

    /// Stores `value` as JSON under `key`.
    pub fn set_json<T: serde::Serialize + ?Sized>(key: &str, value: &T) -> Result<()> {
        set(key, &serde_json::to_vec(value)?)
    }

    /// Removes `key`; returns whether it existed.
    pub fn delete(key: &str) -> Result<bool> {
        map(raw::delete(key), key)
    }

    /// Up to `limit` keys starting with `prefix`, in ascending order.
    pub fn list_keys(prefix: &str, limit: u32) -> Result<Vec<String>> {
        map(raw::list_keys(prefix, limit), prefix)
    }

    /// Stores `value` under `key` only if the key is absent; returns whether it did. Because kv
    /// writes commit only with a successful attempt, "do X once per order" is safe under retries:
    /// if X fails, the marker is discarded with the attempt.
    pub fn set_if_absent(key: &str, value: &[u8]) -> Result<bool> {
        map(raw::set_if_absent(key, value), key)
    }
}

/// Outbound HTTP to the hosts on the tenant's allow-list.
pub mod http {
    use super::{Context, Error, Result};
    use crate::bindings::hookhost::plugin::http as raw;
    pub use raw::Method;

    /// A response; any status code is a response (see [`Response::error_for_status`]).
    #[derive(Debug)]
    pub struct Response {
        /// HTTP status code.
        pub status: u16,
        /// Header names and values.
        pub headers: Vec<(String, String)>,
        /// The whole body.
        pub body: Vec<u8>,
    }

    impl Response {
        /// Fails unless the status is 2xx, with the status and the start of the body in the
        /// message: returning that error from the handler makes hookhost retry the event.
        pub fn error_for_status(self) -> Result<Response> {
            if (200..300).contains(&self.status) {
                Ok(self)
            } else {
                let body =
                    String::from_utf8_lossy(&self.body[..self.body.len().min(200)]).into_owned();
                Err(Error::msg(format!(
                    "HTTP {} from the server: {body}",
                    self.status
                )))
            }
        }

        /// The body parsed as JSON.
        pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
            serde_json::from_slice(&self.body).context("response body is not the expected JSON")
        }

        /// The body as text (invalid UTF-8 replaced).
        pub fn text(&self) -> String {
            String::from_utf8_lossy(&self.body).into_owned()
        }
    }

    /// Sends a request with full control over method, headers, body and timeout.
    pub fn send(
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
        timeout_ms: Option<u32>,
    ) -> Result<Response> {
        let request = raw::Request {
            method,
            url: url.to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body,
            timeout_ms,
        };
        match raw::send(&request) {
            Ok(r) => Ok(Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
            }),
            Err(e) => Err(Error::msg(match e {
                raw::Error::Denied(why) => format!("request to {url} denied: {why}"),
                raw::Error::InvalidRequest(why) => format!("invalid request to {url}: {why}"),
                raw::Error::Timeout => format!("request to {url} timed out"),
                raw::Error::Transport(why) => format!("request to {url} failed: {why}"),
                raw::Error::ResponseTooLarge(max) => {
                    format!("response from {url} is over {max} bytes")
                }
                raw::Error::TooManyRequests(max) => {
                    format!("more than {max} requests in one attempt")
                }
            })),
        }
    }

    /// `GET url`.
    pub fn get(url: &str) -> Result<Response> {
        send(Method::Get, url, &[], None, None)
    }

    /// `POST url` with `value` as a JSON body.
    pub fn post_json<T: serde::Serialize + ?Sized>(url: &str, value: &T) -> Result<Response> {
        send(
            Method::Post,
            url,
            &[("content-type", "application/json")],
            Some(serde_json::to_vec(value)?),
            None,
        )
    }
}

/// The tenant's configured values and secrets.
pub mod config {
    use super::{Context, Result};
    use crate::bindings::hookhost::plugin::config as raw;

    /// A configured value.
    pub fn get(key: &str) -> Option<String> {
        raw::get(key)
    }

    /// A configured value that the plugin cannot work without.
    pub fn require(key: &str) -> Result<String> {
        raw::get(key).context(format!("config value {key:?} is not set for this tenant"))
    }

    /// A configured secret. Never log it.
    pub fn secret(key: &str) -> Result<String> {
        raw::get_secret(key).context(format!("secret {key:?} is not set for this tenant"))
    }
}

/// Log lines, captured with the attempt. Prefer the [`info!`], [`warn!`], [`error!`] and
/// [`debug!`] macros.
pub mod log {
    pub use crate::bindings::hookhost::plugin::log::{write, Level};
}

/// Returns an [`Error`] from the handler, `format!`-style: hookhost records it and retries.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => { return Err($crate::Error::msg(format!($($arg)*))) };
}

/// Logs at info level, `format!`-style.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Info, &format!($($arg)*)) };
}

/// Logs at warn level, `format!`-style.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Warn, &format!($($arg)*)) };
}

/// Logs at error level, `format!`-style.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Error, &format!($($arg)*)) };
}

/// Logs at debug level, `format!`-style.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Debug, &format!($($arg)*)) };
}
