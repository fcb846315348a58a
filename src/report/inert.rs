//! Captured text made safe to print. Recorded and live answers are untrusted bytes: an ESC
//! in a header value or a body could retitle a terminal window, clear the screen or hide
//! lines, and other control characters are invalid in XML. Every report that prints
//! captured text replaces the control characters a terminal or a parser would act on with
//! visible stand-ins, the same ones everywhere: C0 controls and DEL become their Unicode
//! control pictures (ESC `␛`, CR `␍`, NUL `␀`, DEL `␡`), and C1 controls (U+0080 to U+009F),
//! which have no picture, become U+FFFD `�`. Tab and line feed stay in multi-line text; in a
//! value printed on one line, a line feed becomes `␊`.

use std::borrow::Cow;

/// The visible stand-in for `c`, if a terminal could act on it: C0 controls other than tab
/// and line feed, DEL, and C1 controls. Line feed is a stand-in only when `one_line`.
pub fn stand_in(c: char, one_line: bool) -> Option<char> {
    match c {
        '\t' => None,
        '\n' if !one_line => None,
        // U+2400 + code is the control picture of each C0 control.
        '\0'..='\u{1f}' => char::from_u32(0x2400 + c as u32),
        '\u{7f}' => Some('\u{2421}'),
        '\u{80}'..='\u{9f}' => Some('\u{FFFD}'),
        _ => None,
    }
}

fn replace(s: &str, one_line: bool) -> Cow<'_, str> {
    if !s.chars().any(|c| stand_in(c, one_line).is_some()) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| stand_in(c, one_line).unwrap_or(c))
            .collect(),
    )
}

/// A value printed within one line (a header value, a field's value, a name): every control
/// character but tab, line feed included, shown as its stand-in.
pub fn line(s: &str) -> Cow<'_, str> {
    replace(s, true)
}

/// Multi-line text (a body): line feeds and tabs kept, every other control character shown as
/// its stand-in (a carriage return too, so a line cannot be overwritten on screen).
pub fn lines(s: &str) -> Cow<'_, str> {
    replace(s, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_become_visible_and_the_rest_is_kept() {
        assert_eq!(
            line("\u{1b}]0;pwned\u{7}\u{1b}[2J a\tb\r\nc\u{7f}\u{9b}é✓"),
            "␛]0;pwned␇␛[2J a\tb␍␊c␡\u{FFFD}é✓"
        );
        assert_eq!(lines("a\r\n\u{1b}[31mb\n\tc"), "a␍\n␛[31mb\n\tc");
        assert!(matches!(line("plain text, ünïcode"), Cow::Borrowed(_)));
        // Nothing a terminal acts on survives, whatever the input.
        for c in (0u32..0x100).filter_map(char::from_u32) {
            let out = line(&c.to_string()).into_owned();
            assert!(
                !out.chars().any(|c| c.is_control() && c != '\t'),
                "{c:?} -> {out:?}"
            );
        }
    }
}
