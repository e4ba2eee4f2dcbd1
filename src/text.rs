//! Small text helpers shared by several modules: times as RFC 3339, and error chains.
//! Pure: no I/O.

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

/// An error with its causes, which `Display` of wrapping errors (reqwest, hyper) leaves out.
/// Lower-case hex SHA-256 of `bytes`, as `sha256sum` prints it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

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
/// status and errors: a URL with credentials must not be printed as given.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let userinfo = &authority[..at];
    let user = userinfo.split(':').next().unwrap_or("");
    format!("{}://{user}:***@{}", &url[..scheme_end], &rest[at + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_passwords() {
        assert_eq!(redact_url("https://h/x"), "https://h/x");
        assert_eq!(
            redact_url("https://u:secret@h:8/p?q=1"),
            "https://u:***@h:8/p?q=1"
        );
        assert_eq!(redact_url("http://tok@h/"), "http://tok:***@h/");
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
