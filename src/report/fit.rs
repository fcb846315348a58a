//! Fitting text to a terminal's width: prose wraps between words with a hanging indent, a
//! table row is cut with `…`, and a name too long for its column loses its middle. Widths
//! are display columns (a CJK character takes two, a colour code none), so a line that fits
//! here fits on the screen and never wraps there.

use unicode_width::UnicodeWidthChar;

/// The width used when standard output is not a terminal and `COLUMNS` is not set: CI logs
/// and files, read in a browser or an editor, where 120 columns show without wrapping.
pub const NO_TERMINAL_WIDTH: usize = 120;

/// The narrowest width honoured; below it every row would be mostly ellipses.
pub const MIN_WIDTH: usize = 40;

/// The widest width honoured (a `COLUMNS` of a million should not make a million-column
/// table).
pub const MAX_WIDTH: usize = 1000;

/// A single word longer than the width is broken over at most this many lines, then cut: an
/// interface name of 70,000 characters is not worth 900 lines of the report.
const MAX_BROKEN_LINES: usize = 3;

/// The width to render for: `COLUMNS` when set to a number, else the terminal's width when
/// `is_terminal`, else [`NO_TERMINAL_WIDTH`]; clamped to [`MIN_WIDTH`]..=[`MAX_WIDTH`].
pub fn width_for(columns: Option<&str>, terminal: Option<usize>) -> usize {
    columns
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|&c| c > 0)
        .or(terminal)
        .unwrap_or(NO_TERMINAL_WIDTH)
        .clamp(MIN_WIDTH, MAX_WIDTH)
}

/// Display columns of `s`, colour codes (`ESC [ … m`) excluded.
pub fn width(s: &str) -> usize {
    let mut w = 0;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip to the end of the escape sequence.
            for e in chars.by_ref() {
                if e.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            w += c.width().unwrap_or(0);
        }
    }
    w
}

/// Splits `s` after at most `cols` display columns; colour codes stay with the part they are
/// in.
fn split_at_width(s: &str, cols: usize) -> (&str, &str) {
    let mut w = 0;
    let mut in_escape = false;
    for (at, c) in s.char_indices() {
        if in_escape {
            in_escape = !c.is_ascii_alphabetic();
            continue;
        }
        if c == '\u{1b}' {
            in_escape = true;
            continue;
        }
        let cw = c.width().unwrap_or(0);
        if w + cw > cols {
            return s.split_at(at);
        }
        w += cw;
    }
    (s, "")
}

/// `s` cut to `cols` columns, ending in `…` when anything was cut. A colour left open by the
/// cut is closed.
pub fn cut(s: &str, cols: usize) -> String {
    if width(s) <= cols {
        return s.to_string();
    }
    let (head, _) = split_at_width(s, cols.saturating_sub(1));
    let mut out = head.to_string();
    out.push('…');
    if head.contains('\u{1b}') {
        out.push_str("\u{1b}[0m");
    }
    out
}

/// `s` in at most `cols` columns, its middle replaced by `…`: both ends of a name (the
/// method and the start of the path, the method name at the end) are what tell names apart.
pub fn cut_middle(s: &str, cols: usize) -> String {
    let w = width(s);
    if w <= cols {
        return s.to_string();
    }
    if cols < 3 {
        return cut(s, cols);
    }
    let keep = cols - 1;
    let front = keep.div_ceil(2);
    let back = keep - front;
    let (head, _) = split_at_width(s, front);
    // The last `back` columns: split where the columns before them end.
    let (_, tail) = split_at_width(s, w - back);
    format!("{head}…{tail}")
}

