//! Pure normalisers: the one spelling of each identifier the graph stores and searches.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdentifierError {
    #[error("empty {0}")]
    Empty(&'static str),
    #[error("bad card number: {0}")]
    Card(String),
    // The value itself is never part of the message (import summaries and logs show it):
    // its length and the reason are enough to find it on the line named.
    #[error("not an e-mail address ({1}; {0} characters)")]
    Email(usize, &'static str),
    #[error("not a phone number ({1}; {0} characters)")]
    Phone(usize, &'static str),
    #[error("too long for a {1} ({0} characters, at most {2})")]
    TooLong(usize, &'static str, usize),
}

const MAX_KEY: usize = 64;

fn plain_key(raw: &str, what: &'static str) -> Result<String, IdentifierError> {
    let value = raw.trim();
    if value.is_empty() {
        return Err(IdentifierError::Empty(what));
    }
    if value.chars().count() > MAX_KEY {
        return Err(IdentifierError::TooLong(
            value.chars().count(),
            what,
            MAX_KEY,
        ));
    }
    Ok(value.to_string())
}

/// A CRM customer number: trimmed, otherwise as written (it is the CRM's key).
pub fn normalise_customer_no(raw: &str) -> Result<String, IdentifierError> {
    plain_key(raw, "customer number")
}

/// An online account id: trimmed.
pub fn normalise_online_account(raw: &str) -> Result<String, IdentifierError> {
    plain_key(raw, "online account id")
}

/// An e-mail address: trimmed and lower-cased, with one `@`, a non-empty local part
/// and a dotted domain without empty labels or spaces.
pub fn normalise_email(raw: &str) -> Result<String, IdentifierError> {
    let value = raw.trim().to_lowercase();
    let bad = |why| Err(IdentifierError::Email(raw.trim().chars().count(), why));
    if value.is_empty() {
        return Err(IdentifierError::Empty("e-mail address"));
    }
    if value.len() > 254 {
        return bad("longer than 254 characters");
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("contains a space");
    }
    let Some((local, domain)) = value.split_once('@') else {
        return bad("no @");
    };
    if local.is_empty() || domain.contains('@') {
        return bad("one @ after a non-empty name expected");
    }
    if !domain.contains('.') || domain.split('.').any(str::is_empty) {
        return bad("the domain needs a dot between non-empty parts");
    }
    Ok(value)
}

/// A phone number in E.164 (`+` and 8 to 15 digits). Spaces, dashes, dots, slashes and
/// brackets (and a `(0)` trunk prefix) are dropped; `00` means an international prefix; a national number
/// (leading `0`, or no prefix at all) gets `country_code`: `06 1234 5678` → `+31612345678`.
pub fn normalise_phone(raw: &str, country_code: u16) -> Result<String, IdentifierError> {
    let bad = |why| Err(IdentifierError::Phone(raw.trim().chars().count(), why));
    // `+31 (0)6 …`: the bracketed trunk prefix is not dialled from abroad.
    let written = raw.trim().replace("(0)", "");
    let mut compact = String::with_capacity(written.len());
    for (i, c) in written.chars().enumerate() {
        match c {
            '0'..='9' => compact.push(c),
            '+' if i == 0 => compact.push(c),
            ' ' | '-' | '.' | '/' | '(' | ')' => {}
            _ => return bad("unexpected character"),
        }
    }
    if compact.is_empty() {
        return Err(IdentifierError::Empty("phone number"));
    }
    let international = if let Some(rest) = compact.strip_prefix('+') {
        rest.to_string()
    } else if let Some(rest) = compact.strip_prefix("00") {
        rest.to_string()
    } else {
        if country_code == 0 {
            return bad("no country code");
        }
        format!(
            "{country_code}{}",
            compact.strip_prefix('0').unwrap_or(&compact)
        )
    };
    if international.starts_with('0') {
        return bad("a country code never starts with 0");
    }
    if !(8..=15).contains(&international.len()) {
        return bad("E.164 numbers have 8 to 15 digits");
    }
    Ok(format!("+{international}"))
}
