//! Sample payloads shipped in the binary, so `hookhost send` can exercise a plugin without the
//! provider. Fincart, FinchPay and Juspay samples are the providers' documents' own examples
//! (`shared/providers/`); the others follow the providers' published payload structures.

/// One sample webhook.
pub struct Sample {
    /// Provider name, as in the config (`provider = "..."`).
    pub provider: &'static str,
    /// Sample name (`--sample NAME`).
    pub name: &'static str,
    /// Headers the provider sends besides authentication; `{id}` becomes a fresh random id and
    /// `{now}` the current time (RFC 3339).
    pub headers: &'static [(&'static str, &'static str)],
    /// The JSON body.
    pub body: &'static str,
}

macro_rules! sample {
    ($provider:literal, $name:literal) => {
        sample!($provider, $name, &[])
    };
    ($provider:literal, $name:literal, $headers:expr) => {
        Sample {
            provider: $provider,
            name: $name,
            headers: $headers,
            body: include_str!(concat!("../../samples/", $provider, "/", $name, ".json")),
        }
    };
}

/// Every shipped sample; a provider's first one is its default.
pub const SAMPLES: &[Sample] = &[
    sample!("fincart", "order-status-changed"),
    sample!("sevi", "order-paid"),
    sample!("sevi", "order-payment-legacy"),
    sample!("juspay", "order-ready-for-fulfillment"),
    sample!("juspay", "order-fulfillments-scheduled"),
    sample!("juspay", "order-fulfillments-successful"),
    sample!("juspay", "fulfillment-success"),
    sample!("juspay", "fulfillment-pending"),
    sample!("juspay", "transaction-initiated"),
    sample!("juspay", "transaction-success"),
    sample!("juspay", "validation-error"),
    sample!("finchpay", "transaction-complete"),
    sample!("selldone", "payment-order"),
    sample!("stripe", "payment-intent-succeeded"),
    sample!(
        "shopify",
        "orders-paid",
        &[
            // Every header a real Shopify delivery carries (Shopify's own validators require
            // the API version).
            ("x-shopify-topic", "orders/paid"),
            ("x-shopify-api-version", "2025-07"),
            ("x-shopify-event-id", "{id}"),
            ("x-shopify-webhook-id", "{id}"),
            ("x-shopify-triggered-at", "{now}"),
            ("x-shopify-shop-domain", "example.myshopify.com"),
        ]
    ),
    sample!(
        "github",
        "check-run-completed",
        &[
            ("x-github-event", "check_run"),
            ("x-github-delivery", "{id}")
        ]
    ),
    sample!("standard-webhooks", "invoice-paid"),
];

/// The samples of `provider`.
pub fn of(provider: &str) -> impl Iterator<Item = &'static Sample> + '_ {
    SAMPLES.iter().filter(move |s| s.provider == provider)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_is_json_and_every_named_provider_has_a_default() {
        for s in SAMPLES {
            serde_json::from_str::<serde_json::Value>(s.body)
                .unwrap_or_else(|e| panic!("{}/{}: {e}", s.provider, s.name));
        }
        for p in [
            "fincart",
            "sevi",
            "juspay",
            "finchpay",
            "selldone",
            "stripe",
            "shopify",
            "github",
            "standard-webhooks",
        ] {
            assert!(of(p).next().is_some(), "{p} has no sample");
        }
    }
}
