//! What a run is expected to print, and what makes it a failure.
//!
//! Matching is per line of the serial log after [`clean_line`]: terminal escape sequences (GRUB
//! draws its menu with them) and carriage returns are removed first.

use std::fmt;

use regex::Regex;

/// Lines that end a run as a failure unless an expectation names them: a fatal boot error, a
/// panic, an unexpected exception, a triple fault.
pub const DEFAULT_FAIL_PATTERNS: [&str; 4] = ["FATAL", "PANIC", "EXCEPTION", "triple fault"];

/// One pattern a serial line is matched against.
#[derive(Clone, Debug)]
pub enum Pattern {
    /// The line contains this text.
    Contains(String),
    /// The line matches this regular expression (unanchored unless it says `^`/`$`).
    Regex(Regex),
}

impl Pattern {
    /// A pattern matching lines that contain `text`.
    pub fn contains(text: impl Into<String>) -> Self {
        Self::Contains(text.into())
    }

    /// A pattern matching lines that match the regular expression `re`.
    ///
    /// # Panics
    /// If `re` is not a valid regular expression (patterns are written in the tests).
    pub fn regex(re: &str) -> Self {
        match Regex::new(re) {
            Ok(re) => Self::Regex(re),
            Err(e) => panic!("bad pattern {re:?}: {e}"),
        }
    }

    /// Whether `line` (already cleaned) matches.
    pub fn matches(&self, line: &str) -> bool {
        match self {
            Self::Contains(text) => line.contains(text.as_str()),
            Self::Regex(re) => re.is_match(line),
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Contains(text) => write!(f, "{text:?}"),
            Self::Regex(re) => write!(f, "/{}/", re.as_str()),
        }
    }
}

/// Accepts `"text"` (a [`Pattern::Contains`]) wherever a pattern is asked for.
impl From<&str> for Pattern {
    fn from(text: &str) -> Self {
        Self::contains(text)
    }
}

/// What a run must print before it counts as done, and what counts as failure.
///
/// A line that matches one of the expectations is never a failure, even if it contains a fail
/// pattern: a test that expects `FATAL: VT-x not available` can still fail on any other `FATAL`.
#[derive(Clone, Debug)]
pub struct Expect {
    pub(crate) wanted: Vec<(Pattern, usize)>,
    pub(crate) fail: Vec<Pattern>,
    pub(crate) stop: Vec<Pattern>,
    pub(crate) to_the_end: bool,
}

impl Default for Expect {
    fn default() -> Self {
        Self::new()
    }
}

impl Expect {
    /// No expectations yet; fails on the [`DEFAULT_FAIL_PATTERNS`].
    pub fn new() -> Self {
        Self {
            wanted: Vec::new(),
            fail: DEFAULT_FAIL_PATTERNS
                .iter()
                .map(|&p| Pattern::contains(p))
                .collect(),
            stop: Vec::new(),
            to_the_end: false,
        }
    }

    /// A line matching `pattern` must appear.
    pub fn line(self, pattern: impl Into<Pattern>) -> Self {
        self.times(1, pattern)
    }

    /// At least `n` lines matching `pattern` must appear.
    pub fn times(mut self, n: usize, pattern: impl Into<Pattern>) -> Self {
        self.wanted.push((pattern.into(), n));
        self
    }

    /// A line matching the regular expression `re` must appear.
    pub fn regex(self, re: &str) -> Self {
        self.times(1, Pattern::regex(re))
    }

    /// A line matching `pattern` (and no expectation) ends the run as a failure.
    pub fn fail_on(mut self, pattern: impl Into<Pattern>) -> Self {
        self.fail.push(pattern.into());
        self
    }

    /// Nothing but the emulator's exit and the time limit ends the run as a failure.
    pub fn no_fail_patterns(mut self) -> Self {
        self.fail.clear();
        self
    }

    /// A line matching `pattern` ends the run: as a success if every expectation has been met by
    /// then, as a failure otherwise (used for end-of-run markers such as `bulkhead: halted`).
    pub fn stop_on(mut self, pattern: impl Into<Pattern>) -> Self {
        self.stop.push(pattern.into());
        self
    }

    /// Keep following the run after every expectation is met, until the emulator exits, a stop
    /// pattern or a fail pattern appears, or the time limit passes (which then is a success if
    /// every expectation was met). For watching a run rather than testing it.
    pub fn to_the_end(mut self) -> Self {
        self.to_the_end = true;
        self
    }
}

