//! Classifying a datagram received on a tunnel socket (`spec/wire.md` §1, §4.2): beacon type
//! codes are all below `0x10`, tunnel magics all start with `P` (`0x50`), so one byte decides.

use super::{beacon, BeaconMessage, DecodeError, TunnelFrame};
use std::fmt;

/// A datagram from a tunnel socket: a beacon message or a tunnel frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Datagram<'a> {
    /// From (or for) a beacon.
    Beacon(BeaconMessage<'a>),
    /// From a peer daemon.
    Tunnel(TunnelFrame<'a>),
}

impl<'a> Datagram<'a> {
    /// Classifies and decodes `bytes`.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        if beacon::is_beacon_message(bytes) {
            BeaconMessage::decode(bytes).map(Datagram::Beacon)
        } else {
            TunnelFrame::decode(bytes).map(Datagram::Tunnel)
        }
    }
}

impl fmt::Display for Datagram<'_> {
    /// One line for traces and logs, e.g. `PILT stream 0:0000.0000.0001:49152>... SYN ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Datagram::Beacon(message) => message.fmt(f),
            Datagram::Tunnel(frame) => frame.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_byte_decides() {
        assert!(matches!(
            Datagram::decode(&[1, 0, 0, 0, 42]),
            Ok(Datagram::Beacon(BeaconMessage::Discover { node: 42, .. }))
        ));
        assert!(matches!(
            Datagram::decode(b"PILP"),
            Ok(Datagram::Tunnel(TunnelFrame::Punch))
        ));
        assert!(Datagram::decode(b"").is_err());
        assert!(Datagram::decode(b"xyz!").is_err());
    }

    #[test]
    fn one_line_summaries() {
        let summary = |bytes: &[u8]| Datagram::decode(bytes).unwrap().to_string();
        assert_eq!(summary(&[1, 0, 0, 0, 42]), "beacon Discover node=42");
        assert_eq!(summary(b"PILP"), "PILP");
        let mut pilt = Vec::new();
        let header = crate::wire::Header {
            flags: crate::wire::Flags::SYN,
            src: crate::wire::Addr::new(0, 1),
            dst: crate::wire::Addr::new(0, 2),
            src_port: 49152,
            dst_port: 7,
            window: 512,
            ..Default::default()
        };
        TunnelFrame::encode_plain(&header, &[], &mut pilt).unwrap();
        assert_eq!(
            summary(&pilt),
            "PILT stream 0:0000.0000.0001:49152>0:0000.0000.0002:7 SYN seq=0 ack=0 win=512 len=0"
        );
        let mut relay = Vec::new();
        BeaconMessage::Relay {
            sender: 2,
            destination: 1,
            inner: b"PILP",
        }
        .encode(&mut relay);
        assert_eq!(summary(&relay), "beacon Relay 2>1 [PILP]");
    }
}
