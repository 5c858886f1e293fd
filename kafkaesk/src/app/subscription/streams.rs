//! What a subscription consumes: [`Streams`], an fnmatch pattern over
//! stream names or a list of them, and the fnmatch matching itself, which
//! librdkafka is given as a regular expression.

/// What a subscription consumes: streams matching a pattern, or a fixed list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Streams {
    /// An fnmatch pattern over stream names, such as `content.*`. Topics
    /// created after the consumer started are picked up when they match.
    Pattern(String),
    /// An explicit list of stream names.
    List(Vec<String>),
}

impl std::fmt::Display for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Streams::Pattern(p) => f.write_str(p),
            Streams::List(l) => f.write_str(&l.join(",")),
        }
    }
}

impl Streams {
    /// The regular expression a consumer subscribes with, topic prefix included.
    ///
    /// ```
    /// use kafkaesk::Streams;
    /// let list = Streams::List(vec!["a.b".into(), "c".into()]);
    /// assert_eq!(list.regex("p."), r"^(p\.a\.b|p\.c)$");
    /// ```
    pub fn regex(&self, prefix: &str) -> String {
        match self {
            Streams::Pattern(pattern) => fnmatch_to_regex(prefix, pattern),
            Streams::List(list) => {
                let alternatives: Vec<String> = list
                    .iter()
                    .map(|s| {
                        let anchored = fnmatch_to_regex(prefix, s);
                        anchored[1..anchored.len() - 1].to_owned()
                    })
                    .collect();
                format!("^({})$", alternatives.join("|"))
            }
        }
    }

    /// Whether a consumer of these streams under `prefix` reads `topic`.
    ///
    /// ```
    /// use kafkaesk::Streams;
    /// let pattern = Streams::Pattern("orders.*".into());
    /// assert!(pattern.matches_topic("p.", "p.orders.created"));
    /// assert!(!pattern.matches_topic("p.", "orders.created"));
    /// ```
    pub fn matches_topic(&self, prefix: &str, topic: &str) -> bool {
        let Some(stream) = topic.strip_prefix(prefix) else {
            return false;
        };
        match self {
            Streams::Pattern(pattern) => fnmatch(pattern, stream),
            Streams::List(list) => list.iter().any(|s| fnmatch(s, stream)),
        }
    }
}

/// Translates an fnmatch pattern (`*`, `?`, `[...]`, `[!...]`) into an
/// anchored POSIX extended regular expression, the dialect librdkafka uses
/// for `^`-prefixed subscriptions. `prefix` is matched literally.
///
/// ```
/// assert_eq!(kafkaesk::subscription::fnmatch_to_regex("dev.", "content.*"), r"^dev\.content\..*$");
/// ```
pub fn fnmatch_to_regex(prefix: &str, pattern: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + pattern.len() * 2 + 2);
    out.push('^');
    push_literal(&mut out, prefix);
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            '[' => match class_end(&chars, i) {
                Some(end) => {
                    out.push('[');
                    let mut j = i + 1;
                    if chars[j] == '!' {
                        out.push('^');
                        j += 1;
                    }
                    for &c in &chars[j..end] {
                        // Inside a bracket expression only `\` needs care.
                        if c == '\\' {
                            out.push_str("\\\\");
                        } else {
                            out.push(c);
                        }
                    }
                    out.push(']');
                    i = end;
                }
                None => out.push_str("\\["),
            },
            c => push_literal_char(&mut out, c),
        }
        i += 1;
    }
    out.push('$');
    out
}

/// Whether `text` matches the fnmatch `pattern` as a whole: the same syntax,
/// and the same answer, as the regular expression of [`fnmatch_to_regex`].
///
/// ```
/// assert!(kafkaesk::subscription::fnmatch("content.*", "content.edited"));
/// assert!(!kafkaesk::subscription::fnmatch("content.[!e]*", "content.edited"));
/// ```
pub fn fnmatch(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    matches_from(&pattern, &text)
}

