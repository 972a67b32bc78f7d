//! Where two traces part: the first line that differs, with the lines around it.
//!
//! Used by the determinism recheck (one scenario and seed run twice must give the same trace)
//! and by `pilot-sim diff`.

use serde::Serialize;

/// Lines shown before and after the first differing line unless asked otherwise.
pub const CONTEXT: usize = 3;

/// The first place two traces differ.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Divergence {
    /// The 1-based line number where they differ (the same in both: the lines before it are
    /// identical).
    pub line: usize,
    /// That line in the first trace; `None` when the first trace ends before it.
    pub left: Option<String>,
    /// That line in the second trace; `None` when the second trace ends before it.
    pub right: Option<String>,
    /// The common lines just before, with their 1-based numbers.
    pub before: Vec<(usize, String)>,
    /// The lines just after in the first trace, with their numbers.
    pub left_after: Vec<(usize, String)>,
    /// The lines just after in the second trace, with their numbers.
    pub right_after: Vec<(usize, String)>,
}

/// The first line where `a` and `b` differ, with `context` lines around it; `None` when they
/// are identical.
pub fn first_divergence<S: AsRef<str>>(a: &[S], b: &[S], context: usize) -> Option<Divergence> {
    let common = a
        .iter()
        .zip(b)
        .take_while(|(x, y)| x.as_ref() == y.as_ref())
        .count();
    if common == a.len() && common == b.len() {
        return None;
    }
    let numbered = |lines: &[S], from: usize, to: usize| -> Vec<(usize, String)> {
        let to = to.min(lines.len());
        (from.min(to)..to)
            .map(|i| (i + 1, lines[i].as_ref().to_string()))
            .collect()
    };
    Some(Divergence {
        line: common + 1,
        left: a.get(common).map(|l| l.as_ref().to_string()),
        right: b.get(common).map(|l| l.as_ref().to_string()),
        before: numbered(a, common.saturating_sub(context), common),
        left_after: numbered(a, common + 1, common + 1 + context),
        right_after: numbered(b, common + 1, common + 1 + context),
    })
}

impl Divergence {
    /// A readable report: the common lines, then each side's differing line and what follows,
    /// `left_name` and `right_name` naming the two traces.
    pub fn report(&self, left_name: &str, right_name: &str) -> String {
        let mut out = format!("first difference at line {}\n", self.line);
        for (n, l) in &self.before {
            out.push_str(&format!("  {n:>6}   {l}\n"));
        }
        for (name, line, after) in [
            (left_name, &self.left, &self.left_after),
            (right_name, &self.right, &self.right_after),
        ] {
            out.push_str(&format!("  {name}:\n"));
            match line {
                Some(l) => out.push_str(&format!("  {:>6} > {l}\n", self.line)),
                None => out.push_str(&format!("  {:>6} > (end of trace)\n", self.line)),
            }
            for (n, l) in after {
                out.push_str(&format!("  {n:>6}   {l}\n"));
            }
        }
        out
    }
}

/// FNV-1a (64-bit) over the trace's lines, each ended by a newline: a short fingerprint of a
/// run, equal for equal traces.
pub fn hash<S: AsRef<str>>(lines: &[S]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for line in lines {
        for b in line.as_ref().bytes().chain(std::iter::once(b'\n')) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_traces_have_no_divergence_and_one_hash() {
        let a = ["x", "y"];
        assert_eq!(first_divergence(&a, &a, 3), None);
        assert_eq!(hash(&a), hash(&["x", "y"]));
        assert_ne!(hash(&a), hash(&["xy"]), "line ends count");
    }

    #[test]
    fn a_trace_that_stops_early_diverges_where_it_ends() {
        let d = first_divergence(&["a", "b"], &["a", "b", "c"], 1).unwrap();
        assert_eq!(d.line, 3);
        assert_eq!(d.left, None);
        assert_eq!(d.right.as_deref(), Some("c"));
        assert_eq!(d.before, [(2, "b".to_string())]);
        assert!(d.report("one", "two").contains("(end of trace)"));
    }
}
