//! Task ids: 16 random bytes written `8-4-4-4-12` in lowercase hex. Ids come from peers and
//! become file names, so only that exact form is accepted (no `/`, `..`, NUL or length games).

/// Length of a task id.
pub const LEN: usize = 36;

/// A new random task id.
pub fn generate() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    format(bytes)
}

/// The task id written from `bytes` (the simulator draws them from its seed).
pub fn format(bytes: [u8; 16]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Whether `id` is a task id: 36 characters, dashes at 8, 13, 18 and 23, lowercase hex elsewhere.
pub fn is_valid(id: &str) -> bool {
    id.len() == LEN
        && id.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}

/// `id` if valid, else an error naming it (shortened, so a hostile id cannot flood logs).
pub fn check(id: &str) -> Result<&str, String> {
    if is_valid(id) {
        Ok(id)
    } else {
        let shown: String = id.chars().take(40).collect();
        Err(format!("invalid task id {shown:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let a = generate();
        let b = generate();
        assert!(is_valid(&a), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn only_the_exact_form_passes() {
        assert!(is_valid("0123abcd-4567-89ef-0123-456789abcdef"));
        for bad in [
            "",
            "a",
            "0123ABCD-4567-89ef-0123-456789abcdef",
            "0123abcd-4567-89ef-0123-456789abcde",
            "0123abcd-4567-89ef-0123-456789abcdef0",
            "0123abcd_4567-89ef-0123-456789abcdef",
            "../../../../../../../../etc/passwd00",
            "0123abcd-4567-89ef-0123-456789abcd\0f",
            "0123abcd-4567-89ef-0123-456789abcdeg",
        ] {
            assert!(!is_valid(bad), "{bad:?}");
            assert!(check(bad).is_err());
        }
        assert!(check(&"x".repeat(10_000)).unwrap_err().len() < 80);
    }
}
