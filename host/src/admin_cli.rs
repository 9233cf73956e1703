//! The command line's view of a running host: `hookhost events`, `event`, `dead-letters`,
//! `plugins`, `replay`, `deploy`, `rollback`, `versions` and `tokens` call the admin API and print readable tables (or the API's JSON with
//! `--json`), so an operator on a terminal sees what the console and the API show.

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// A running host's admin API.
pub struct AdminClient {
    /// Base URL, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    /// The admin token.
    pub token: String,
    client: reqwest::Client,
}

impl AdminClient {
    /// A client for the host at `url`.
    pub fn new(url: &str, token: &str) -> AdminClient {
        AdminClient {
            url: url.trim_end_matches('/').to_string(),
            token: token.to_string(),
            client: reqwest::Client::new(),
        }
    }

    /// GET an admin path as JSON, or the server's error message.
    pub async fn get(&self, path: &str) -> Result<Value> {
        self.call(self.client.get(format!("{}{path}", self.url)))
            .await
    }

    /// POST to an admin path; its JSON, or the server's error message.
    pub async fn post(&self, path: &str) -> Result<Value> {
        self.call(self.client.post(format!("{}{path}", self.url)))
            .await
    }

    /// POST `body` (JSON, or nothing) to an admin path; its JSON, or the server's error message.
    pub async fn post_json(&self, path: &str, body: Option<Value>) -> Result<Value> {
        let mut request = self.client.post(format!("{}{path}", self.url));
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.call(request).await
    }

    /// POST `body` (a component) to an admin path; its JSON, or the server's error message.
    pub async fn post_bytes(&self, path: &str, body: Vec<u8>) -> Result<Value> {
        self.call(
            self.client
                .post(format!("{}{path}", self.url))
                .header("content-type", "application/wasm")
                .body(body),
        )
        .await
    }

    /// PUT `body` (JSON) to an admin path; its JSON, or the server's error message.
    pub async fn put_json(&self, path: &str, body: Value) -> Result<Value> {
        self.call(self.client.put(format!("{}{path}", self.url)).json(&body))
            .await
    }

    /// DELETE an admin path; its JSON, or the server's error message.
    pub async fn delete(&self, path: &str) -> Result<Value> {
        self.call(self.client.delete(format!("{}{path}", self.url)))
            .await
    }

    /// PUT `body` to an admin path; its JSON, or the server's error message.
    pub async fn put(&self, path: &str, body: Vec<u8>) -> Result<Value> {
        self.call(
            self.client
                .put(format!("{}{path}", self.url))
                .header("content-type", "application/wasm")
                .body(body),
        )
        .await
    }

    async fn call(&self, request: reqwest::RequestBuilder) -> Result<Value> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| {
                format!(
                    "cannot reach hookhost at {}: is it running, and is --url right?",
                    self.url
                )
            })?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or_default();
        if !status.is_success() {
            bail!(
                "{status}: {}",
                crate::cli_text::escape(body["error"].as_str().unwrap_or("(no message)"))
            );
        }
        Ok(body)
    }
}

/// What `hookhost deploy` prints for the API's answer.
pub fn deployed_text(p: &Value) -> String {
    let t = &p["timings_ms"];
    if p["deploy"]["kind"] == "staged" {
        let tenant = p["tenant"].as_str().unwrap_or_default();
        return format!(
            "staged v{} for {tenant}: version {} ({} bytes, checked in {} ms), not active; try it beside the active one with hookhost shadow start --tenant {tenant} --version {}",
            p["deploy"]["number"],
            p["version"].as_str().unwrap_or_default(),
            p["size"],
            t["total"],
            p["deploy"]["number"],
        );
    }
    format!(
        "deployed v{} for {}: version {} ({} bytes; compiled in {} ms, self-tests {} ms, stored in {} ms, {} ms in all); every replica on this database serves it",
        p["deploy"]["number"],
        p["tenant"].as_str().unwrap_or_default(),
        p["version"].as_str().unwrap_or_default(),
        p["size"],
        t["compile"],
        t["self_tests"],
        t["store"],
        t["total"],
    )
}

/// What `hookhost rollback` prints for the API's answer.
pub fn rolled_back_text(p: &Value) -> String {
    let d = &p["deploy"];
    format!(
        "rolled back {} to v{}: now serving version {} as v{}",
        p["tenant"].as_str().unwrap_or_default(),
        d["reactivates"],
        short(d["digest"].as_str().unwrap_or_default(), 16),
        d["number"],
    )
}

