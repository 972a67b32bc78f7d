//! A fixed-capacity byte ring, allocated on first use.
//!
//! Both stream buffers are rings: the send side appends at the tail and releases acknowledged
//! bytes at the head; the receive side also writes out-of-order bytes at an offset past the
//! tail. Copies are at most two `memcpy`s; nothing allocates after the first write, so the data
//! path does no per-segment allocation. An idle connection can drop the storage with
//! [`ByteRing::release`].

/// Bytes `[head, head + len)` of a circular buffer of `cap` bytes.
#[derive(Debug)]
pub struct ByteRing {
    buf: Vec<u8>,
    cap: usize,
    head: usize,
    len: usize,
}

impl ByteRing {
    /// An empty ring that will hold at most `cap` bytes; nothing is allocated yet.
    pub fn new(cap: usize) -> Self {
        ByteRing {
            buf: Vec::new(),
            cap,
            head: 0,
            len: 0,
        }
    }

    /// Bytes stored.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no bytes are stored.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most bytes the ring holds.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Room left.
    #[inline]
    pub fn free(&self) -> usize {
        self.cap - self.len
    }

    /// Heap bytes currently held.
    pub fn heap_bytes(&self) -> usize {
        self.buf.capacity()
    }

    /// Frees the storage when empty (idle connections keep no buffers).
    pub fn release(&mut self) {
        if self.len == 0 {
            self.buf = Vec::new();
            self.head = 0;
        }
    }

    fn ensure_alloc(&mut self) {
        if self.buf.is_empty() && self.cap > 0 {
            self.buf = vec![0; self.cap];
            self.head = 0;
        }
    }

    /// Physical index of logical offset `off` (which may be up to `cap`).
    #[inline]
    fn phys(&self, off: usize) -> usize {
        let i = self.head + off;
        if i >= self.cap {
            i - self.cap
        } else {
            i
        }
    }

    /// Appends as much of `data` as fits; returns how much.
    pub fn push(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.free());
        if n == 0 {
            return 0;
        }
        let at = self.len;
        self.write_at(at, &data[..n]);
        self.len += n;
        n
    }

    /// Writes `data` at logical offset `off` without changing the length; the caller keeps
    /// `off + data.len() <= capacity`. Used for out-of-order bytes past the tail.
    pub fn write_at(&mut self, off: usize, data: &[u8]) {
        debug_assert!(off + data.len() <= self.cap);
        if data.is_empty() {
            return;
        }
        self.ensure_alloc();
        let start = self.phys(off);
        let first = data.len().min(self.cap - start);
        self.buf[start..start + first].copy_from_slice(&data[..first]);
        if first < data.len() {
            let rest = data.len() - first;
            self.buf[..rest].copy_from_slice(&data[first..]);
        }
    }

    /// Extends the length by `n` bytes already written with [`ByteRing::write_at`].
    pub fn commit(&mut self, n: usize) {
        debug_assert!(self.len + n <= self.cap);
        self.len += n;
    }

    /// Copies `len` stored bytes starting at logical offset `off` to the end of `out`.
    pub fn copy_to_vec(&self, off: usize, len: usize, out: &mut Vec<u8>) {
        debug_assert!(off + len <= self.len);
        if len == 0 {
            return;
        }
        let start = self.phys(off);
        let first = len.min(self.cap - start);
        out.extend_from_slice(&self.buf[start..start + first]);
        if first < len {
            out.extend_from_slice(&self.buf[..len - first]);
        }
    }

    /// Copies stored bytes starting at `off` into `out` (as many as fit); returns the count.
    pub fn copy_to_slice(&self, off: usize, out: &mut [u8]) -> usize {
        let len = out.len().min(self.len.saturating_sub(off));
        if len == 0 {
            return 0;
        }
        let start = self.phys(off);
        let first = len.min(self.cap - start);
        out[..first].copy_from_slice(&self.buf[start..start + first]);
        if first < len {
            out[first..len].copy_from_slice(&self.buf[..len - first]);
        }
        len
    }

    /// The byte at logical offset `off` (< len).
    pub fn byte(&self, off: usize) -> u8 {
        self.buf[self.phys(off)]
    }

    /// Drops `n` bytes from the head.
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        if n == 0 {
            return;
        }
        // The head is not reset when the ring empties: the receive side keeps out-of-order
        // bytes past the tail, at positions relative to the head.
        self.head = self.phys(n);
        self.len -= n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_and_copies() {
        let mut r = ByteRing::new(8);
        assert_eq!(r.heap_bytes(), 0);
        assert_eq!(r.push(b"abcdef"), 6);
        r.consume(4);
        assert_eq!(r.push(b"ghijklmn"), 6);
        assert_eq!(r.len(), 8);
        let mut out = Vec::new();
        r.copy_to_vec(0, 8, &mut out);
        assert_eq!(out, b"efghijkl");
        let mut s = [0u8; 5];
        assert_eq!(r.copy_to_slice(3, &mut s), 5);
        assert_eq!(&s, b"hijkl");
        assert_eq!(r.byte(7), b'l');
        r.consume(8);
        r.release();
        assert_eq!(r.heap_bytes(), 0);
    }

    #[test]
    fn write_at_then_commit() {
        let mut r = ByteRing::new(8);
        r.push(b"ab");
        r.write_at(4, b"ef");
        r.write_at(2, b"cd");
        r.commit(4);
        let mut out = Vec::new();
        r.copy_to_vec(0, 6, &mut out);
        assert_eq!(out, b"abcdef");
    }
}
