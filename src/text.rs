//! Small text helpers shared by several modules: times as RFC 3339, error chains, and text
//! made safe for one-line protocols and terminals. Pure: no I/O.

use std::borrow::Cow;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A time as RFC 3339 (`2026-01-02T03:04:05Z`), the form manifests and state files use.
pub fn fmt_time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// RFC 3339 for Unix seconds (the number itself when out of range).
pub fn fmt_unix<T>(t: T) -> String
where
    T: TryInto<i64> + std::fmt::Display + Copy,
{
    t.try_into()
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .map(fmt_time)
        .unwrap_or_else(|| t.to_string())
}

/// Lower-case hex SHA-256 of `bytes`, as `sha256sum` prints it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An error with its causes, which `Display` of wrapping errors (reqwest, hyper) leaves out.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A URL with the password of its userinfo replaced (`https://user:***@host/...`), for logs,
/// status and errors: a URL with credentials must not be printed as given. A userinfo with no
/// password is often a token itself (`https://TOKEN@host/`): it becomes `***`.
pub fn redact_url(url: &str) -> String {
    redact_urls_in(url).into_owned()
}

/// Every URL in free text (an error message, a warning, a skip reason) with its credentials
/// redacted as [`redact_url`] does; text with none is returned as it is.
pub fn redact_urls_in(text: &str) -> Cow<'_, str> {
    let mut out = String::new();
    let mut done = 0;
    let mut from = 0;
    while let Some(found) = text[from..].find("://") {
        let start = from + found + 3;
        let rest = &text[start..];
        let end = rest
            .find(|c: char| "/?#".contains(c) || c.is_whitespace() || "\"'<>`,;)]}".contains(c))
            .unwrap_or(rest.len());
        let authority = &rest[..end];
        from = start + end;
        let Some(at) = authority.rfind('@') else {
            continue;
        };
        let userinfo = &authority[..at];
        out.push_str(&text[done..start]);
        match userinfo.split_once(':') {
            Some((user, _)) => {
                out.push_str(user);
                out.push_str(":***");
            }
            None => out.push_str("***"),
        }
        done = start + at;
    }
    if done == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[done..]);
    Cow::Owned(out)
}

/// `s` on one line: every control character, newlines included, escaped (`\n`, `\u{1b}`),
/// so that text from a manifest, a settings file or the network cannot add an `sd_notify`
/// assignment to `STATUS=`, a line to a log, or a row to a table.
pub fn one_line(s: &str) -> Cow<'_, str> {
    escape_controls(s, |_| false)
}

/// `s` for a terminal: control characters other than newline and tab escaped, so that a
/// manifest's string cannot move the cursor, recolour, retitle or clear the terminal.
pub fn terminal_safe(s: &str) -> Cow<'_, str> {
    escape_controls(s, |c| c == '\n' || c == '\t')
}

fn escape_controls(s: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && !keep(c);
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_cross_into_protocols_or_terminals() {
        let evil = "ok\nMAINPID=1\r\u{1b}[2J\u{1b}]0;title\u{7}\u{9b}31m\tend";
        let line = one_line(evil);
        assert!(!line.chars().any(char::is_control), "{line}");
        assert_eq!(
            line,
            "ok\\nMAINPID=1\\r\\u{1b}[2J\\u{1b}]0;title\\u{7}\\u{9b}31m\\tend"
        );
        let term = terminal_safe(evil);
        assert!(term.contains('\n') && term.contains('\t'));
        assert!(!term.contains('\u{1b}') && !term.contains('\r') && !term.contains('\u{9b}'));
        assert!(matches!(one_line("plain — text"), Cow::Borrowed(_)));
    }

    #[test]
    fn urls_lose_their_passwords() {
        assert_eq!(redact_url("https://h/x"), "https://h/x");
        assert_eq!(
            redact_url("https://u:secret@h:8/p?q=1"),
            "https://u:***@h:8/p?q=1"
        );
        assert_eq!(redact_url("http://tok@h/"), "http://***@h/");
        assert_eq!(
            redact_urls_in("fetch http://a:pw@h/x failed; then https://tok@g:1 and ftp://h/"),
            "fetch http://a:***@h/x failed; then https://***@g:1 and ftp://h/"
        );
        assert!(matches!(redact_urls_in("no url here"), Cow::Borrowed(_)));
        assert_eq!(
            redact_urls_in("\"origin\":\"http://u:p@h/m\""),
            "\"origin\":\"http://u:***@h/m\""
        );
        assert_eq!(redact_url("https://h/a@b"), "https://h/a@b");
    }

    #[test]
    fn chain_lists_causes() {
        let inner = std::io::Error::other("inner");
        let outer = std::io::Error::new(std::io::ErrorKind::NotFound, inner);
        assert_eq!(error_chain(&outer), "inner");
        assert_eq!(fmt_time(OffsetDateTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }
}
