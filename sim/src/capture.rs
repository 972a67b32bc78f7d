//! Packet capture: every datagram the simulated network carries, as pcap.
//!
//! The fabric reports each envelope it puts on a link (after the link's faults: a lost
//! datagram is not carried, a duplicated one is carried twice) to the world's [`Capture`].
//! Counting is always on; the bytes are kept only when the run asked for them. Recording
//! reads nothing random and writes nothing to the trace, so a captured run is the same run.
//!
//! The file is classic pcap with link type `LINKTYPE_RAW` (101): each record is an IPv4
//! header and a UDP header synthesised from the envelope's addresses (with correct
//! checksums), then the payload. A datagram crossing a NAT shows once per link: inside with
//! its private source, outside with the translated one. Timestamps are simulated time since
//! the start. TCP (turmoil's own streams) is not in the capture.

use crate::world::lock;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::DataLink;
use std::io::Write;
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Bytes of the synthesised IPv4 (20) and UDP (8) headers.
pub const HEADERS: usize = 28;
/// The largest payload an IPv4 datagram can hold; longer ones are cut in the file (the
/// record's original length keeps the real size).
pub const MAX_PAYLOAD: usize = 65_535 - HEADERS;

/// One datagram on one link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// Simulated time since the start when it left the sending node.
    pub time: Duration,
    /// Its source (as the next hop sees it).
    pub src: SocketAddrV4,
    /// Its destination.
    pub dst: SocketAddrV4,
    /// Its bytes.
    pub payload: Vec<u8>,
}

/// The world's capture: a count of the datagrams carried, and (when enabled) the datagrams.
#[derive(Debug, Default)]
pub struct Capture {
    count: AtomicU64,
    keep: AtomicBool,
    kept: Mutex<Vec<Datagram>>,
}

impl Capture {
    /// Keeps the bytes of every datagram carried from now on.
    pub fn enable(&self) {
        self.keep.store(true, Ordering::Relaxed);
    }

    /// Records one datagram put on a link.
    pub fn record(&self, time: Duration, src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) {
        self.count.fetch_add(1, Ordering::Relaxed);
        if self.keep.load(Ordering::Relaxed) {
            lock(&self.kept).push(Datagram {
                time,
                src,
                dst,
                payload: payload.to_vec(),
            });
        }
    }

    /// How many datagrams the network carried.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Takes the kept datagrams, in the order they were carried.
    pub fn take(&self) -> Vec<Datagram> {
        std::mem::take(&mut lock(&self.kept))
    }
}

/// Why a capture could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the capture: {0}")]
pub struct WriteError(String);

/// Writes `datagrams` as a pcap file (raw IPv4) to `out`.
pub fn write_pcap<W: Write>(out: W, datagrams: &[Datagram]) -> Result<W, WriteError> {
    let header = PcapHeader {
        datalink: DataLink::RAW,
        snaplen: 65_535,
        ..PcapHeader::default()
    };
    let err = |e: pcap_file::PcapError| WriteError(e.to_string());
    let mut writer = PcapWriter::with_header(out, header).map_err(err)?;
    for (i, d) in datagrams.iter().enumerate() {
        let frame = ipv4_udp(d, i as u16);
        let orig_len = (HEADERS + d.payload.len()) as u32;
        writer
            .write_packet(&PcapPacket::new(d.time, orig_len, &frame))
            .map_err(err)?;
    }
    Ok(writer.into_writer())
}

/// The datagram as an IPv4 packet carrying UDP; `id` fills the IPv4 identification field.
pub fn ipv4_udp(d: &Datagram, id: u16) -> Vec<u8> {
    let payload = &d.payload[..d.payload.len().min(MAX_PAYLOAD)];
    let udp_len = (8 + payload.len()) as u16;
    let total = udp_len + 20;
    let (src, dst) = (d.src.ip().octets(), d.dst.ip().octets());
    let mut out = Vec::with_capacity(HEADERS + payload.len());
    out.extend_from_slice(&[0x45, 0]);
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0x40, 0, 64, 17, 0, 0]); // don't fragment, TTL 64, UDP
    out.extend_from_slice(&src);
    out.extend_from_slice(&dst);
    let ip_sum = checksum(&[&out[..20]]);
    out[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    out.extend_from_slice(&d.src.port().to_be_bytes());
    out.extend_from_slice(&d.dst.port().to_be_bytes());
    out.extend_from_slice(&udp_len.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(payload);
    // The UDP checksum covers a pseudo-header (addresses, protocol, length) too.
    let mut pseudo = [0u8; 12];
    pseudo[..4].copy_from_slice(&src);
    pseudo[4..8].copy_from_slice(&dst);
    pseudo[9] = 17;
    pseudo[10..].copy_from_slice(&udp_len.to_be_bytes());
    let udp_sum = match checksum(&[&pseudo, &out[20..]]) {
        0 => 0xffff, // 0 means "no checksum" in UDP over IPv4
        s => s,
    };
    out[26..28].copy_from_slice(&udp_sum.to_be_bytes());
    out
}

/// The Internet checksum (RFC 1071) of the concatenated `parts`, each of even length except
/// perhaps the last.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        for pair in part.chunks(2) {
            let word = u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
            sum += u32::from(word);
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datagram(payload: &[u8]) -> Datagram {
        Datagram {
            time: Duration::from_millis(3),
            src: "10.1.0.2:4000".parse().unwrap(),
            dst: "192.168.0.1:7000".parse().unwrap(),
            payload: payload.to_vec(),
        }
    }

    #[test]
    fn headers_carry_the_addresses_and_valid_checksums() {
        let frame = ipv4_udp(&datagram(b"hello"), 7);
        assert_eq!(frame.len(), HEADERS + 5);
        assert_eq!(&frame[12..16], &[10, 1, 0, 2]);
        assert_eq!(&frame[16..20], &[192, 168, 0, 1]);
        assert_eq!(u16::from_be_bytes([frame[20], frame[21]]), 4000);
        assert_eq!(u16::from_be_bytes([frame[22], frame[23]]), 7000);
        // A header whose checksum is right sums to zero.
        assert_eq!(checksum(&[&frame[..20]]), 0);
        let mut pseudo = vec![10, 1, 0, 2, 192, 168, 0, 1, 0, 17, 0, 13];
        pseudo.extend_from_slice(&frame[20..]);
        assert_eq!(checksum(&[&pseudo]), 0);
    }

    #[test]
    fn an_oversized_payload_is_cut_to_fit_ipv4() {
        let frame = ipv4_udp(&datagram(&vec![1; 65_535]), 0);
        assert_eq!(frame.len(), 65_535);
        assert_eq!(u16::from_be_bytes([frame[2], frame[3]]), 65_535);
    }
}
