//! Small text helpers shared by several modules: times as RFC 3339, and error chains.
//! Pure: no I/O.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A time as RFC 3339 (`2026-01-02T03:04:05Z`), the form manifests and state files use.
pub fn fmt_time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_lists_causes() {
        let inner = std::io::Error::other("inner");
        let outer = std::io::Error::new(std::io::ErrorKind::NotFound, inner);
        assert_eq!(error_chain(&outer), "inner");
        assert_eq!(fmt_time(OffsetDateTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }
}
