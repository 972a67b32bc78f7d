//! The SACK payload of stream ACKs (`spec/transport.md` §10): `"SACK"`, a count 1–4, then that
//! many `(left, right)` pairs of u32 sequence numbers, `right` exclusive.
//!
//! There is no flag: an ACK payload is SACK information exactly when it parses as such. A sender
//! must therefore never emit stream data that would parse as SACK ([`looks_like_sack`]).

use super::be32;

/// The 4-byte signature that opens a SACK payload.
pub const MAGIC: &[u8; 4] = b"SACK";
/// Most blocks one payload carries.
pub const MAX_BLOCKS: usize = 4;

/// One received range `[left, right)` beyond the cumulative ACK.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SackBlock {
    /// Sequence number of the block's first byte.
    pub left: u32,
    /// Sequence number just after the block's last byte.
    pub right: u32,
}

/// Up to four SACK blocks, without allocation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SackList {
    blocks: [Option<SackBlock>; MAX_BLOCKS],
    len: usize,
}

impl SackList {
    /// An empty list.
    pub const fn new() -> Self {
        SackList {
            blocks: [None; MAX_BLOCKS],
            len: 0,
        }
    }

    /// Adds a block; returns false (and adds nothing) when the list already holds four.
    pub fn push(&mut self, block: SackBlock) -> bool {
        if self.len == MAX_BLOCKS {
            return false;
        }
        self.blocks[self.len] = Some(block);
        self.len += 1;
        true
    }

    /// Number of blocks.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no blocks.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The blocks in order.
    pub fn iter(&self) -> impl Iterator<Item = SackBlock> + '_ {
        self.blocks[..self.len].iter().flatten().copied()
    }

    /// Parses `payload` as SACK information; `None` when it is not SACK (then it is data).
    pub fn decode(payload: &[u8]) -> Option<SackList> {
        let count = sack_block_count(payload)?;
        let mut list = SackList::new();
        for i in 0..count {
            let at = 5 + 8 * i;
            list.push(SackBlock {
                left: be32(payload, at),
                right: be32(payload, at + 4),
            });
        }
        Some(list)
    }

    /// Length of the encoded payload.
    pub fn encoded_len(&self) -> usize {
        5 + 8 * self.len
    }

    /// Appends the encoded payload to `out`. An empty list encodes nothing (it would not parse).
    pub fn encode(&self, out: &mut Vec<u8>) {
        if self.is_empty() {
            return;
        }
        out.extend_from_slice(MAGIC);
        out.push(self.len as u8);
        for block in self.iter() {
            out.extend_from_slice(&block.left.to_be_bytes());
            out.extend_from_slice(&block.right.to_be_bytes());
        }
    }
}

/// The block count if `payload` parses as SACK: magic, count 1–4, and 5 + 8·count bytes.
fn sack_block_count(payload: &[u8]) -> Option<usize> {
    if payload.len() < 5 || &payload[..4] != MAGIC {
        return None;
    }
    let count = usize::from(payload[4]);
    if !(1..=MAX_BLOCKS).contains(&count) || payload.len() < 5 + 8 * count {
        return None;
    }
    Some(count)
}

/// Whether a stream data payload would be mistaken for SACK by a receiver.
pub fn looks_like_sack(payload: &[u8]) -> bool {
    sack_block_count(payload).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    #[test]
    fn spec_examples() {
        let two = hex!("53 41 43 4B 02 00 00 10 01 00 00 20 01 00 00 30 01 00 00 40 01");
        let list = SackList::decode(&two).unwrap();
        let blocks: Vec<_> = list.iter().collect();
        assert_eq!(
            blocks,
            [
                SackBlock {
                    left: 4097,
                    right: 8193
                },
                SackBlock {
                    left: 12289,
                    right: 16385
                }
            ]
        );
        let mut out = Vec::new();
        list.encode(&mut out);
        assert_eq!(out, two);

        let one = hex!("53 41 43 4B 01 00 00 10 01 00 00 20 01");
        assert_eq!(SackList::decode(&one).unwrap().len(), 1);
    }

    #[test]
    fn what_is_not_sack() {
        assert!(SackList::decode(b"").is_none());
        assert!(SackList::decode(b"SACK").is_none());
        assert!(SackList::decode(b"SACK\x00").is_none(), "zero blocks");
        assert!(SackList::decode(b"SACK\x05").is_none(), "five blocks");
        assert!(
            SackList::decode(b"SACK\x01\x00\x00\x00\x01\x00\x00\x00").is_none(),
            "short"
        );
        assert!(SackList::decode(b"sack\x01\x00\x00\x00\x01\x00\x00\x00\x02").is_none());
        // Extra bytes after the blocks are ignored, as the reference does.
        assert!(looks_like_sack(
            b"SACK\x01\x00\x00\x00\x01\x00\x00\x00\x02extra"
        ));
    }

    #[test]
    fn list_holds_at_most_four() {
        let mut list = SackList::new();
        for i in 0..4 {
            assert!(list.push(SackBlock {
                left: i,
                right: i + 1
            }));
        }
        assert!(!list.push(SackBlock { left: 9, right: 10 }));
        assert_eq!(list.encoded_len(), 37);
        let mut empty = Vec::new();
        SackList::new().encode(&mut empty);
        assert!(empty.is_empty());
    }
}