fn matches_from(pattern: &[char], text: &[char]) -> bool {
    let Some((&first, rest)) = pattern.split_first() else {
        return text.is_empty();
    };
    match first {
        // Every split of the text, shortest first; patterns are short.
        '*' => (0..=text.len()).any(|skip| matches_from(rest, &text[skip..])),
        '?' => !text.is_empty() && matches_from(rest, &text[1..]),
        '[' => match class_end(pattern, 0) {
            Some(end) => {
                let Some((&c, text_rest)) = text.split_first() else {
                    return false;
                };
                let (negated, members) = match pattern[1] {
                    '!' => (true, &pattern[2..end]),
                    _ => (false, &pattern[1..end]),
                };
                class_contains(members, c) != negated
                    && matches_from(&pattern[end + 1..], text_rest)
            }
            None => text.first() == Some(&'[') && matches_from(rest, &text[1..]),
        },
        literal => text.first() == Some(&literal) && matches_from(rest, &text[1..]),
    }
}

/// Whether a bracket expression's members (`a-z_`) contain `c`.
fn class_contains(members: &[char], c: char) -> bool {
    let mut i = 0;
    while i < members.len() {
        // A `-` first or last is literal, as in POSIX bracket expressions.
        if i + 2 < members.len() && members[i + 1] == '-' {
            if (members[i]..=members[i + 2]).contains(&c) {
                return true;
            }
            i += 3;
        } else {
            if members[i] == c {
                return true;
            }
            i += 1;
        }
    }
    false
}

/// Index of the `]` closing the class that opens at `start`, as fnmatch reads it.
fn class_end(chars: &[char], start: usize) -> Option<usize> {
    let mut j = start + 1;
    if chars.get(j) == Some(&'!') {
        j += 1;
    }
    // A `]` right after the opening is a literal member.
    if chars.get(j) == Some(&']') {
        j += 1;
    }
    while j < chars.len() {
        if chars[j] == ']' {
            return Some(j);
        }
        j += 1;
    }
    None
}

fn push_literal(out: &mut String, text: &str) {
    for c in text.chars() {
        push_literal_char(out, c);
    }
}

fn push_literal_char(out: &mut String, c: char) {
    if "\\.^$|()[]{}*+?".contains(c) {
        out.push('\\');
    }
    out.push(c);
}

/// Whether an fnmatch pattern has wildcards.
pub fn is_pattern(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(prefix: &str, pattern: &str, topic: &str) -> bool {
        regex::Regex::new(&fnmatch_to_regex(prefix, pattern))
            .unwrap()
            .is_match(topic)
    }

    #[test]
    fn star_question_and_classes() {
        assert!(matches("", "content.*", "content.edited"));
        assert!(!matches("", "content.*", "contentXedited"));
        assert!(matches("", "a?c", "abc"));
        assert!(!matches("", "a?c", "abbc"));
        assert!(matches("", "log.[ab]", "log.a"));
        assert!(!matches("", "log.[!ab]", "log.a"));
        assert!(matches("", "log.[!ab]", "log.c"));
        assert!(matches("", "x[", "x["));
    }

    #[test]
    fn the_matcher_agrees_with_the_regex() {
        let patterns = [
            "content.*",
            "a?c",
            "log.[ab]",
            "log.[!ab]",
            "x[",
            "[a-c]x",
            "*.dead",
            "a*b*c",
        ];
        let topics = [
            "content.edited",
            "contentXedited",
            "abc",
            "abbc",
            "log.a",
            "log.c",
            "x[",
            "bx",
            "dx",
            "orders.dead",
            "dead",
            "aXbYc",
            "abc.",
            "",
        ];
        for pattern in patterns {
            for topic in topics {
                assert_eq!(
                    fnmatch(pattern, topic),
                    matches("", pattern, topic),
                    "{pattern} on {topic:?}"
                );
            }
        }
    }

    #[test]
    fn prefix_is_literal_and_anchored() {
        assert!(matches("p.", "s", "p.s"));
        assert!(!matches("p.", "s", "pxs"));
        assert!(!matches("p.", "s", "p.s2"));
        assert!(!matches("p.", "s", "xp.s"));
    }
}