/// A tenant's deploy history as a table.
pub fn versions_table(p: &Value) -> String {
    let active = p["active"].as_u64();
    let rows: Vec<Vec<String>> = p["deploys"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|d| {
            let number = d["number"].as_u64();
            let what = match (d["kind"].as_str().unwrap_or_default(), &d["reactivates"]) {
                ("rollback", to) => format!("rollback to v{to}"),
                ("refused", _) => format!(
                    "refused: {}",
                    short(
                        &crate::cli_text::escape(d["message"].as_str().unwrap_or_default()),
                        80
                    )
                ),
                (kind, _) => kind.to_string(),
            };
            vec![
                format!(
                    "{}v{}",
                    if number.is_some() && number == active {
                        "* "
                    } else {
                        "  "
                    },
                    d["number"]
                ),
                short(d["digest"].as_str().unwrap_or_default(), 16),
                d["size"].to_string(),
                when(d["at_ms"].as_u64()),
                crate::cli_text::escape(d["by"].as_str().unwrap_or_default()).into_owned(),
                what,
            ]
        })
        .collect();
    if rows.is_empty() {
        return format!(
            "{} has no deploys: it serves its plugin file, if any (hookhost deploy --tenant {} plugin.wasm)",
            p["tenant"].as_str().unwrap_or_default(),
            p["tenant"].as_str().unwrap_or_default()
        );
    }
    format!(
        "{}\n* = serving",
        table(&["VERSION", "DIGEST", "BYTES", "AT", "BY", "WHAT"], &rows)
    )
}

