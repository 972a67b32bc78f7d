//! Decoding of the bytes in a trace line. The one place that knows what Pilot frames look like
//! to the trace; it grows with `pilot::wire`.

use pilot::wire::{Datagram, Packet};
use std::fmt::Write;

/// How many bytes of an undecodable datagram are shown.
const HEX_PREFIX: usize = 16;
/// Longest text payload shown verbatim.
const TEXT_MAX: usize = 64;

/// Longest string value shown whole inside a registry frame (keys and signatures are cut).
const JSON_STRING_MAX: usize = 24;
/// Longest decoded registry frame shown (replication snapshots are cut).
const JSON_MAX: usize = 240;

/// A one-line description of `bytes`: a decoded tunnel frame or beacon message (see the
/// `Display` of [`Datagram`]), a bare Pilot packet, registry frames (length + JSON) as
/// abbreviated JSON, short printable text in quotes (probe tags), else the first bytes in hex.
pub fn summarize(bytes: &[u8]) -> String {
    if let Ok(datagram) = Datagram::decode(bytes) {
        return datagram.to_string();
    }
    if let Ok(p) = Packet::decode(bytes) {
        return p.to_string();
    }
    if let Some(frames) = registry_frames(bytes) {
        return frames;
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

/// Registry frames (`u32` big-endian length, then a JSON object), one or more back to back,
/// shown as `reg {...}`; `None` unless every byte belongs to a whole frame.
fn registry_frames(mut bytes: &[u8]) -> Option<String> {
    let mut shown = Vec::new();
    while !bytes.is_empty() {
        let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        let body = bytes.get(4..4usize.checked_add(len)?)?;
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        if !value.is_object() {
            return None;
        }
        shown.push(format!("reg {}", json_line(&value)));
        bytes = &bytes[4 + len..];
    }
    (!shown.is_empty()).then(|| shown.join(" | "))
}

/// A JSON value on one line: compact, long strings cut, at most [`JSON_MAX`] characters.
pub fn json_line(value: &serde_json::Value) -> String {
    let mut text = String::new();
    abbreviate(value, &mut text);
    if text.chars().count() > JSON_MAX {
        text = text.chars().take(JSON_MAX).collect::<String>() + "…";
    }
    text
}

/// Compact JSON with long strings (keys, signatures) cut to their first characters, so a
/// frame fits on one readable line. Object members keep serde_json's (sorted) order.
fn abbreviate(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        // Keys and signatures (no spaces) are cut; messages are kept whole.
        Value::String(s) if s.chars().count() > JSON_STRING_MAX && !s.contains(' ') => {
            let head: String = s.chars().take(12).collect();
            let _ = write!(out, "{:?}", format!("{head}…"));
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                abbreviate(item, out);
            }
            out.push(']');
        }
        Value::Object(members) => {
            out.push('{');
            for (i, (k, v)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{k:?}:");
                abbreviate(v, out);
            }
            out.push('}');
        }
        other => {
            let _ = write!(out, "{other}");
        }
    }
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

    fn frame(body: &str) -> Vec<u8> {
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(body.as_bytes());
        out
    }

    #[test]
    fn registry_frames_show_as_abbreviated_json() {
        let key = "A".repeat(44);
        let one = frame(&format!(
            r#"{{"type":"register","public_key":"{key}","n":[1,2]}}"#
        ));
        assert_eq!(
            summarize(&one),
            r#"reg {"n":[1,2],"public_key":"AAAAAAAAAAAA…","type":"register"}"#
        );
        let mut two = frame(r#"{"type":"heartbeat"}"#);
        two.extend(frame(r#"{"type":"ok"}"#));
        assert_eq!(
            summarize(&two),
            r#"reg {"type":"heartbeat"} | reg {"type":"ok"}"#
        );
        // A frame cut short, or a length prefix alone, is not a frame.
        assert!(!summarize(&one[..10]).starts_with("reg"));
        assert!(!summarize(&frame("[1]")).starts_with("reg"));
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
