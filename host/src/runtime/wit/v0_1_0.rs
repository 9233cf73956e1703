//! `hookhost:plugin@0.1.0` (`wit/v0.1.0`, frozen): its bindings, the conversions between its
//! types and the host's, and the host side of its imports, each a thin adapter over a capability
//! in [`crate::capabilities`]. A new WIT version is a new module like this one, added to
//! [`super`]'s enums; the rest of the runtime knows only the host's types.

use anyhow::{anyhow, Result};
use wasmtime::component::{HasSelf, InstancePre, Linker};
use wasmtime::Store;

use crate::capabilities::http::{HttpError, HttpRequest, Method};
use crate::capabilities::kv::KvError;
use crate::capabilities::log::Level;
use crate::event::{CanonicalStatus, EventKind};
use crate::runtime::store::PluginState;
use crate::runtime::PluginOutcome;
use crate::storage::StoredEvent;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "merchant-plugin",
        imports: {
            "hookhost:plugin/http.send": async | trappable,
            "hookhost:plugin/kv": async | trappable,
            default: trappable,
        },
        exports: { default: async },
    });
}

use bindings::hookhost::plugin::{
    config as wit_config, http as wit_http, kv as wit_kv, log as wit_log, types as wit,
};
use bindings::{MerchantPlugin, MerchantPluginPre};

/// The world a component must export, as errors name it.
pub const WORLD: &str = "hookhost:plugin/merchant-plugin@0.1.0";

/// Links this version's imports (the host impls below).
pub fn add_to_linker(linker: &mut Linker<PluginState>) -> Result<()> {
    MerchantPlugin::add_to_linker::<_, HasSelf<_>>(linker, |s| s)
        .map_err(|e| anyhow!("cannot link hookhost's {WORLD} capabilities: {e:#}"))
}

/// A component of this world, linked and type-checked.
pub struct Pre(MerchantPluginPre<PluginState>);

/// One instance of it.
pub struct Instance(MerchantPlugin);

impl Pre {
    /// Checks that `pre` exports this world.
    pub fn new(pre: InstancePre<PluginState>) -> Result<Pre> {
        MerchantPluginPre::new(pre)
            .map(Pre)
            .map_err(|e| anyhow!("{e:#}"))
    }

    /// A new instance in `store`.
    pub async fn instantiate(&self, store: &mut Store<PluginState>) -> wasmtime::Result<Instance> {
        self.0.instantiate_async(store).await.map(Instance)
    }
}

impl Instance {
    /// Calls `handler.handle` with `event`: the plugin's outcome, or the error it returned.
    pub async fn handle(
        &self,
        store: &mut Store<PluginState>,
        event: &StoredEvent,
        attempt: u32,
    ) -> wasmtime::Result<Result<PluginOutcome, String>> {
        let input = to_wit(event, attempt);
        let result = self
            .0
            .hookhost_plugin_handler()
            .call_handle(store, &input)
            .await?;
        Ok(result.map(PluginOutcome::from))
    }
}

impl From<wit::Outcome> for PluginOutcome {
    fn from(outcome: wit::Outcome) -> PluginOutcome {
        match outcome {
            wit::Outcome::Done => PluginOutcome::Done,
            wit::Outcome::Skipped(why) => PluginOutcome::Skipped(why),
            wit::Outcome::RetryAfter(s) => PluginOutcome::RetryAfter(s),
        }
    }
}

impl From<EventKind> for wit::EventKind {
    fn from(kind: EventKind) -> wit::EventKind {
        match kind {
            EventKind::OrderStatusChanged => wit::EventKind::OrderStatusChanged,
            EventKind::OrderUpdated => wit::EventKind::OrderUpdated,
            EventKind::Payment => wit::EventKind::Payment,
            EventKind::Payout => wit::EventKind::Payout,
            EventKind::Transaction => wit::EventKind::Transaction,
            EventKind::Other => wit::EventKind::Other,
        }
    }
}

impl From<CanonicalStatus> for wit::CanonicalStatus {
    fn from(status: CanonicalStatus) -> wit::CanonicalStatus {
        match status {
            CanonicalStatus::Pending => wit::CanonicalStatus::Pending,
            CanonicalStatus::Processing => wit::CanonicalStatus::Processing,
            CanonicalStatus::Succeeded => wit::CanonicalStatus::Succeeded,
            CanonicalStatus::Failed => wit::CanonicalStatus::Failed,
            CanonicalStatus::Cancelled => wit::CanonicalStatus::Cancelled,
            CanonicalStatus::Refunded => wit::CanonicalStatus::Refunded,
            CanonicalStatus::Unknown => wit::CanonicalStatus::Unknown,
        }
    }
}