/// What `hookhost backtest` prints: the counts, then each differing event with its differences.
pub fn backtest_text(r: &Value) -> String {
    let count = |k: &str| r[k].as_u64().unwrap_or(0);
    let outcomes: Vec<String> = r["candidate_outcomes"]
        .as_object()
        .map(|o| o.iter().map(|(k, v)| format!("{k} {v}")).collect())
        .unwrap_or_default();
    let mut text = format!(
        "backtest {} of {} (candidate {} against {}): {} events in {} ms ({:.0}/s)\n  same {}, different {}, inconclusive {}, nothing to compare with {}\n  candidate outcomes: {}\n",
        r["id"].as_str().unwrap_or_default(),
        r["tenant"].as_str().unwrap_or_default(),
        r["candidate_version"].as_str().unwrap_or_default(),
        r["baseline"].as_str().unwrap_or_default(),
        count("events"),
        count("elapsed_ms"),
        r["events_per_second"].as_f64().unwrap_or(0.0),
        count("same"),
        count("differs"),
        count("inconclusive"),
        count("unrecorded"),
        if outcomes.is_empty() { "none".into() } else { outcomes.join(", ") },
    );
    let listed = r["differing"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for verdict in listed {
        text.push_str(&format!(
            "\nevent {} (order {}; recorded: {} by {}): {}\n",
            verdict["seq"],
            verdict["order_id"].as_str().unwrap_or("–"),
            verdict["recorded_outcome"]["outcome"]
                .as_str()
                .unwrap_or("no attempt"),
            verdict["recorded_version"].as_str().unwrap_or("–"),
            verdict["verdict"].as_str().unwrap_or_default(),
        ));
        if let Some(reason) = verdict["reason"].as_str() {
            text.push_str(&format!("  {}\n", crate::cli_text::escape(reason)));
        }
        for d in verdict["differences"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            text.push_str(&format!(
                "  {}: serving {} · candidate {}\n",
                d["in"].as_str().unwrap_or_default(),
                short(&crate::cli_text::escape(&d["serving"].to_string()), 200),
                short(&crate::cli_text::escape(&d["candidate"].to_string()), 200),
            ));
        }
    }
    if count("differs") + count("inconclusive") > listed.len() as u64 {
        text.push_str(&format!(
            "\n(the first {} are listed; --json has them as data)\n",
            listed.len()
        ));
    }
    text
}

/// What `hookhost shadow status` prints.
pub fn shadow_text(s: &Value) -> String {
    let tenant = s["tenant"].as_str().unwrap_or_default();
    let shadow = &s["shadow"];
    if shadow.is_null() {
        return format!(
            "{tenant} has no shadow (hookhost deploy --stage, then hookhost shadow start --tenant {tenant} --version N)"
        );
    }
    let count = |k: &str| s["counts"][k].as_u64().unwrap_or(0);
    let mut text = format!(
        "v{} shadows {tenant} on {:.0}% of attempts since {} (by {})\n  same {}, different {}, inconclusive {}\n",
        shadow["number"],
        shadow["share"].as_f64().unwrap_or(0.0) * 100.0,
        when(shadow["since_ms"].as_u64()),
        crate::cli_text::escape(shadow["by"].as_str().unwrap_or_default()),
        count("same"),
        count("differs"),
        count("inconclusive"),
    );
    for run in s["differing"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        text.push_str(&format!(
            "\nevent {} attempt {}: {} ({} µs active, {} µs shadow)\n",
            run["seq"],
            run["attempt"],
            run["verdict"].as_str().unwrap_or_default(),
            run["serving_us"],
            run["shadow_us"]
        ));
        if let Some(reason) = run["comparison"]["reason"].as_str() {
            text.push_str(&format!("  {}\n", crate::cli_text::escape(reason)));
        }
        for d in run["comparison"]["differences"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            text.push_str(&format!(
                "  {}: active {} · shadow {}\n",
                d["in"].as_str().unwrap_or_default(),
                short(&crate::cli_text::escape(&d["serving"].to_string()), 200),
                short(&crate::cli_text::escape(&d["candidate"].to_string()), 200),
            ));
        }
    }
    text
}

/// What `hookhost tokens create` prints: the token, once, with what it is.
pub fn token_created_text(p: &Value) -> String {
    let expires = match p["expires_at_ms"].as_u64() {
        Some(at) => format!("expires {}", when(Some(at))),
        None => "does not expire".to_string(),
    };
    format!(
        "{}\n\ntoken {} ({}) for {}, scopes {}, {expires}.\nThis is the only time it is shown: store it now (hookhost keeps only its hash).",
        p["token"].as_str().unwrap_or_default(),
        p["id"].as_str().unwrap_or_default(),
        crate::cli_text::escape(p["name"].as_str().unwrap_or_default()),
        p["tenant"].as_str().unwrap_or_default(),
        scopes_of(p),
    )
}

fn scopes_of(token: &Value) -> String {
    token["scopes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(",")
}

/// Tokens as a table.
pub fn tokens_table(p: &Value) -> String {
    let rows: Vec<Vec<String>> = p["tokens"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|t| {
            let state = if t["revoked_at_ms"].is_u64() {
                format!("revoked {}", when(t["revoked_at_ms"].as_u64()))
            } else if t["expires_at_ms"]
                .as_u64()
                .is_some_and(|at| at <= crate::now_ms())
            {
                "expired".to_string()
            } else {
                "live".to_string()
            };
            vec![
                t["id"].as_str().unwrap_or_default().to_string(),
                t["tenant"].as_str().unwrap_or_default().to_string(),
                crate::cli_text::escape(t["name"].as_str().unwrap_or_default()).into_owned(),
                scopes_of(t),
                when(t["created_at_ms"].as_u64()),
                when(t["last_used_at_ms"].as_u64()),
                match t["expires_at_ms"].as_u64() {
                    Some(at) => when(Some(at)),
                    None => "never".into(),
                },
                state,
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no tokens (hookhost tokens create --tenant T --name N --scope read)".into();
    }
    table(
        &[
            "ID",
            "TENANT",
            "NAME",
            "SCOPES",
            "CREATED",
            "LAST USED",
            "EXPIRES",
            "STATE",
        ],
        &rows,
    )
}

/// Renders rows as a table with aligned columns.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i + 1 == cells.len() {
                    c.clone()
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(header.iter().map(|h| h.to_string()).collect())];
    out.extend(rows.iter().map(|r| line(r.clone())));
    out.join("\n")
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn when(ms: Option<u64>) -> String {
    let Some(ms) = ms else { return "-".into() };
    time::OffsetDateTime::from_unix_timestamp((ms / 1000) as i64)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second]"
            ))
            .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// Cuts `text` to `max` characters on one line, control characters made visible (the text may
/// come from a plugin or a webhook sender: see [`crate::cli_text`]).
pub fn short(text: &str, max: usize) -> String {
    let one_line = crate::cli_text::escape(&text.replace('\n', " ")).into_owned();
    if one_line.chars().count() <= max {
        one_line
    } else {
        format!("{}…", one_line.chars().take(max - 1).collect::<String>())
    }
}

/// A JSON value as a table cell, control characters made visible.
fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => crate::cli_text::escape(s).into_owned(),
        other => crate::cli_text::escape(&other.to_string()).into_owned(),
    }
}

/// A list of event summaries (from `/admin/tenants/{t}/events` or `/dead-letters`) as a table.
pub fn events_table(page: &Value) -> String {
    let rows: Vec<Vec<String>> = page["events"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            vec![
                text(&e["seq"]),
                text(&e["state"]),
                text(&e["attempts"]),
                text(&e["source"]),
                text(&e["event"]["order_id"]),
                text(&e["event"]["raw_status"]),
                when(e["received_at_ms"].as_u64()),
                short(e["last_error"].as_str().unwrap_or(""), 60),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "EVENT",
            "STATE",
            "ATTEMPTS",
            "SOURCE",
            "ORDER",
            "STATUS",
            "RECEIVED",
            "LAST ERROR",
        ],
        &rows,
    );
    if let Some(next) = page["next_before"].as_i64() {
        out.push_str(&format!("\n(more: --before {next})"));
    }
    out
}

