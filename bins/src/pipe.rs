//! Output into a closed pipe (`pilot-sim matrix | head`) ends the process quietly, as it does
//! for other Unix tools, instead of a panic from `println!`: the Rust runtime ignores SIGPIPE,
//! so a write fails with EPIPE and `println!` panics on it.

/// Restores the default SIGPIPE action. Call first thing in `main`.
pub fn exit_quietly_on_closed_pipe() {
    // SAFETY: setting a signal's disposition to SIG_DFL installs no handler code and is
    // async-signal-safe; nothing else in the process depends on SIGPIPE being ignored (socket
    // writes use MSG_NOSIGNAL or see EPIPE on their own descriptors first).
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
