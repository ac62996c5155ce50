//! Rate-limited logging of repeated events: count every one, log only the first few, and
//! say on the last logged line that later ones go unlogged (a guest that repeats a refused
//! access must not flood the console).

use core::fmt;

/// Counts events of one kind and lets only the first few be logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogBudget {
    seen: u64,
    logged: u64,
}

impl LogBudget {
    /// Nothing seen yet; the first `logged` events are to be logged.
    pub const fn new(logged: u64) -> Self {
        Self { seen: 0, logged }
    }

    /// Counts one event. `Some(tail)` if it is to be logged: `tail` is empty, or on the last
    /// logged one says that `later` (further ones are not logged).
    pub fn next(&mut self, later: &'static str) -> Option<LogTail> {
        self.seen += 1;
        (self.seen <= self.logged).then_some(LogTail((self.seen == self.logged).then_some(later)))
    }

    /// Events counted so far.
    pub const fn seen(&self) -> u64 {
        self.seen
    }
}

/// The end of a rate-limited log line: nothing, or ` (LATER)` on the last one logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogTail(Option<&'static str>);

impl fmt::Display for LogTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(later) => write!(f, " ({later})"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn logs_the_first_few_and_says_so_on_the_last() {
        let mut b = LogBudget::new(3);
        let tails: std::vec::Vec<_> = (0..5)
            .map(|_| b.next("no more").map(|t| t.to_string()))
            .collect();
        assert_eq!(
            tails,
            [
                Some(std::string::String::new()),
                Some(std::string::String::new()),
                Some(" (no more)".to_string()),
                None,
                None
            ]
        );
        assert_eq!(b.seen(), 5);
    }

    #[test]
    fn zero_budget_logs_nothing() {
        let mut b = LogBudget::new(0);
        assert_eq!(b.next("x"), None);
        assert_eq!(b.seen(), 1);
    }
}
