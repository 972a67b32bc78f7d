//! Host-and-port text as the reference binaries take it: `:9000` means every interface,
//! `host:9000` is resolved, `[::1]:9000` is IPv6.

use std::net::{SocketAddr, ToSocketAddrs};

/// Parses a listen or dial address; `:port` binds every IPv4 interface.
pub fn parse_host_port(text: &str) -> Result<SocketAddr, String> {
    if let Some(port) = text.strip_prefix(':') {
        let port: u16 = port
            .parse()
            .map_err(|_| format!("invalid port in {text:?} (expected host:port or :port)"))?;
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    text.to_socket_addrs()
        .map_err(|e| format!("cannot resolve {text:?}: {e} (expected host:port or :port)"))?
        .next()
        .ok_or_else(|| format!("{text:?} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(
            parse_host_port(":9000"),
            Ok("0.0.0.0:9000".parse().unwrap())
        );
        assert_eq!(
            parse_host_port("127.0.0.1:1"),
            Ok("127.0.0.1:1".parse().unwrap())
        );
        assert_eq!(parse_host_port("[::1]:2"), Ok("[::1]:2".parse().unwrap()));
        assert_eq!(parse_host_port("localhost:3").unwrap().port(), 3);
        for bad in [":", ":x", "nohostport", ":70000", ""] {
            assert!(parse_host_port(bad).is_err(), "{bad}");
        }
    }
}
