//! Replay protection for received `PILS` frames (`spec/wire.md` §4.9).
//!
//! [`ReplayWindow`] is the reference's 256-counter sliding window, split into
//! [`ReplayWindow::check`] (read-only) and [`ReplayWindow::commit`] so that the window moves only
//! for a frame that has authenticated. The reference updates it *before* decrypting, so one
//! forged frame with a huge counter makes every genuine frame "too old" (§11, Q2).
//!
//! [`PrefixReplay`] keeps one window per nonce prefix for the peer's last few prefixes. A Go
//! peer restarts its counter at 1 under a new random prefix every time it accepts a key
//! exchange, even one that leaves the key unchanged (§11, Q4), and its frames under the old and
//! the new prefix can arrive interleaved; a single window would discard the restarted ones as
//! replays (§9 item 3). Prefixes pushed out of the active set are remembered as retired and
//! refused, so frames captured under them cannot be replayed into a fresh window.

/// Counters covered by one window.
pub const WINDOW: u64 = 256;
/// Prefixes with a live window per peer.
pub const ACTIVE_PREFIXES: usize = 4;
/// Retired prefixes remembered per peer.
pub const RETIRED_PREFIXES: usize = 64;

/// Why a counter is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// At or below the window's lower edge (counter 0, which no sender uses, is always here).
    #[error("counter {counter} is too old (window ends at {max})")]
    TooOld {
        /// The refused counter.
        counter: u64,
        /// The highest counter accepted so far.
        max: u64,
    },
    /// Already accepted once.
    #[error("counter {0} was already received")]
    Duplicate(u64),
    /// The frame uses a nonce prefix the peer has since abandoned.
    #[error("nonce prefix {0:02x?} is retired")]
    RetiredPrefix([u8; 4]),
}

/// The 256-counter sliding window of one nonce prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    /// Highest counter committed; 0 while none has been.
    max: u64,
    /// Bit `c mod 256` is set when counter `c` (within 256 of `max`) was committed.
    bits: [u64; 4],
}

impl ReplayWindow {
    /// An empty window.
    pub fn new() -> Self {
        Self::default()
    }

    /// The highest counter committed so far (0 if none).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Whether a frame with `counter` may be accepted. Changes nothing.
    pub fn check(&self, counter: u64) -> Result<(), ReplayError> {
        // Senders increment before use, so 0 is never sent; refusing it keeps "max == 0" an
        // unambiguous "nothing seen yet" (the reference would accept counter 0 repeatedly).
        if counter == 0 {
            return Err(ReplayError::TooOld {
                counter,
                max: self.max,
            });
        }
        if counter > self.max {
            return Ok(());
        }
        if self.max - counter >= WINDOW {
            return Err(ReplayError::TooOld {
                counter,
                max: self.max,
            });
        }
        if self.bit(counter) {
            return Err(ReplayError::Duplicate(counter));
        }
        Ok(())
    }

    /// Records `counter` as received. Call only after [`ReplayWindow::check`] passed and the
    /// frame authenticated; a counter the window refuses is ignored.
    pub fn commit(&mut self, counter: u64) {
        if self.check(counter).is_err() {
            return;
        }
        if counter > self.max {
            let shift = counter - self.max;
            if self.max == 0 || shift >= WINDOW {
                self.bits = [0; 4];
            } else {
                // Forget the positions the window slides over: max+1 ..= counter.
                for c in self.max + 1..=counter {
                    self.set_bit(c, false);
                }
            }
            self.max = counter;
        }
        self.set_bit(counter, true);
    }

    fn bit(&self, counter: u64) -> bool {
        let i = (counter % WINDOW) as usize;
        self.bits[i / 64] & (1 << (i % 64)) != 0
    }

    fn set_bit(&mut self, counter: u64, on: bool) {
        let i = (counter % WINDOW) as usize;
        if on {
            self.bits[i / 64] |= 1 << (i % 64);
        } else {
            self.bits[i / 64] &= !(1 << (i % 64));
        }
    }
}

