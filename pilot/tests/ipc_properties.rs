//! IPC decoding is total: arbitrary bytes give a message or an error, never a panic.

use pilot::ipc::{Command, Event, FrameDecoder};
use proptest::prelude::*;

proptest! {
    #[test]
    fn arbitrary_messages_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = Command::decode(&bytes);
        let _ = Event::decode(&bytes);
    }

    #[test]
    fn arbitrary_streams_never_panic(chunks in proptest::collection::vec(
        proptest::collection::vec(any::<u8>(), 0..32), 0..16)
    ) {
        let mut decoder = FrameDecoder::new();
        for chunk in chunks {
            decoder.extend(&chunk);
            while let Ok(Some(message)) = decoder.next_message() {
                let _ = Command::decode(message);
            }
        }
    }
}
