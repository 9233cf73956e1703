//! `config`: the tenant's own configured values and secrets, nothing else.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::Secret;

/// The values and secrets one tenant's plugin may read.
#[derive(Debug, Clone, Default)]
pub struct ConfigValues {
    values: Arc<BTreeMap<String, String>>,
    secrets: Arc<BTreeMap<String, Secret>>,
}

impl ConfigValues {
    /// A tenant's values and secrets.
    pub fn new(
        values: BTreeMap<String, String>,
        secrets: BTreeMap<String, Secret>,
    ) -> ConfigValues {
        ConfigValues {
            values: Arc::new(values),
            secrets: Arc::new(secrets),
        }
    }

    /// A configured value.
    pub fn get(&self, key: &str) -> Option<String> {
        self.values.get(key).cloned()
    }

    /// A configured secret (values and secrets are separate namespaces).
    pub fn get_secret(&self, key: &str) -> Option<String> {
        self.secrets.get(key).map(|s| s.expose().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_secrets_are_separate() {
        let c = ConfigValues::new(
            [("url".to_string(), "http://x".to_string())].into(),
            [("key".to_string(), Secret::new("s"))].into(),
        );
        assert_eq!(c.get("url").as_deref(), Some("http://x"));
        assert_eq!(c.get("key"), None);
        assert_eq!(c.get_secret("key").as_deref(), Some("s"));
        assert_eq!(c.get_secret("url"), None);
    }
}