/// Replay windows for a peer's most recent nonce prefixes, under one key.
#[derive(Clone, Debug)]
pub struct PrefixReplay {
    /// Live windows; `last_use` orders them for eviction.
    active: [Option<ActiveWindow>; ACTIVE_PREFIXES],
    /// Ring of prefixes evicted from `active`; frames under them are refused.
    retired: [Option<[u8; 4]>; RETIRED_PREFIXES],
    /// Next slot of `retired` to overwrite.
    next_retired: usize,
    /// Commits so far, the clock of `last_use`.
    uses: u64,
}

impl Default for PrefixReplay {
    fn default() -> Self {
        PrefixReplay {
            active: Default::default(),
            retired: [None; RETIRED_PREFIXES],
            next_retired: 0,
            uses: 0,
        }
    }
}

#[derive(Clone, Debug)]
struct ActiveWindow {
    prefix: [u8; 4],
    window: ReplayWindow,
    last_use: u64,
}

impl PrefixReplay {
    /// No prefix seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a frame with this nonce may be accepted. Changes nothing.
    pub fn check(&self, prefix: [u8; 4], counter: u64) -> Result<(), ReplayError> {
        match self.find(prefix) {
            Some(i) => self.active[i]
                .as_ref()
                .map_or(Ok(()), |a| a.window.check(counter)),
            None if self.retired.contains(&Some(prefix)) => Err(ReplayError::RetiredPrefix(prefix)),
            None => ReplayWindow::new().check(counter),
        }
    }

    /// Records an authenticated frame's nonce. A new prefix takes the least recently used
    /// window, whose prefix is retired.
    pub fn commit(&mut self, prefix: [u8; 4], counter: u64) {
        if self.check(prefix, counter).is_err() {
            return;
        }
        self.uses += 1;
        let slot = match self.find(prefix) {
            Some(i) => i,
            None => self.take_slot(prefix),
        };
        if let Some(active) = self.active[slot].as_mut() {
            active.window.commit(counter);
            active.last_use = self.uses;
        }
    }

    /// The highest counter committed under `prefix`, if it has a live window.
    pub fn max(&self, prefix: [u8; 4]) -> Option<u64> {
        self.find(prefix)
            .and_then(|i| self.active[i].as_ref())
            .map(|a| a.window.max())
    }

    fn find(&self, prefix: [u8; 4]) -> Option<usize> {
        self.active
            .iter()
            .position(|a| a.as_ref().is_some_and(|a| a.prefix == prefix))
    }