/// One event's detail: its summary, normalized event and every attempt with its logs.
pub fn event_detail(e: &Value) -> String {
    let mut out = vec![
        format!(
            "event {} · tenant {} · source {} · {} after {} attempt(s)",
            text(&e["seq"]),
            text(&e["tenant"]),
            text(&e["source"]),
            text(&e["state"]),
            text(&e["attempts"])
        ),
        format!(
            "received {} · finished {}",
            when(e["received_at_ms"].as_u64()),
            when(e["finished_at_ms"].as_u64())
        ),
        format!(
            "normalized: {} {} order {} status {} ({}){}",
            text(&e["event"]["provider"]),
            text(&e["event"]["kind"]),
            text(&e["event"]["order_id"]),
            text(&e["event"]["status"]),
            text(&e["event"]["raw_status"]),
            match e["event"]["amount"]["amount"].as_str() {
                Some(a) => format!(
                    " amount {a} {}",
                    e["event"]["amount"]["currency"].as_str().unwrap_or("")
                ),
                None => String::new(),
            }
        ),
        format!("payload: {}", short(e["body"].as_str().unwrap_or(""), 200)),
    ];
    for a in e["attempts_detail"].as_array().into_iter().flatten() {
        let result = match a["outcome"].as_str() {
            Some("error") => format!("error: {}", short(a["message"].as_str().unwrap_or(""), 200)),
            Some("skipped") => format!("skipped: {}", text(&a["reason"])),
            Some("retry-after") => format!("retry after {} s", text(&a["seconds"])),
            Some(other) => other.to_string(),
            None => "-".into(),
        };
        out.push(format!(
            "attempt {} · version {} · {} · {} µs · {result}",
            text(&a["attempt"]),
            text(&a["plugin_version"]),
            when(a["started_at_ms"].as_u64()),
            text(&a["duration_us"]),
        ));
        for line in a["logs"].as_array().into_iter().flatten() {
            out.push(format!(
                "    [{}] {}",
                text(&line["level"]),
                short(line["message"].as_str().unwrap_or(""), 200)
            ));
        }
        if a["logs_dropped"].as_u64().unwrap_or(0) > 0 {
            out.push(format!(
                "    ({} log lines dropped)",
                text(&a["logs_dropped"])
            ));
        }
    }
    out.join("\n")
}

/// Every tenant's plugin as a table: version, when loaded, last error.
pub fn plugins_table(tenants: &Value) -> String {
    let rows: Vec<Vec<String>> = tenants["tenants"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let p = &t["plugin"];
            vec![
                text(&t["name"]),
                crate::cli_text::escape(p["version"].as_str().unwrap_or("(none: events wait)"))
                    .into_owned(),
                when(p["loaded_at_ms"].as_u64()),
                p["history"]
                    .as_array()
                    .map(|h| h.len())
                    .unwrap_or(0)
                    .to_string(),
                short(p["last_error"].as_str().unwrap_or(""), 70),
            ]
        })
        .collect();
    table(
        &["TENANT", "VERSION", "LOADED", "RELOADS", "LAST ERROR"],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_cut() {
        let t = table(
            &["A", "BB", "C"],
            &[vec!["xxx".into(), "y".into(), "z z".into()]],
        );
        assert_eq!(t, "A    BB  C\nxxx  y   z z");
        assert_eq!(short("abcdef", 4), "abc…");
        assert_eq!(when(Some(0)), "1970-01-01 00:00:00");
        assert_eq!(when(None), "-");
    }

    #[test]
    fn what_plugins_and_senders_wrote_cannot_drive_the_terminal() {
        let event = serde_json::json!({
            "seq": 1, "tenant": "t", "source": "s", "state": "done", "attempts": 1,
            "event": {"order_id": "o\u{1b}[2J", "raw_status": "\u{1b}]0;pwned\u{7}"},
            "body": "{\"x\": \"\u{1b}[31m\"}",
            "attempts_detail": [{"attempt": 1, "outcome": "skipped", "reason": "r\u{1b}[1A",
                "logs": [{"level": "info", "message": "line\u{1b}[2K\rforged"}]}],
        });
        let shown = event_detail(&event);
        assert!(
            !shown.contains('\u{1b}') && !shown.contains('\u{7}') && !shown.contains('\r'),
            "{shown:?}"
        );
        assert!(shown.contains("\\u{1b}[2K"), "{shown}");
        let table = events_table(&serde_json::json!({"events": [event]}));
        assert!(!table.contains('\u{1b}'), "{table:?}");
    }
}
