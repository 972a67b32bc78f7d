//! File and inbox names. A sender's file name is untrusted: only its last path element is
//! kept, control characters go, `.`/`..`/empty names are refused, and the length is bounded,
//! so a stored file always lands inside the received folder. Stored names carry a timestamp
//! (`<stem>-<YYYYMMDD-HHMMSS.mmm><ext>`, UTC); the store adds `-2`, `-3`, .. instead of
//! overwriting a name that exists.

use std::time::{SystemTime, UNIX_EPOCH};
use time::OffsetDateTime;

/// Longest stored file name, in bytes, before the timestamp is added.
pub const MAX_STORED_NAME: usize = 160;

/// A sender's file name, made safe: `None` when nothing usable is left.
pub fn sanitize(raw: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    // Both separators count: a name from Windows must not keep its folders either.
    let last = text.rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = last.chars().filter(|c| !c.is_control()).collect();
    let clean = clean.trim();
    if clean.is_empty() || clean.chars().all(|c| c == '.') {
        return None;
    }
    Some(shorten(clean))
}

/// Cuts a name to [`MAX_STORED_NAME`] bytes, keeping its extension when that is short.
fn shorten(name: &str) -> String {
    if name.len() <= MAX_STORED_NAME {
        return name.to_string();
    }
    let (stem, ext) = split_extension(name);
    let ext = if ext.len() <= 16 { ext } else { "" };
    let mut end = MAX_STORED_NAME - ext.len();
    while !stem.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ext}", &stem[..end])
}

/// Splits at the last dot: the extension keeps its dot; a leading-dot name is all extension.
pub fn split_extension(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(i) => (&name[..i], &name[i..]),
        None => (name, ""),
    }
}

/// `YYYYMMDD-HHMMSS.mmm` in UTC.
pub fn stamp(at: SystemTime) -> String {
    let nanos = at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    let t = OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}.{:03}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// The stem and extension a received file is stored under (before collision suffixes).
pub fn stored_file(name: &str, at: SystemTime) -> (String, String) {
    let (stem, ext) = split_extension(name);
    (format!("{stem}-{}", stamp(at)), ext.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn hostile_names_lose_their_paths() {
        assert_eq!(sanitize(b"../x").as_deref(), Some("x"));
        assert_eq!(sanitize(b"/etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(sanitize(b"..\\..\\boot.ini").as_deref(), Some("boot.ini"));
        assert_eq!(sanitize(b"a\0b.txt").as_deref(), Some("ab.txt"));
        assert_eq!(sanitize(b"dir/").as_deref(), None);
        assert_eq!(sanitize(b""), None);
        assert_eq!(sanitize(b".."), None);
        assert_eq!(sanitize(b"."), None);
        assert_eq!(sanitize(b"\0\0"), None);
        assert_eq!(sanitize(b"x/.."), None);
        assert_eq!(sanitize(&[0xff, b'a']).as_deref(), Some("\u{fffd}a"));
    }

    #[test]
    fn long_names_are_bounded_and_keep_their_extension() {
        let long = format!("{}.pdf", "n".repeat(10_000));
        let safe = sanitize(long.as_bytes()).unwrap();
        assert_eq!(safe.len(), MAX_STORED_NAME);
        assert!(safe.ends_with(".pdf"));
        let wide = "é".repeat(5_000);
        assert!(sanitize(wide.as_bytes()).unwrap().len() <= MAX_STORED_NAME);
    }

    #[test]
    fn extensions_split_at_the_last_dot() {
        assert_eq!(split_extension("a.tar.gz"), ("a.tar", ".gz"));
        assert_eq!(split_extension(".bashrc"), ("", ".bashrc"));
        assert_eq!(split_extension("README"), ("README", ""));
    }

    #[test]
    fn stamps_have_millisecond_precision() {
        let at = UNIX_EPOCH + Duration::from_millis(1_767_225_600_123);
        assert_eq!(stamp(at), "20260101-000000.123");
        assert_eq!(
            stored_file("report.pdf", at),
            ("report-20260101-000000.123".into(), ".pdf".into())
        );
    }
}
