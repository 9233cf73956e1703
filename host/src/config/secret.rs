//! Secrets in the file: the value, `env:VAR` or `file:PATH`, resolved at load, never shown.

use std::fmt;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

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

    /// Resolves a spec as written in the config: `env:VAR`, `file:PATH` or the value itself.
    pub(crate) fn resolve(spec: &str) -> Result<Secret> {
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
