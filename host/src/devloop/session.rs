//! Where a host's admin API is, read from its config file, so the CLI needs no URL or token
//! typed in: `hookhost events --config FILE` as `hookhost send --config FILE` does.
//!
//! A config names its `listen` address and `[admin] token`. `hookhost dev` makes a new token per
//! run and may listen elsewhere (`--listen`), so while it runs it writes both to `session.json`
//! beside its config (mode 0600, like the token it holds), and removes it when it stops.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::Config;

/// A running dev host: what the CLI needs to reach its admin API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DevSession {
    /// Base URL, e.g. `http://127.0.0.1:8787`.
    pub url: String,
    /// This run's admin token.
    pub admin_token: String,
}

/// The session file of the host using the config at `config`.
pub fn session_path(config: &Path) -> PathBuf {
    config.with_file_name("session.json")
}

/// Records the running dev host beside its config, readable by its user only.
pub fn write(config: &Path, session: &DevSession) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = session_path(config);
    let tmp = path.with_extension("json.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(&serde_json::to_vec_pretty(session)?)?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Removes the session file (the dev host stops).
pub fn remove(config: &Path) {
    let _ = std::fs::remove_file(session_path(config));
}

/// The running dev host recorded beside `config`, if there is one.
pub fn read(config: &Path) -> Result<Option<DevSession>> {
    let path = session_path(config);
    match std::fs::read(&path) {
        Ok(text) => serde_json::from_slice(&text)
            .map(Some)
            .with_context(|| format!("{} is not a dev session file", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// How to reach a host's admin API according to a config file.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminEndpoint {
    /// Base URL.
    pub url: String,
    /// The admin token, when the config holds one.
    pub token: Option<String>,
}

/// The admin API of the host using `config`: a running dev host's session when there is one,
/// else the config's `listen` (an unspecified address means this machine) and `[admin] token`.
pub fn admin_endpoint(config: &Path) -> Result<AdminEndpoint> {
    if let Some(session) = read(config)? {
        return Ok(AdminEndpoint {
            url: session.url,
            token: Some(session.admin_token),
        });
    }
    let loaded = Config::load(config)?;
    Ok(AdminEndpoint {
        url: base_url(loaded.listen),
        token: loaded.admin.token.map(|t| t.expose().to_string()),
    })
}

/// `http://ADDR` for a listen address; an unspecified address (`0.0.0.0`) means this machine.
pub fn base_url(mut listen: std::net::SocketAddr) -> String {
    if listen.ip().is_unspecified() {
        listen.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    format!("http://{listen}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str =
        "listen = \"0.0.0.0:9123\"\ndatabase = \"x.db\"\n[admin]\ntoken = \"from-the-file\"\n";

    #[test]
    fn the_config_gives_the_url_and_token() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("hookhost.toml");
        std::fs::write(&config, CONFIG).unwrap();
        assert_eq!(
            admin_endpoint(&config).unwrap(),
            AdminEndpoint {
                url: "http://127.0.0.1:9123".into(),
                token: Some("from-the-file".into()),
            }
        );
    }

    #[test]
    fn a_running_dev_session_wins_and_is_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("hookhost.toml");
        std::fs::write(&config, CONFIG).unwrap();
        let session = DevSession {
            url: "http://127.0.0.1:40001".into(),
            admin_token: "this-run".into(),
        };
        write(&config, &session).unwrap();
        let mode = std::fs::metadata(session_path(&config))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "only its user reads the token");
        assert_eq!(
            admin_endpoint(&config).unwrap(),
            AdminEndpoint {
                url: session.url.clone(),
                token: Some(session.admin_token.clone()),
            }
        );
        remove(&config);
        assert_eq!(
            admin_endpoint(&config).unwrap().token.as_deref(),
            Some("from-the-file")
        );
    }

    #[test]
    fn a_missing_or_corrupt_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("hookhost.toml");
        let error = format!("{:#}", admin_endpoint(&config).unwrap_err());
        assert!(error.contains("hookhost.toml"), "{error}");
        std::fs::write(&config, CONFIG).unwrap();
        std::fs::write(session_path(&config), "not json").unwrap();
        let error = format!("{:#}", admin_endpoint(&config).unwrap_err());
        assert!(error.contains("session.json"), "{error}");
    }
}
