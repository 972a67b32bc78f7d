//! Hostname and tag validation (`spec/registry.md` §7.4, §6.11).

/// Names no node may take.
pub const RESERVED: [&str; 3] = ["localhost", "backbone", "broadcast"];
/// Most tags per node.
pub const MAX_TAGS: usize = 10;

/// Checks a non-empty hostname; the error text is the reference's.
pub fn validate_hostname(name: &str) -> Result<(), String> {
    if name.len() > 63 {
        return Err("hostname too long (max 63 chars)".into());
    }
    if !label_ok(name, 63) {
        return Err(
            "hostname must be lowercase alphanumeric with hyphens, start/end with alphanumeric"
                .into(),
        );
    }
    if RESERVED.contains(&name) {
        return Err(format!("hostname {name:?} is reserved"));
    }
    Ok(())
}

/// `^[a-z0-9]([a-z0-9-]{0,max-2}[a-z0-9])?$`
fn label_ok(s: &str, max: usize) -> bool {
    let b = s.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= max
        && alnum(&b[0])
        && alnum(&b[b.len() - 1])
        && b.iter().all(|c| alnum(c) || *c == b'-')
}

/// Strips one leading `#` from each tag and validates the list.
pub fn normalize_tags(tags: &[String]) -> Result<Vec<String>, String> {
    if tags.len() > MAX_TAGS {
        return Err(format!("too many tags (max {MAX_TAGS})"));
    }
    tags.iter()
        .map(|t| {
            let t = t.strip_prefix('#').unwrap_or(t);
            if t.is_empty() || t.len() > 32 || !label_ok(t, 32) {
                Err(format!(
                    "invalid tag {t:?}: 1-32 lowercase alphanumeric with inner hyphens"
                ))
            } else {
                Ok(t.to_string())
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames() {
        for ok in ["a", "alice-agent", "0", &"a".repeat(63)] {
            assert_eq!(validate_hostname(ok), Ok(()), "{ok}");
        }
        assert_eq!(
            validate_hostname(&"a".repeat(64)).unwrap_err(),
            "hostname too long (max 63 chars)"
        );
        for bad in ["-a", "a-", "A", "a.b", "a_b", ""] {
            assert!(validate_hostname(bad).is_err(), "{bad}");
        }
        assert_eq!(
            validate_hostname("localhost").unwrap_err(),
            "hostname \"localhost\" is reserved"
        );
    }

    #[test]
    fn tags() {
        let t = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            normalize_tags(&t(&["#ai", "web-1", "ai"])).unwrap(),
            t(&["ai", "web-1", "ai"])
        );
        assert!(normalize_tags(&t(&["##ai"])).is_err());
        assert!(normalize_tags(&t(&[""])).is_err());
        assert!(normalize_tags(&t(&[&"a".repeat(33)])).is_err());
        assert!(normalize_tags(&t(&["a"; 11])).is_err());
        assert_eq!(normalize_tags(&[]).unwrap(), Vec::<String>::new());
    }
}
