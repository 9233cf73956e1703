//! Merchant tokens: what a token may do ([`Scope`]), how one is made and shown once, and how a
//! presented one is checked against the hash the store keeps. The operator's token is the
//! config's `admin_token`; these are the tokens an operator hands to a tenant.
//!
//! A token reads `hhk_<id>_<secret>`. The id is public (it names the token in lists and in
//! `revoke`) and finds its row with one indexed lookup; the secret is 32 random bytes. The store
//! keeps only SHA-256 of the whole token, compared in constant time, so a stolen database does
//! not yield usable tokens.

use std::collections::BTreeSet;
use std::fmt;

use base64::Engine as _;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

/// What a merchant token may do on its tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// See events, dead letters, kv, counts, plugin versions.
    Read,
    /// Replay events and dead letters.
    Replay,
    /// Deploy and roll back plugin versions.
    Deploy,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Replay, Scope::Deploy];

    /// Its name in the API and CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Replay => "replay",
            Scope::Deploy => "deploy",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Scope, String> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s.trim())
            .ok_or_else(|| format!("unknown scope {s:?}: the scopes are read, replay and deploy"))
    }
}

/// Parses `read,replay,deploy` (any order, no repeats needed); an empty list is refused, since a
/// token that may do nothing is a mistake.
pub fn parse_scopes(text: &str) -> Result<BTreeSet<Scope>, String> {
    let scopes = text
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(str::parse)
        .collect::<Result<BTreeSet<Scope>, String>>()?;
    if scopes.is_empty() {
        return Err("a token needs at least one scope (read, replay, deploy)".into());
    }
    Ok(scopes)
}

/// Scopes as a store wrote them; a name this binary does not know (written by a newer one)
/// grants nothing here.
pub fn stored_scopes(text: &str) -> BTreeSet<Scope> {
    text.split(',').filter_map(|s| s.parse().ok()).collect()
}

/// Scopes as the store and the CLI write them: `read,replay`.
pub fn scopes_text(scopes: &BTreeSet<Scope>) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// What every token starts with, so that one pasted in the wrong place is recognizable (and
/// secret scanners can be taught it).
pub const TOKEN_PREFIX: &str = "hhk_";

/// A freshly made token: the text shown once, and what the store keeps of it.
pub struct MintedToken {
    /// The public id.
    pub id: String,
    /// The whole token, for the caller's eyes only: never stored or logged.
    pub token: String,
    /// SHA-256 of `token`, what the store keeps.
    pub hash: [u8; 32],
}

/// Makes a new token from the operating system's random source.
pub fn mint() -> MintedToken {
    let mut id = [0u8; 6];
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut id);
    rand::rng().fill_bytes(&mut secret);
    let id = hex::encode(id);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    let token = format!("{TOKEN_PREFIX}{id}_{secret}");
    let hash = token_hash(&token);
    MintedToken { id, token, hash }
}

/// SHA-256 of a token's text.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The id of a presented token, if it has a token's shape (the secret is not checked here).
pub fn token_id(presented: &str) -> Option<&str> {
    let rest = presented.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let well_formed = id.len() == 12
        && id.bytes().all(|b| b.is_ascii_hexdigit())
        && !secret.is_empty()
        && secret.len() <= 64;
    well_formed.then_some(id)
}

/// Whether `presented` is the token whose hash is `stored` (constant time).
pub fn token_matches(presented: &str, stored: &[u8]) -> bool {
    token_hash(presented).ct_eq(stored).into()
}

/// A merchant token as the store keeps it, without its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    /// The public id.
    pub id: String,
    /// The tenant it belongs to.
    pub tenant: String,
    /// A name for people ("ci deploys", "alice's laptop").
    pub name: String,
    /// What it may do.
    pub scopes: BTreeSet<Scope>,
    /// When it was made (ms since the epoch).
    pub created_at_ms: u64,
    /// When it stops working, if ever.
    pub expires_at_ms: Option<u64>,
    /// When it was last used (to the minute: uses are recorded at most once a minute).
    pub last_used_at_ms: Option<u64>,
    /// When it was revoked; a revoked token is kept for the record and never works again.
    pub revoked_at_ms: Option<u64>,
}

impl TokenInfo {
    /// Whether it lets a request in at `now_ms`.
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.revoked_at_ms.is_none() && self.expires_at_ms.is_none_or(|at| now_ms < at)
    }
}

/// A token's row with the hash to check a presented token against.
#[derive(Debug, Clone)]
pub struct StoredToken {
    /// The token.
    pub info: TokenInfo,
    /// SHA-256 of the whole token.
    pub hash: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_token_is_found_by_its_id_and_matches_only_itself() {
        let minted = mint();
        assert!(minted.token.starts_with(TOKEN_PREFIX));
        assert_eq!(token_id(&minted.token), Some(minted.id.as_str()));
        assert!(token_matches(&minted.token, &minted.hash));
        let mut other = minted.token.clone();
        other.pop();
        other.push(if minted.token.ends_with('A') {
            'B'
        } else {
            'A'
        });
        assert!(!token_matches(&other, &minted.hash));
        assert_ne!(mint().token, minted.token);
    }

    #[test]
    fn token_shapes_that_are_not_tokens() {
        for text in [
            "",
            "hhk_",
            "hhk_0123456789ab",
            "hhk_0123456789ab_",
            "hhk_0123456789a_x",
            "hhk_0123456789zz_x",
            "abc_0123456789ab_x",
            "the-operator-token",
        ] {
            assert_eq!(token_id(text), None, "{text:?}");
        }
        let long = format!("hhk_0123456789ab_{}", "x".repeat(65));
        assert_eq!(token_id(&long), None);
    }

    #[test]
    fn scopes_parse_and_print() {
        let scopes = parse_scopes("deploy, read").unwrap();
        assert_eq!(scopes_text(&scopes), "read,deploy");
        assert!(parse_scopes("").unwrap_err().contains("at least one"));
        assert!(parse_scopes("read,write")
            .unwrap_err()
            .contains("\"write\""));
    }

    #[test]
    fn expired_and_revoked_tokens_are_not_live() {
        let info = TokenInfo {
            id: "0123456789ab".into(),
            tenant: "t".into(),
            name: "n".into(),
            scopes: BTreeSet::from([Scope::Read]),
            created_at_ms: 1,
            expires_at_ms: Some(100),
            last_used_at_ms: None,
            revoked_at_ms: None,
        };
        assert!(info.is_live(99));
        assert!(!info.is_live(100));
        let revoked = TokenInfo {
            expires_at_ms: None,
            revoked_at_ms: Some(5),
            ..info
        };
        assert!(!revoked.is_live(1));
    }
}
