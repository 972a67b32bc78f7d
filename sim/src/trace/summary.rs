//! Decoding of the bytes in a trace line. The one place that knows what Pilot frames look like
//! to the trace; it grows with `pilot::wire`.

use pilot::wire::{Datagram, Packet};
use std::fmt::Write;

/// How many bytes of an undecodable datagram are shown.
const HEX_PREFIX: usize = 16;
/// Longest text payload shown verbatim.
const TEXT_MAX: usize = 64;

/// A one-line description of `bytes`: a decoded tunnel frame or beacon message (see the
/// `Display` of [`Datagram`]), a bare Pilot packet, short printable text in quotes (probe tags,
/// JSON), else the first bytes in hex.
pub fn summarize(bytes: &[u8]) -> String {
    if let Ok(datagram) = Datagram::decode(bytes) {
        return datagram.to_string();
    }
    if let Ok(p) = Packet::decode(bytes) {
        return p.to_string();
    }
    let printable = |b: &u8| b.is_ascii_graphic() || *b == b' ';
    if !bytes.is_empty() && bytes.len() <= TEXT_MAX && bytes.iter().all(printable) {
        return format!("{:?}", String::from_utf8_lossy(bytes));
    }
    let mut out = String::from("[");
    for (i, b) in bytes.iter().take(HEX_PREFIX).enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let _ = write!(out, "{b:02x}");
    }
    if bytes.len() > HEX_PREFIX {
        out.push_str(" ..");
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pilot::wire::{Addr, Flags, Header, Protocol};

    fn syn() -> Vec<u8> {
        let h = Header {
            flags: Flags::SYN,
            protocol: Protocol::STREAM,
            src: Addr::new(0, 1),
            dst: Addr::new(0, 2),
            src_port: 49152,
            dst_port: 1000,
            window: 512,
            ..Header::default()
        };
        let mut out = Vec::new();
        h.encode_packet(&[], &mut out).unwrap();
        out
    }

    #[test]
    fn bare_packets_and_plaintext_frames_decode() {
        let bare = summarize(&syn());
        assert_eq!(
            bare,
            "stream 0:0000.0000.0001:49152>0:0000.0000.0002:1000 SYN seq=0 ack=0 win=512 len=0"
        );
        let mut framed = b"PILT".to_vec();
        framed.extend(syn());
        assert_eq!(summarize(&framed), format!("PILT {bare}"));
    }

    #[test]
    fn beacon_messages_and_tunnel_frames_decode() {
        assert_eq!(summarize(&[1, 0, 0, 0, 42]), "beacon Discover node=42");
        assert_eq!(summarize(b"PILP"), "PILP");
    }

    #[test]
    fn text_and_binary_fall_back() {
        assert_eq!(summarize(b"probe-1"), "\"probe-1\"");
        assert_eq!(
            summarize(&[0x50, 0x49, 0x4c, 0x53, 0]),
            "[50 49 4c 53 00]",
            "a short PILS"
        );
        assert_eq!(summarize(&[0u8; 20]).matches("00").count(), 16);
        assert_eq!(summarize(b""), "[]");
    }
}
