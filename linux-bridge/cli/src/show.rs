//! What `list`, `stats` and `receive` print, and the helpers `rt` shares.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use bulkhead_channel::{Announcements, ChannelInfo, ChannelInterrupt};
use serde::Serialize;

use crate::{Cause, Failure, out};

/// One channel as `list` and `stats` show it: the announcement, then what its header says
/// (`None` where the header could not be read or its geometry is invalid).
#[derive(Debug, Serialize)]
pub struct Row {
    name: String,
    direction: &'static str,
    notify: &'static str,
    base: u64,
    size: u64,
    slot_size: Option<u32>,
    slot_count: Option<u32>,
    max_message: Option<usize>,
    current: Option<u32>,
    producer_index: Option<u64>,
    consumer_index: Option<u64>,
    consumer_wants_doorbell: Option<bool>,
    producer_wants_doorbell: Option<bool>,
    state: Option<String>,
    /// Why the channel is not usable (or could not be read); `None` if it is.
    error: Option<String>,
}

impl Row {
    /// Reads `info`'s header from `mem` (loads only; nothing is attached or written).
    fn read(info: &ChannelInfo, mem: &Path) -> Self {
        let mut row = Self {
            name: info.name.clone(),
            direction: info.direction.as_str(),
            notify: info.notify.as_str(),
            base: info.base,
            size: info.size,
            slot_size: None,
            slot_count: None,
            max_message: None,
            current: None,
            producer_index: None,
            consumer_index: None,
            consumer_wants_doorbell: None,
            producer_wants_doorbell: None,
            state: None,
            error: None,
        };
        match info.inspect(mem) {
            Ok(status) => {
                if let Some(g) = status.geometry {
                    row.slot_size = Some(g.slot_size());
                    row.slot_count = Some(g.slot_count());
                    row.max_message = Some(g.max_message());
                }
                row.current = status.current();
                row.producer_index = Some(status.producer_index);
                row.consumer_index = Some(status.consumer_index);
                row.consumer_wants_doorbell = Some(status.consumer_wants_doorbell);
                row.producer_wants_doorbell = Some(status.producer_wants_doorbell);
                row.state = Some(status.state_text().to_string());
                row.error = status.problem_text();
            }
            Err(e) => row.error = Some(e.to_string()),
        }
        row
    }

    /// Tells standard error about the row's problem, if any; whether there was one.
    fn complain(&self) -> bool {
        if let Some(e) = &self.error {
            eprintln!("bulkhead: channel `{}`: {e}", self.name);
        }
        self.error.is_some()
    }
}

/// `Some(value)` as text, `None` as `-`.
fn opt<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// Prints `value` as one line of JSON.
pub fn json<T: Serialize>(value: &T) -> Result<(), Failure> {
    let text = serde_json::to_string(value).map_err(|e| Failure {
        channel: None,
        cause: Cause::Io("format JSON", e.into()),
    })?;
    out(format_args!("{text}"))
}

/// Exit status 1, the problems having been reported.
fn reported() -> Failure {
    Failure {
        channel: None,
        cause: Cause::Reported(ExitCode::from(1)),
    }
}

/// `bulkhead list`.
pub fn list(announcements: &Announcements, mem: &Path, as_json: bool) -> Result<(), Failure> {
    let rows: Vec<Row> = announcements.iter().map(|c| Row::read(c, mem)).collect();
    if as_json {
        json(&rows)?;
    } else {
        let mut table_rows = vec![
            [
                "NAME",
                "DIRECTION",
                "NOTIFY",
                "BASE",
                "SIZE",
                "SLOT_SIZE",
                "SLOTS",
                "MAX_MSG",
                "CURRENT",
                "STATE",
            ]
            .map(str::to_owned),
        ];
        for r in &rows {
            table_rows.push([
                r.name.clone(),
                r.direction.to_owned(),
                r.notify.to_owned(),
                format!("{:#x}", r.base),
                format!("{:#x}", r.size),
                opt(r.slot_size),
                opt(r.slot_count),
                opt(r.max_message),
                opt(r.current),
                match &r.error {
                    Some(e) => format!("error: {e}"),
                    None => opt(r.state.as_deref()),
                },
            ]);
        }
        for line in table(&table_rows) {
            out(format_args!("{line}"))?;
        }
        if rows.iter().any(|r| r.notify == "doorbell") {
            out(format_args!(
                "interrupt from the RT side: {}",
                interrupt_state()
            ))?;
        }
    }
    let mut bad = false;
    for r in &rows {
        bad |= r.complain();
    }
    if bad { Err(reported()) } else { Ok(()) }
}

