//! CSV text cells that are safe to open in a spreadsheet. A cell starting with `=`,
//! `+`, `-`, `@`, a tab or a carriage return is run as a formula by Excel, LibreOffice
//! and Sheets (CSV injection); such a text cell gets a leading `'` (OWASP's advice), so
//! a customer who calls themselves `=HYPERLINK(...)` is shown, not run. Only text
//! columns go through here: a negative number in a numeric column is data.

#![deny(clippy::disallowed_methods)]

/// `text` as one CSV cell: neutralised, then quoted (RFC 4180) when it holds a comma,
/// quote or line break.
pub fn text_cell(text: &str) -> String {
    let neutral;
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        neutral = format!("'{text}");
        neutral.as_str()
    } else {
        text
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::text_cell;

    #[test]
    fn formula_starts_are_neutralised_and_other_text_is_kept() {
        for (raw, cell) in [
            ("=1+1", "'=1+1"),
            ("+31 6 1234", "'+31 6 1234"),
            ("-2", "'-2"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "\"'\rx\""),
            (
                "=HYPERLINK(\"http://x\",\"y\")",
                "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\"",
            ),
            ("Ann", "Ann"),
            ("C1", "C1"),
            ("a=b", "a=b"),
            ("", ""),
            ("O\"Neil, Jr", "\"O\"\"Neil, Jr\""),
        ] {
            assert_eq!(text_cell(raw), cell, "{raw:?}");
        }
    }
}
