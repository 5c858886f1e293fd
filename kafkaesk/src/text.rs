//! Text that came from the bus, shown to people: in errors, log lines and
//! the command line's output. Every byte from the bus is untrusted, so
//! nothing here is shown as it came; a panic's payload is made text here too.

/// Text from the bus made safe to print on a terminal or in a log line:
/// control characters (an escape sequence that would recolour or clear a
/// terminal, a newline that would forge a log line) are written as Rust
/// escapes, `\u{1b}`, and so are bidirectional overrides, which can make
/// one name read as another; other text is returned as it is.
///
/// ```
/// assert_eq!(kafkaesk::record::printable("shop\x1b[2J"), "shop\\u{1b}[2J");
/// assert_eq!(kafkaesk::record::printable("café"), "café");
/// assert_eq!(kafkaesk::record::printable("shop\u{202e}gnilleb"), "shop\\u{202e}gnilleb");
/// ```
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(hidden) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if hidden(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A character that changes how the text around it shows rather than
/// showing itself: controls, and the bidirectional marks and overrides
/// that can make a name read as another (`\u{202e}`).
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// The text of a panic's payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
