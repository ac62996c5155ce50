//! The channel announcement parser driven by the fuzzer: the input, as text (bytes that are
//! not UTF-8 replaced), is parsed as the value of one `bulkhead.channel=` word and as a whole
//! kernel command line. Anyone who edits the boot loader's configuration writes these words,
//! so any panic is a finding, and so is an announcement that does not print back as a word
//! that parses to the same announcement (its canonical form).

#![no_main]

use bulkhead_ring::announce::{Announcement, CHANNEL_ALIGN, MAX_NAME_LEN, PARAM, parse_cmdline};
use libfuzzer_sys::fuzz_target;

/// `a` prints as one word that parses back to `a`, both ways in.
fn round_trips(a: Announcement<'_>) {
    assert!(!a.name.is_empty() && a.name.len() <= MAX_NAME_LEN);
    assert!(a.base.is_multiple_of(CHANNEL_ALIGN) && a.size.is_multiple_of(CHANNEL_ALIGN));
    assert!(a.base.checked_add(a.size).is_some());
    let word = a.to_string();
    assert!(!word.contains(char::is_whitespace), "{word:?} is one word");
    let value = word
        .strip_prefix(PARAM)
        .expect("the word starts with the parameter");
    assert_eq!(Announcement::parse_value(value), Ok(a), "{word}");
    let mut again = parse_cmdline(&word);
    assert_eq!(again.next(), Some(Ok(a)), "{word}");
    assert_eq!(again.next(), None, "{word}");
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(a) = Announcement::parse_value(&text) {
        round_trips(a);
    }
    let words = text
        .split_ascii_whitespace()
        .filter(|w| w.starts_with(PARAM))
        .count();
    let mut parsed = 0;
    for result in parse_cmdline(&text) {
        parsed += 1;
        if let Ok(a) = result {
            round_trips(a);
        }
    }
    assert_eq!(parsed, words, "one result per bulkhead.channel= word");
});