/// `line` wrapped between words to `cols` columns; continuation lines are indented two
/// more than the line's own leading spaces. A word longer than a line is broken, and cut
/// after [`MAX_BROKEN_LINES`] lines.
pub fn wrap(line: &str, cols: usize) -> Vec<String> {
    let line = line.trim_end();
    if width(line) <= cols {
        return vec![line.to_string()];
    }
    let indent = line.len() - line.trim_start_matches(' ').len();
    let indent = indent.min(cols / 2);
    let hang = " ".repeat((indent + 2).min(cols / 2));
    let mut out = Vec::new();
    let mut cur = " ".repeat(indent);
    let mut cur_w = indent;
    let mut fresh = true;
    for word in line[indent..].split(' ') {
        let ww = width(word);
        if !fresh && cur_w + 1 + ww > cols {
            out.push(std::mem::replace(&mut cur, hang.clone()));
            cur_w = hang.len();
            fresh = true;
        }
        if fresh {
            let mut rest = word;
            let mut broken = 0;
            while cur_w + width(rest) > cols {
                if broken + 1 == MAX_BROKEN_LINES {
                    cur.push_str(&cut(rest, cols - cur_w));
                    rest = "";
                    break;
                }
                let (head, tail) = split_at_width(rest, cols - cur_w);
                cur.push_str(head);
                out.push(std::mem::replace(&mut cur, hang.clone()));
                cur_w = hang.len();
                rest = tail;
                broken += 1;
            }
            cur.push_str(rest);
            cur_w = width(&cur);
            fresh = false;
        } else {
            cur.push(' ');
            cur.push_str(word);
            cur_w += 1 + ww;
        }
    }
    out.push(cur.trim_end().to_string());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_width_comes_from_columns_then_the_terminal_then_a_fixed_one() {
        assert_eq!(width_for(Some("100"), Some(80)), 100);
        assert_eq!(width_for(Some("junk"), Some(80)), 80);
        assert_eq!(width_for(None, None), NO_TERMINAL_WIDTH);
        assert_eq!(width_for(Some("5"), None), MIN_WIDTH);
        assert_eq!(width_for(Some("99999999"), None), MAX_WIDTH);
    }

    #[test]
    fn colour_codes_take_no_columns_and_wide_characters_two() {
        assert_eq!(width("\u{1b}[1;31mFAIL\u{1b}[0m"), 4);
        assert_eq!(width("p50 → 1"), 7);
        assert_eq!(width("日本"), 4);
    }

    #[test]
    fn prose_wraps_between_words_with_a_hanging_indent() {
        let text = "  - different: 95 exchanges differ beyond noise, in 1 interface: GET /api/products/{id}";
        let lines = wrap(text, 40);
        assert!(lines.iter().all(|l| width(l) <= 40), "{lines:#?}");
        assert_eq!(lines[0], "  - different: 95 exchanges differ");
        assert!(lines[1].starts_with("    beyond"), "{lines:#?}");
        assert_eq!(
            lines.join(" ").split_whitespace().collect::<Vec<_>>(),
            text.split_whitespace().collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_word_longer_than_the_line_is_broken_then_cut() {
        let long = format!("GET /{}", "z".repeat(70_000));
        let lines = wrap(&long, 80);
        assert_eq!(
            lines.len(),
            1 + MAX_BROKEN_LINES,
            "the method, then the broken path"
        );
        assert!(lines.iter().all(|l| width(l) <= 80), "{lines:#?}");
        assert!(lines.last().unwrap().ends_with('…'));
        // The broken word continues where the line before stopped: each line adds to it.
        let joined: String = lines[1..].iter().map(|l| l.trim_start()).collect();
        assert!(
            joined.starts_with("/zzz") && joined.matches('/').count() == 1,
            "{joined:.100}"
        );
    }

    #[test]
    fn cuts_keep_within_the_columns_and_close_colours() {
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abc", 4), "abc");
        let red = cut("\u{1b}[31mabcdef\u{1b}[0m", 4);
        assert_eq!(width(&red), 4);
        assert!(red.ends_with("\u{1b}[0m"));
        assert_eq!(
            cut_middle("POST /rpc/user.UserService/GetUserProfile", 20),
            "POST /rpc/…erProfile"
        );
        assert_eq!(width(&cut_middle("日本語のインターフェース名", 9)), 9);
        assert_eq!(cut_middle("short", 20), "short");
    }
}
