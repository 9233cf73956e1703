//! `log`: a plugin's log lines, captured per attempt within a byte budget and stored with the
//! attempt, so a merchant sees what their plugin said about each event.

use crate::storage::LogLine;

/// Severity of a plugin's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Finest detail.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected.
    Warn,
    /// A failure.
    Error,
    /// Printed to stdout or stderr (a Rust panic message, Python's `print`).
    Print,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Print => "print",
        }
    }
}

/// The log lines of one attempt.
#[derive(Debug)]
pub struct LogCapture {
    tenant: String,
    lines: Vec<LogLine>,
    bytes: usize,
    budget: usize,
    dropped: u32,
}

impl LogCapture {
    /// A capture keeping at most `budget` bytes of messages.
    pub fn new(tenant: &str, budget: usize) -> LogCapture {
        LogCapture {
            tenant: tenant.to_string(),
            lines: Vec::new(),
            bytes: 0,
            budget,
            dropped: 0,
        }
    }

    /// Records one line, or counts it as dropped when the budget is spent.
    pub fn write(&mut self, level: Level, message: String) {
        if self.bytes + message.len() > self.budget {
            self.dropped += 1;
            return;
        }
        tracing::debug!(target: "hookhost::plugin", tenant = %self.tenant, level = level.as_str(), "{message}");
        self.bytes += message.len();
        self.lines.push(LogLine {
            level: level.as_str().to_string(),
            message,
        });
    }

    /// The lines kept and how many were dropped.
    pub fn finish(self) -> (Vec<LogLine>, u32) {
        (self.lines, self.dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_lines_within_budget_and_counts_the_rest() {
        let mut log = LogCapture::new("t", 10);
        log.write(Level::Info, "12345".into());
        log.write(Level::Warn, "123456".into());
        log.write(Level::Error, "12345".into());
        let (lines, dropped) = log.finish();
        assert_eq!(
            lines.iter().map(|l| l.level.as_str()).collect::<Vec<_>>(),
            vec!["info", "error"]
        );
        assert_eq!(dropped, 1);
    }
}
