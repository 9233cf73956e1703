//! What a merchant reads when an attempt fails: traps in plain words, and every message from a
//! plugin bounded.

/// Longest reason or error message kept from a plugin; the rest is cut (and says so), so a hostile
/// or buggy plugin cannot fill the journal through its return value.
pub const MAX_MESSAGE_BYTES: usize = 4096;

pub fn bounded(mut text: String) -> String {
    if text.len() > MAX_MESSAGE_BYTES {
        let total = text.len();
        let mut cut = MAX_MESSAGE_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str(&format!("... [{} more bytes cut]", total - cut));
    }
    text
}

/// A trap as a merchant should read it: what happened, in plain words, and where (the innermost
/// wasm functions, repeated frames folded), without a hundred-frame backtrace.
pub fn describe_trap(
    trap: &wasmtime::Error,
    memory_exceeded: Option<&str>,
    fuel: Option<u64>,
) -> String {
    if let Some(message) = memory_exceeded {
        return message.to_string();
    }
    let what = match trap.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::StackOverflow) => "plugin overflowed its call stack (runaway recursion?)".to_string(),
        Some(wasmtime::Trap::MemoryOutOfBounds) => {
            "plugin accessed memory out of bounds (in Rust or C plugins this is usually a stack overflow from deep recursion)".to_string()
        }
        Some(wasmtime::Trap::UnreachableCodeReached) => {
            "plugin trapped: a Rust panic or abort ends this way (its message, if any, is in the attempt's logs)".to_string()
        }
        Some(wasmtime::Trap::OutOfFuel) => format!(
            "plugin used up its instruction budget of {} (limits.fuel)",
            fuel.unwrap_or(u64::MAX)
        ),
        Some(code) => format!("plugin trapped: {code}"),
        None => format!("plugin failed: {}", trap.root_cause()),
    };
    let Some(backtrace) = trap.downcast_ref::<wasmtime::WasmBacktrace>() else {
        return what;
    };
    let mut frames: Vec<(String, usize)> = Vec::new();
    for frame in backtrace.frames() {
        let name = frame.func_name().unwrap_or("?").to_string();
        if let Some((last, count)) = frames.last_mut() {
            if *last == name {
                *count += 1;
                continue;
            }
        }
        if frames.len() == 4 {
            break;
        }
        frames.push((name, 1));
    }
    if frames.is_empty() {
        return what;
    }
    let at: Vec<String> = frames
        .into_iter()
        .map(|(name, n)| {
            if n > 1 {
                format!("{name} (x{n})")
            } else {
                name
            }
        })
        .collect();
    format!("{what}; at {}", at.join(" < "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_messages_are_bounded_on_a_char_boundary() {
        assert_eq!(bounded("short".into()), "short");
        let long = "é".repeat(3000); // 6000 bytes
        let cut = bounded(long);
        assert!(cut.len() < MAX_MESSAGE_BYTES + 40, "{}", cut.len());
        assert!(
            cut.ends_with("... [1904 more bytes cut]"),
            "{}",
            &cut[cut.len() - 40..]
        );
    }
}
