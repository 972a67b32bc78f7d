//! One test per reference quirk fixed (`spec/transport.md` §16).
