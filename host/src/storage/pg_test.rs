//! The PostgreSQL server the tests use: `HOOKHOST_TEST_PG_URL`, a server whose user may create
//! databases, which `scripts/test.sh` starts (`scripts/pg-test-server.sh`). Each test gets a
//! database of its own. Without the variable, PostgreSQL tests are skipped with a message, except
//! in CI (`CI` set), where they fail: a suite that silently skips them proves nothing.

use std::sync::atomic::{AtomicU32, Ordering};

/// The variable naming the test server.
pub const URL_VARIABLE: &str = "HOOKHOST_TEST_PG_URL";

/// Connection settings for a new, empty database on the test server; `None` (after saying so)
/// when there is no server outside CI.
pub async fn fresh_database(test: &str) -> Option<tokio_postgres::Config> {
    let Ok(url) = std::env::var(URL_VARIABLE) else {
        if std::env::var_os("CI").is_some() {
            panic!("{URL_VARIABLE} is not set, and CI is: the PostgreSQL tests must run in CI (scripts/test.sh starts the server)");
        }
        eprintln!("skipping {test}: {URL_VARIABLE} is not set (scripts/test.sh starts a PostgreSQL server for the tests)");
        return None;
    };
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "hh_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        test.chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(30)
            .collect::<String>()
    );
    let admin: tokio_postgres::Config = url
        .parse()
        .unwrap_or_else(|e| panic!("{URL_VARIABLE} is not a valid PostgreSQL URL: {e}"));
    let (client, connection) = admin
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!("cannot reach the test PostgreSQL server ({URL_VARIABLE}): {e}")
        });
    tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap_or_else(|e| panic!("cannot create the test database {name}: {e}"));
    let mut config = admin;
    config.dbname(&name);
    Some(config)
}