    fn take_slot(&mut self, prefix: [u8; 4]) -> usize {
        let slot = match self.active.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                let (lru, _) = self
                    .active
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, a)| a.as_ref().map_or(0, |a| a.last_use))
                    .unwrap_or((0, &None));
                if let Some(evicted) = self.active[lru].take() {
                    self.retired[self.next_retired] = Some(evicted.prefix);
                    self.next_retired = (self.next_retired + 1) % RETIRED_PREFIXES;
                }
                lru
            }
        };
        self.active[slot] = Some(ActiveWindow {
            prefix,
            window: ReplayWindow::new(),
            last_use: 0,
        });
        slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(w: &mut ReplayWindow, c: u64) -> Result<(), ReplayError> {
        w.check(c)?;
        w.commit(c);
        Ok(())
    }

    #[test]
    fn reference_rules() {
        let mut w = ReplayWindow::new();
        assert!(matches!(accept(&mut w, 0), Err(ReplayError::TooOld { .. })));
        assert_eq!(accept(&mut w, 5), Ok(()));
        assert_eq!(accept(&mut w, 5), Err(ReplayError::Duplicate(5)));
        // Out of order within the window.
        assert_eq!(accept(&mut w, 3), Ok(()));
        assert_eq!(accept(&mut w, 3), Err(ReplayError::Duplicate(3)));
        assert_eq!(accept(&mut w, 300), Ok(()));
        // 300 - 44 = 256: just outside.
        assert_eq!(
            accept(&mut w, 44),
            Err(ReplayError::TooOld {
                counter: 44,
                max: 300
            })
        );
        assert_eq!(accept(&mut w, 45), Ok(()));
        assert_eq!(w.max(), 300);
    }

    #[test]
    fn sliding_clears_the_positions_it_passes() {
        let mut w = ReplayWindow::new();
        for c in 1..=256 {
            accept(&mut w, c).unwrap();
        }
        // 257 and 258 reuse the bit positions of 1 and 2, which must read as free again.
        accept(&mut w, 258).unwrap();
        assert_eq!(accept(&mut w, 257), Ok(()));
        assert!(matches!(accept(&mut w, 2), Err(ReplayError::TooOld { .. })));
        for c in 3..=256 {
            assert_eq!(accept(&mut w, c), Err(ReplayError::Duplicate(c)));
        }
        // A jump of a whole window or more clears everything.
        accept(&mut w, 10_000).unwrap();
        assert_eq!(accept(&mut w, 9_745), Ok(()));
        assert!(matches!(
            accept(&mut w, 9_744),
            Err(ReplayError::TooOld { .. })
        ));
    }

    #[test]
    fn check_alone_changes_nothing() {
        let mut w = ReplayWindow::new();
        accept(&mut w, 10).unwrap();
        let before = w.clone();
        assert_eq!(w.check(u64::MAX), Ok(()));
        assert_eq!(w.check(11), Ok(()));
        assert_eq!(w, before);
        // The window still takes the genuine next frame.
        assert_eq!(accept(&mut w, 11), Ok(()));
    }

    #[test]
    fn commit_of_a_refused_counter_is_ignored() {
        let mut w = ReplayWindow::new();
        accept(&mut w, 1000).unwrap();
        let before = w.clone();
        w.commit(1);
        w.commit(0);
        assert_eq!(w, before);
    }

    #[test]
    fn counter_restart_under_a_new_prefix_is_accepted() {
        let mut r = PrefixReplay::new();
        let (old, new) = ([1; 4], [2; 4]);
        for c in 1..=10 {
            r.check(old, c).unwrap();
            r.commit(old, c);
        }
        // A Go peer re-derived its state: counter 1 again, new prefix; late old frames too.
        assert_eq!(r.check(new, 1), Ok(()));
        r.commit(new, 1);
        assert_eq!(r.check(old, 11), Ok(()));
        r.commit(old, 11);
        assert_eq!(r.check(new, 1), Err(ReplayError::Duplicate(1)));
        assert_eq!(r.check(old, 5), Err(ReplayError::Duplicate(5)));
        assert_eq!(r.max(old), Some(11));
        assert_eq!(r.max(new), Some(1));
    }

    #[test]
    fn evicted_prefixes_stay_refused() {
        let mut r = PrefixReplay::new();
        for p in 0..=ACTIVE_PREFIXES as u8 {
            r.commit([p; 4], 1);
        }
        // Prefix 0 was least recently used and is now retired: its frames are refused even
        // with counters it never used, so captured frames cannot be replayed into a new window.
        assert_eq!(r.max([0; 4]), None);
        assert_eq!(r.check([0; 4], 2), Err(ReplayError::RetiredPrefix([0; 4])));
        for p in 1..=ACTIVE_PREFIXES as u8 {
            assert_eq!(r.check([p; 4], 1), Err(ReplayError::Duplicate(1)));
        }
    }

    #[test]
    fn recently_used_prefix_is_not_evicted() {
        let mut r = PrefixReplay::new();
        for p in 0..ACTIVE_PREFIXES as u8 {
            r.commit([p; 4], 1);
        }
        r.commit([0; 4], 2);
        r.commit([9; 4], 1);
        assert_eq!(r.max([0; 4]), Some(2));
        assert_eq!(r.check([1; 4], 2), Err(ReplayError::RetiredPrefix([1; 4])));
    }

    proptest::proptest! {
        /// The window never accepts a counter twice, whatever the order.
        #[test]
        fn never_accepts_twice(counters in proptest::collection::vec(0u64..600, 0..400)) {
            let mut w = ReplayWindow::new();
            let mut seen = std::collections::BTreeSet::new();
            for c in counters {
                if accept(&mut w, c).is_ok() {
                    proptest::prop_assert!(seen.insert(c), "counter {} accepted twice", c);
                }
            }
        }
    }
}
