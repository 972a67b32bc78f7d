//! When each peer next has timer work: an index of per-peer deadlines, so that finding the next
//! deadline and the peers due costs in proportion to the peers with work, not to the table.
//!
//! The tunnel marks a peer *touched* whenever something may have moved its deadline, and
//! recomputes the touched ones at the end of every input ([`Schedule::take_touched`],
//! [`Schedule::set`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// Per-peer deadlines, ordered by time.
#[derive(Debug, Default)]
pub struct Schedule {
    by_time: BTreeSet<(Instant, u32)>,
    of: BTreeMap<u32, Instant>,
    touched: BTreeSet<u32>,
}

impl Schedule {
    /// `node`'s deadline may have changed: recompute it at the end of the input.
    pub fn touch(&mut self, node: u32) {
        self.touched.insert(node);
    }

    /// The peers touched since the last call, in node order.
    pub fn take_touched(&mut self) -> BTreeSet<u32> {
        std::mem::take(&mut self.touched)
    }

    /// Sets `node`'s next deadline (`None`: it has none, or is gone).
    pub fn set(&mut self, node: u32, deadline: Option<Instant>) {
        if let Some(old) = self.of.remove(&node) {
            self.by_time.remove(&(old, node));
        }
        if let Some(at) = deadline {
            self.of.insert(node, at);
            self.by_time.insert((at, node));
        }
    }

    /// `node`'s deadline as last set.
    pub fn get(&self, node: u32) -> Option<Instant> {
        self.of.get(&node).copied()
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.by_time.first().map(|(at, _)| *at)
    }

    /// The peers whose deadline is at or before `now`, earliest first.
    pub fn due(&self, now: Instant) -> Vec<u32> {
        self.by_time
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, node)| *node)
            .collect()
    }

    /// Peers with a deadline.
    pub fn len(&self) -> usize {
        self.of.len()
    }

    /// Whether no peer has a deadline.
    pub fn is_empty(&self) -> bool {
        self.of.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn deadlines_are_ordered_replaced_and_removed() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut s = Schedule::default();
        s.set(1, Some(at(5)));
        s.set(2, Some(at(3)));
        s.set(3, Some(at(9)));
        assert_eq!(s.next(), Some(at(3)));
        assert_eq!(s.due(at(5)), [2, 1]);
        s.set(2, Some(at(10)));
        assert_eq!(s.due(at(5)), [1]);
        s.set(1, None);
        assert_eq!((s.next(), s.len()), (Some(at(9)), 2));
        assert_eq!(s.get(1), None);
        s.touch(3);
        s.touch(2);
        s.touch(3);
        assert_eq!(s.take_touched().into_iter().collect::<Vec<_>>(), [2, 3]);
        assert!(s.take_touched().is_empty());
    }
}
