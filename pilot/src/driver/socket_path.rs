//! Where the daemon's socket lives by default.
//!
//! The reference uses `/tmp/pilot.sock`, which any local user can pre-create or impersonate
//! (`spec/services.md` §14 Q16). Ours lives in a per-user directory the daemon creates 0700.

use std::ffi::OsString;
use std::path::PathBuf;

/// The socket path clients and the daemon use unless told otherwise: `PILOT_SOCKET` if set;
/// else `$XDG_RUNTIME_DIR/pilot/pilot.sock`; else `$HOME/.pilot/pilot.sock`; else (no home at
/// all) the reference's `/tmp/pilot.sock`.
pub fn default_socket_path() -> PathBuf {
    socket_path_from(
        std::env::var_os("PILOT_SOCKET"),
        std::env::var_os("XDG_RUNTIME_DIR"),
        std::env::var_os("HOME"),
    )
}

/// [`default_socket_path`] for the given environment values (empty means unset).
pub fn socket_path_from(
    pilot_socket: Option<OsString>,
    xdg_runtime_dir: Option<OsString>,
    home: Option<OsString>,
) -> PathBuf {
    let set = |v: Option<OsString>| v.filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(path) = set(pilot_socket) {
        return path;
    }
    if let Some(dir) = set(xdg_runtime_dir) {
        return dir.join("pilot").join("pilot.sock");
    }
    if let Some(home) = set(home) {
        return home.join(".pilot").join("pilot.sock");
    }
    PathBuf::from("/tmp/pilot.sock")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence() {
        let s = |v: &str| Some(OsString::from(v));
        assert_eq!(
            socket_path_from(s("/x.sock"), s("/run/user/1"), s("/home/a")),
            PathBuf::from("/x.sock")
        );
        assert_eq!(
            socket_path_from(s(""), s("/run/user/1"), s("/home/a")),
            PathBuf::from("/run/user/1/pilot/pilot.sock")
        );
        assert_eq!(
            socket_path_from(None, None, s("/home/a")),
            PathBuf::from("/home/a/.pilot/pilot.sock")
        );
        assert_eq!(
            socket_path_from(None, s(""), None),
            PathBuf::from("/tmp/pilot.sock")
        );
    }
}
