//! Classifying a datagram received on a tunnel socket (`spec/wire.md` §1, §4.2): beacon type
//! codes are all below `0x10`, tunnel magics all start with `P` (`0x50`), so one byte decides.

use super::{beacon, BeaconMessage, DecodeError, TunnelFrame};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_byte_decides() {
        assert!(matches!(
            Datagram::decode(&[1, 0, 0, 0, 42]),
            Ok(Datagram::Beacon(BeaconMessage::Discover { node: 42 }))
        ));
        assert!(matches!(
            Datagram::decode(b"PILP"),
            Ok(Datagram::Tunnel(TunnelFrame::Punch))
        ));
        assert!(Datagram::decode(b"").is_err());
        assert!(Datagram::decode(b"xyz!").is_err());
    }
}