/// How Linux learns of the RT side's doorbells: the channel device's `uio` node and its
/// counters, or why it polls.
fn interrupt_state() -> String {
    match ChannelInterrupt::open() {
        Ok(irq) => match irq.counts() {
            Ok((raised, delivered)) => format!(
                "/dev/{} (PCI {}), doorbells raised {raised}, interrupts {delivered}",
                irq.uio_name(),
                irq.address()
            ),
            Err(e) => format!(
                "/dev/{} (PCI {}), counters: {e}",
                irq.uio_name(),
                irq.address()
            ),
        },
        Err(why) => format!("none: {why}"),
    }
}

/// `rows` (the first being the column names) as lines of left-aligned columns two spaces
/// apart; the last column is not padded.
pub fn table<R: AsRef<[String]>>(rows: &[R]) -> Vec<String> {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, cell) in row.as_ref().iter().enumerate() {
            let w = cell.chars().count();
            match widths.get_mut(i) {
                Some(width) => *width = (*width).max(w),
                None => widths.push(w),
            }
        }
    }
    rows.iter()
        .map(|row| {
            let row = row.as_ref();
            let mut text = String::new();
            for (i, (cell, w)) in row.iter().zip(widths.iter().copied()).enumerate() {
                if i + 1 == row.len() {
                    text.push_str(cell);
                } else {
                    let _ = write!(text, "{cell:<w$}  ");
                }
            }
            text
        })
        .collect()
}

/// `bulkhead stats CHANNEL`.
pub fn stats(
    announcements: &Announcements,
    mem: &Path,
    channel: &str,
    as_json: bool,
) -> Result<(), Failure> {
    let info = announcements.find(channel).map_err(Failure::on(channel))?;
    let r = Row::read(info, mem);
    if as_json {
        json(&r)?;
    } else {
        let lines = [
            ("name", r.name.clone()),
            ("direction", r.direction.to_owned()),
            ("notify", r.notify.to_owned()),
            ("base", format!("{:#x}", r.base)),
            ("size", format!("{:#x}", r.size)),
            ("slot_size", opt(r.slot_size)),
            ("slot_count", opt(r.slot_count)),
            ("max_message", opt(r.max_message)),
            ("current", opt(r.current)),
            ("producer_index", opt(r.producer_index)),
            ("consumer_index", opt(r.consumer_index)),
            ("consumer_wants_doorbell", opt(r.consumer_wants_doorbell)),
            ("producer_wants_doorbell", opt(r.producer_wants_doorbell)),
            ("state", opt(r.state.as_deref())),
            ("error", opt(r.error.as_deref())),
        ];
        for (key, value) in lines {
            out(format_args!("{key}: {value}"))?;
        }
    }
    if r.complain() {
        Err(reported())
    } else {
        Ok(())
    }
}

/// One received message as `receive` prints it.
#[derive(Debug, Serialize)]
struct Message<'a> {
    priority: u8,
    len: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hex: Option<String>,
}

/// Prints a received message: `priority=P len=N text=...` (UTF-8) or `... hex=...`, or a JSON
/// line.
pub fn message(priority: u8, bytes: &[u8], as_json: bool) -> Result<(), Failure> {
    let text = std::str::from_utf8(bytes).ok();
    let m = Message {
        priority,
        len: bytes.len(),
        text,
        hex: text.is_none().then(|| hex(bytes)),
    };
    if as_json {
        return json(&m);
    }
    match (m.text, m.hex) {
        (Some(text), _) => out(format_args!(
            "priority={priority} len={} text={}",
            m.len,
            escape(text)
        )),
        (None, hex) => out(format_args!(
            "priority={priority} len={} hex={}",
            m.len,
            hex.unwrap_or_default()
        )),
    }
}

/// Lower-case hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// `text` on one line: `\` doubled, control characters escaped (`\n`, `\u{1b}`).
pub fn escape(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\\' {
            s.push_str("\\\\");
        } else if c.is_control() {
            s.extend(c.escape_default());
        } else {
            s.push(c);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_hex() {
        assert_eq!(escape("a\\b\nc\u{1b}é"), "a\\\\b\\nc\\u{1b}é");
        assert_eq!(hex(&[0, 0xff, 0x10]), "00ff10");
    }
}