/// Follows which expectations a stream of lines has met.
#[derive(Debug)]
pub(crate) struct Progress<'a> {
    expect: &'a Expect,
    seen: Vec<usize>,
    /// The first line that matched a fail pattern, and no expectation.
    pub(crate) failed_at: Option<String>,
    /// The first line that matched a stop pattern.
    pub(crate) stopped_at: Option<String>,
}

impl<'a> Progress<'a> {
    pub(crate) fn new(expect: &'a Expect) -> Self {
        Self {
            expect,
            seen: vec![0; expect.wanted.len()],
            failed_at: None,
            stopped_at: None,
        }
    }

    /// Takes one cleaned line into account.
    pub(crate) fn feed(&mut self, line: &str) {
        let mut expected = false;
        for ((pattern, _), seen) in self.expect.wanted.iter().zip(&mut self.seen) {
            if pattern.matches(line) {
                *seen += 1;
                expected = true;
            }
        }
        if !expected && self.failed_at.is_none() && self.expect.fail.iter().any(|p| p.matches(line))
        {
            self.failed_at = Some(line.to_string());
        }
        if self.stopped_at.is_none() && self.expect.stop.iter().any(|p| p.matches(line)) {
            self.stopped_at = Some(line.to_string());
        }
    }

    /// Whether every expectation has been met.
    pub(crate) fn done(&self) -> bool {
        self.expect
            .wanted
            .iter()
            .zip(&self.seen)
            .all(|((_, n), seen)| seen >= n)
    }

    /// The expectations not met yet, one per line: `pattern (seen k of n)`.
    pub(crate) fn missing(&self) -> Vec<String> {
        self.expect
            .wanted
            .iter()
            .zip(&self.seen)
            .filter(|((_, n), seen)| *seen < n)
            .map(|((pattern, n), seen)| {
                if *n == 1 {
                    pattern.to_string()
                } else {
                    format!("{pattern} (seen {seen} of {n})")
                }
            })
            .collect()
    }
}

/// A serial line as it is matched and shown: terminal escape sequences and carriage returns
/// removed, other control characters (except tab) dropped.
pub fn clean_line(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                // CSI: parameters and intermediates up to a final byte in @..~.
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC: up to BEL or ESC \.
                Some(']') => {
                    while let Some(c) = chars.next() {
                        if c == '\x07' {
                            break;
                        }
                        if c == '\x1b' {
                            chars.next_if_eq(&'\\');
                            break;
                        }
                    }
                }
                // Two-character sequences (charset selection takes one more).
                Some('(' | ')') => {
                    chars.next();
                }
                _ => {}
            },
            '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_line_drops_grub_escapes_and_carriage_returns() {
        assert_eq!(
            clean_line("\x1b[H\x1b[J\x1b[1;1H\x1b[H\x1b[J\x1b[1;1H  Booting `Bulkhead'\r"),
            "  Booting `Bulkhead'"
        );
        assert_eq!(
            clean_line("\r\rbulkhead 0.1.0 starting\r"),
            "bulkhead 0.1.0 starting"
        );
        assert_eq!(clean_line("\x1b]0;title\x07a\x1b(Bb\tc"), "ab\tc");
    }

    #[test]
    fn expected_lines_are_counted_and_never_fail() {
        let expect = Expect::new()
            .times(2, Pattern::regex(r"^cpu \d+ apic \d+: VMX on$"))
            .line("FATAL: VT-x not available");
        let mut progress = Progress::new(&expect);
        progress.feed("cpu 0 apic 0: VMX on");
        assert!(!progress.done());
        assert_eq!(
            progress.missing(),
            vec![
                "/^cpu \\d+ apic \\d+: VMX on$/ (seen 1 of 2)",
                "\"FATAL: VT-x not available\""
            ]
        );
        progress.feed("FATAL: VT-x not available: CPUID.1:ECX.VMX is 0");
        assert!(progress.failed_at.is_none());
        progress.feed("cpu 1 apic 1: VMX on");
        assert!(progress.done());
        progress.feed("PANIC: at foo.rs:1");
        assert_eq!(progress.failed_at.as_deref(), Some("PANIC: at foo.rs:1"));
    }

    #[test]
    fn stop_patterns_are_noted() {
        let expect = Expect::new().line("x").stop_on("bulkhead: halted");
        let mut progress = Progress::new(&expect);
        progress.feed("bulkhead: halted");
        assert_eq!(progress.stopped_at.as_deref(), Some("bulkhead: halted"));
        assert!(!progress.done());
        assert_eq!(progress.missing(), vec!["\"x\""]);
    }
}
