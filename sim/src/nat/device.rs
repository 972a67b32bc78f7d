//! The NAT box as a running device (filled in below).
