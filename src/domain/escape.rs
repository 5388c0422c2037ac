//! Text from outside (ticket titles, states, server messages, error texts) made safe for a
//! terminal. Residents write ticket titles: a raw ESC, CR or line feed in one could retitle or
//! clear the operator's terminal, or forge output lines. Every human-readable output that shows
//! such text goes through [`esc`]; `--json` output stays exact (JSON escapes control characters
//! itself). The web board shows the same text through [`esc_page`] (its template environment
//! applies it to every value a page or fragment prints): a bidi override or a NUL in a title
//! would reorder or cut what the dispatcher reads, and there too it is shown as `\u{202e}`.

use std::borrow::Cow;
use std::fmt;

/// Text shown with its control characters escaped: C0 (including ESC, CR, LF, BEL and TAB),
/// DEL and C1 as `\x1b`, `\r`, `\n`…, and the characters that reorder or break lines
/// (bidi embeddings, overrides and isolates, LRM/RLM/ALM, U+2028/U+2029) as `\u{202e}`.
/// Everything else, Finnish letters included, is shown as it is.
#[derive(Debug, Clone, Copy)]
pub struct Esc<'a>(pub &'a str);

/// Wraps `s` for display with its control characters escaped.
pub fn esc(s: &str) -> Esc<'_> {
    Esc(s)
}

/// Whether `c` must not reach a terminal raw.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// Writes `c`, a character [`unsafe_char`] holds unsafe, visibly: `\n`, `\x1b`, `\u{202e}`.
fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
        c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
    }
}

/// Text for a web page: the characters [`Esc`] escapes, written the same visible way, except
/// line feeds, carriage returns and tabs, which a page shows as white space (a description's
/// lines stay lines). HTML escaping is the template's, after this.
pub fn esc_page(s: &str) -> Cow<'_, str> {
    let escaped = |c: char| unsafe_char(c) && !matches!(c, '\n' | '\r' | '\t');
    if !s.chars().any(escaped) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if escaped(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Fast path: most text needs nothing, and then width and alignment (`{:<13}`) apply.
        if !self.0.chars().any(unsafe_char) {
            return f.pad(self.0);
        }
        let mut out = String::with_capacity(self.0.len() + 8);
        for c in self.0.chars() {
            if unsafe_char(c) {
                push_escaped(&mut out, c);
            } else {
                out.push(c);
            }
        }
        f.pad(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::{esc, esc_page};

    #[test]
    fn control_characters_are_escaped_and_text_is_kept() {
        for (input, shown) in [
            ("Vuotava hana, 3. krs", "Vuotava hana, 3. krs"),
            ("Äänekäs ilmanvaihto", "Äänekäs ilmanvaihto"),
            ("Vuoto\x1b]0;PWNED\x07", "Vuoto\\x1b]0;PWNED\\x07"),
            ("\x1b[2J", "\\x1b[2J"),
            ("a\r\nsim-1  9999  Avoin", "a\\r\\nsim-1  9999  Avoin"),
            ("tab\there", "tab\\there"),
            ("del\x7f", "del\\x7f"),
            ("nul\0", "nul\\x00"),
            ("c1 \u{9b}31m", "c1 \\x9b31m"),
            ("\u{85}next line", "\\x85next line"),
            ("evil\u{202e}txt.exe", "evil\\u{202e}txt.exe"),
            ("\u{2066}iso\u{2069}", "\\u{2066}iso\\u{2069}"),
            ("lrm\u{200e}rlm\u{200f}", "lrm\\u{200e}rlm\\u{200f}"),
            ("line\u{2028}sep", "line\\u{2028}sep"),
            ("", ""),
        ] {
            assert_eq!(esc(input).to_string(), shown, "{input:?}");
        }
    }

    #[test]
    fn a_page_gets_the_same_escapes_but_keeps_its_line_breaks() {
        for (input, shown) in [
            ("Vuotava hana\n3. krs\tovi", "Vuotava hana\n3. krs\tovi"),
            (
                "Lasku\u{202e}gpj.exe\0 rikki",
                "Lasku\\u{202e}gpj.exe\\x00 rikki",
            ),
            ("a\x1b[2Jb\u{85}c\u{2028}", "a\\x1b[2Jb\\x85c\\u{2028}"),
            ("crlf\r\n", "crlf\r\n"),
        ] {
            assert_eq!(esc_page(input), shown, "{input:?}");
        }
        assert!(matches!(esc_page("Äänekäs"), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn width_and_alignment_apply_to_the_escaped_text() {
        assert_eq!(format!("[{:<6}]", esc("Avoin")), "[Avoin ]");
        assert_eq!(format!("[{:<6}]", esc("a\x07")), "[a\\x07 ]");
        assert_eq!(format!("[{:>4}]", esc("\x1b")), "[\\x1b]");
    }
}