/// The event as this version's `event` record.
fn to_wit(stored: &StoredEvent, attempt: u32) -> wit::Event {
    let e = &stored.event;
    wit::Event {
        id: e.id.clone(),
        tenant: stored.tenant.clone(),
        source: stored.source.clone(),
        provider: e.provider.clone(),
        kind: e.kind.into(),
        order_id: e.order_id.clone(),
        merchant_ref: e.merchant_ref.clone(),
        status: e.status.into(),
        raw_status: e.raw_status.clone(),
        raw_sub_status: e.raw_sub_status.clone(),
        reason: e.reason.clone(),
        amount: e.amount.as_ref().map(|m| wit::Money {
            amount: m.amount.clone(),
            currency: m.currency.clone(),
        }),
        occurred_at_ms: e.occurred_at_ms,
        received_at_ms: stored.received_at_ms,
        attempt,
        payload: String::from_utf8_lossy(&stored.body).into_owned(),
    }
}

impl wit::Host for PluginState {}

impl wit_log::Host for PluginState {
    fn write(&mut self, level: wit_log::Level, message: String) -> wasmtime::Result<()> {
        self.caps()?.log.write(level.into(), message);
        Ok(())
    }
}

impl From<KvError> for wit_kv::Error {
    fn from(e: KvError) -> wit_kv::Error {
        match e {
            KvError::InvalidKey(max) => wit_kv::Error::InvalidKey(max),
            KvError::ValueTooLarge(max) => wit_kv::Error::ValueTooLarge(max),
            KvError::TooManyKeys(max) => wit_kv::Error::TooManyKeys(max),
            KvError::WriteBudgetExceeded(budget) => wit_kv::Error::ValueTooLarge(budget),
            KvError::Storage(m) => wit_kv::Error::Storage(m),
        }
    }
}

impl From<wit_log::Level> for Level {
    fn from(level: wit_log::Level) -> Level {
        match level {
            wit_log::Level::Trace => Level::Trace,
            wit_log::Level::Debug => Level::Debug,
            wit_log::Level::Info => Level::Info,
            wit_log::Level::Warn => Level::Warn,
            wit_log::Level::Error => Level::Error,
        }
    }
}

/// Async: every kv call may read the store, and no plugin call blocks a tokio worker on it.
impl wit_kv::Host for PluginState {
    async fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, wit_kv::Error>> {
        Ok(self.caps()?.kv.get(&key).await.map_err(Into::into))
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), wit_kv::Error>> {
        Ok(self.caps()?.kv.set(&key, value).await.map_err(Into::into))
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<bool, wit_kv::Error>> {
        Ok(self.caps()?.kv.delete(&key).await.map_err(Into::into))
    }

    async fn list_keys(
        &mut self,
        prefix: String,
        limit: u32,
    ) -> wasmtime::Result<Result<Vec<String>, wit_kv::Error>> {
        Ok(self
            .caps()?
            .kv
            .list_keys(&prefix, limit)
            .await
            .map_err(Into::into))
    }

    async fn set_if_absent(
        &mut self,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<bool, wit_kv::Error>> {
        Ok(self
            .caps()?
            .kv
            .set_if_absent(&key, value)
            .await
            .map_err(Into::into))
    }
}

impl wit_http::Host for PluginState {
    async fn send(
        &mut self,
        request: wit_http::Request,
    ) -> wasmtime::Result<Result<wit_http::Response, wit_http::Error>> {
        Ok(self
            .caps()?
            .http
            .send(request.into())
            .await
            .map(|r| wit_http::Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
            })
            .map_err(Into::into))
    }
}

impl From<wit_http::Request> for HttpRequest {
    fn from(request: wit_http::Request) -> HttpRequest {
        HttpRequest {
            method: match request.method {
                wit_http::Method::Get => Method::Get,
                wit_http::Method::Head => Method::Head,
                wit_http::Method::Post => Method::Post,
                wit_http::Method::Put => Method::Put,
                wit_http::Method::Patch => Method::Patch,
                wit_http::Method::Delete => Method::Delete,
            },
            url: request.url,
            headers: request.headers,
            body: request.body,
            timeout_ms: request.timeout_ms,
        }
    }
}

impl From<HttpError> for wit_http::Error {
    fn from(e: HttpError) -> wit_http::Error {
        match e {
            HttpError::Denied(m) => wit_http::Error::Denied(m),
            HttpError::InvalidRequest(m) => wit_http::Error::InvalidRequest(m),
            HttpError::Timeout => wit_http::Error::Timeout,
            HttpError::Transport(m) => wit_http::Error::Transport(m),
            HttpError::ResponseTooLarge(n) => wit_http::Error::ResponseTooLarge(n),
            HttpError::TooManyRequests(n) => wit_http::Error::TooManyRequests(n),
        }
    }
}

impl wit_config::Host for PluginState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.caps()?.config.get(&key))
    }

    fn get_secret(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.caps()?.config.get_secret(&key))
    }
}
