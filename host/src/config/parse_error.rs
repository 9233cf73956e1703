//! Parse errors that never quote the file (it holds secrets).

/// A parse error as line, column, key and what is wrong, never the text of a value: the file
/// holds secrets, and the message reaches the log, the admin API and the reload's answer. toml's
/// own rendering quotes the offending line, and serde's messages quote string values
/// (`invalid type: string "..."`), so both are rebuilt here.
pub fn describe_parse_error(text: &str, error: &toml::de::Error) -> String {
    let message = redact_values(error.message());
    let Some(span) = error.span() else {
        return message;
    };
    let start = span.start.min(text.len());
    let before = &text[..start];
    let line_no = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..start].chars().count() + 1;
    let line = text[line_start..].lines().next().unwrap_or("");
    // The table the error is in: the nearest header at or above the error's line.
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let table = text[..line_end]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .and_then(|l| l.split(']').next())
        .map(|l| l.trim_start_matches('[').trim().to_string());
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().to_string())
        .filter(|k| !k.is_empty() && !k.starts_with('#'));
    let place = match (key, table) {
        (Some(key), Some(table)) => format!(", key `{key}` in [{table}]"),
        (Some(key), None) => format!(", key `{key}`"),
        (None, Some(table)) => format!(", in [{table}]"),
        (None, None) => String::new(),
    };
    format!("line {line_no}, column {column}{place}: {message}")
}

/// Removes quoted text from a parser message (values: `string "..."`, `unknown variant `...``),
/// keeping what names keys and expectations.
fn redact_values(message: &str) -> String {
    let mut out = String::new();
    let mut rest = message.trim();
    while let Some(open) = rest.find('"') {
        out.push_str(&rest[..open]);
        match rest[open + 1..].find('"') {
            Some(close) => {
                out.push_str("(value hidden)");
                rest = &rest[open + 1 + close + 1..];
            }
            None => {
                out.push_str("(value hidden)");
                rest = "";
            }
        }
    }
    out.push_str(rest);
    // `unknown variant `x`, expected ...`: the variant is the value written.
    const VARIANT: &str = "unknown variant `";
    while let Some(at) = out.find(VARIANT) {
        let after = &out[at + VARIANT.len()..];
        let rest = after.find('`').map_or("", |close| &after[close + 1..]);
        out = format!("{}unknown value{rest}", &out[..at]);
    }
    out.lines().next().unwrap_or("").to_string()
}
