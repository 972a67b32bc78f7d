//! Sequence numbers modulo 2^32 (`spec/transport.md` conventions).
//!
//! Every comparison is wrap-safe: `a` is after `b` when `a - b`, read as a signed 32-bit value,
//! is positive. Plain `<` on raw `u32`s is what broke the reference after 4 GiB (Q20).

use std::cmp::Ordering;
use std::fmt;

/// A stream sequence or acknowledgement number.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Seq(pub u32);

impl Seq {
    /// `self + n`, wrapping.
    #[inline]
    pub fn plus(self, n: u32) -> Seq {
        Seq(self.0.wrapping_add(n))
    }

    /// `self - n`, wrapping.
    #[inline]
    pub fn minus(self, n: u32) -> Seq {
        Seq(self.0.wrapping_sub(n))
    }

    /// Signed distance from `other` to `self`.
    #[inline]
    pub fn diff(self, other: Seq) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }

    /// Unsigned distance from `base` forward to `self`; meaningful when `self` is not before
    /// `base`.
    #[inline]
    pub fn since(self, base: Seq) -> u32 {
        self.0.wrapping_sub(base.0)
    }

    /// Wrap-safe ordering.
    #[inline]
    pub fn cmp_seq(self, other: Seq) -> Ordering {
        self.diff(other).cmp(&0)
    }

    /// `self < other`, wrap-safe.
    #[inline]
    pub fn lt(self, other: Seq) -> bool {
        self.diff(other) < 0
    }

    /// `self <= other`, wrap-safe.
    #[inline]
    pub fn le(self, other: Seq) -> bool {
        self.diff(other) <= 0
    }

    /// `self > other`, wrap-safe.
    #[inline]
    pub fn gt(self, other: Seq) -> bool {
        self.diff(other) > 0
    }

    /// `self >= other`, wrap-safe.
    #[inline]
    pub fn ge(self, other: Seq) -> bool {
        self.diff(other) >= 0
    }

    /// The later of two sequence numbers.
    #[inline]
    pub fn max_seq(self, other: Seq) -> Seq {
        if self.ge(other) {
            self
        } else {
            other
        }
    }

    /// Whether `self` lies in `[start, end)`, wrap-safe.
    #[inline]
    pub fn in_range(self, start: Seq, end: Seq) -> bool {
        self.ge(start) && self.lt(end)
    }
}

impl fmt::Debug for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Seq({})", self.0)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons_wrap() {
        let near_top = Seq(u32::MAX - 10);
        let wrapped = near_top.plus(20);
        assert_eq!(wrapped, Seq(9));
        assert!(near_top.lt(wrapped));
        assert!(wrapped.gt(near_top));
        assert_eq!(wrapped.diff(near_top), 20);
        assert_eq!(near_top.diff(wrapped), -20);
        assert_eq!(wrapped.since(near_top), 20);
        assert!(Seq(5).in_range(near_top, wrapped));
        assert!(!Seq(9).in_range(near_top, wrapped));
        assert_eq!(near_top.max_seq(wrapped), wrapped);
        assert_eq!(Seq(3).cmp_seq(Seq(3)), Ordering::Equal);
        assert_eq!(Seq(0).minus(1), Seq(u32::MAX));
    }

    #[test]
    fn plain_unsigned_order_would_be_wrong() {
        // The reference's unsigned comparison says u32::MAX > 0; after wrap it is before.
        assert!(Seq(u32::MAX).lt(Seq(0)));
        assert!(Seq(0).le(Seq(0)) && Seq(0).ge(Seq(0)));
    }
}
