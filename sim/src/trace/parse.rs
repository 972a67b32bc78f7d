//! Reading trace lines back: the columns of one line, and what kind of packet it shows.
//!
//! The inverse of [`Trace::event`](super::Trace::event) for the tools that read trace files
//! (`pilot-sim diff`, `pilot-sim timeline`). Lines that do not have the trace's shape are
//! `None`, never a panic.

use std::time::Duration;

/// Why a datagram was dropped, as the trace words it (the end of a `drop` line).
const DROP_REASONS: &[&str] = &[
    "lost",
    "partitioned",
    "sender crashing",
    "unroutable",
    "not for this host",
    "port unreachable",
    "socket queue full",
    "addressed to the box",
    "not for this box",
    "no mapping",
    "filtered",
    "no hairpinning",
    "public ports exhausted",
    "no such inside host",
];

/// One parsed trace line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line<'a> {
    /// Simulated time since the start.
    pub time: Duration,
    /// The node where it happened.
    pub node: &'a str,
    /// `send`, `recv`, `nat`, `drop`, `dup`, `conn`, `tcp` or `note`.
    pub kind: &'a str,
    /// Source address (empty for notes).
    pub src: &'a str,
    /// Destination address (empty for notes).
    pub dst: &'a str,
    /// Everything after the addresses (for notes: the note's text).
    pub detail: &'a str,
}

/// Splits off the first whitespace-separated word of `s`.
fn word(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start();
    if s.is_empty() {
        return None;
    }
    let end = s.find(char::is_whitespace).unwrap_or(s.len());
    Some((&s[..end], s[end..].trim_start()))
}

/// `12.345678` back to a duration.
fn parse_time(s: &str) -> Option<Duration> {
    let (secs, micros) = s.split_once('.')?;
    if micros.len() != 6 {
        return None;
    }
    let secs: u64 = secs.parse().ok()?;
    let micros: u64 = micros.parse().ok()?;
    Some(Duration::from_secs(secs) + Duration::from_micros(micros))
}

/// Parses one trace line; `None` if it does not have the trace's shape.
pub fn parse(line: &str) -> Option<Line<'_>> {
    let (time, rest) = word(line)?;
    let time = parse_time(time)?;
    let (node, rest) = word(rest)?;
    let (kind, rest) = word(rest)?;
    if kind == "note" {
        return Some(Line {
            time,
            node,
            kind,
            src: "",
            dst: "",
            detail: rest,
        });
    }
    let (src, rest) = word(rest)?;
    let (arrow, rest) = word(rest)?;
    if arrow != ">" {
        return None;
    }
    let (dst, detail) = word(rest)?;
    Some(Line {
        time,
        node,
        kind,
        src,
        dst,
        detail,
    })
}

impl<'a> Line<'a> {
    /// The packet part of the details: what follows the size (`38B`), if there is one.
    pub fn packet(&self) -> Option<&'a str> {
        let mut rest = self.detail;
        while let Some((w, after)) = word(rest) {
            if w.len() > 1
                && w.ends_with('B')
                && w[..w.len() - 1].bytes().all(|b| b.is_ascii_digit())
            {
                return Some(after);
            }
            rest = after;
        }
        None
    }

    /// A short name for the packet's kind: `PILS`, `beacon PunchCommand`, `reg register`,
    /// `stream`, `text`, `bytes`; `None` for lines without a packet (`conn`, notes).
    pub fn packet_kind(&self) -> Option<String> {
        let packet = self.packet()?;
        let (first, rest) = word(packet).unwrap_or(("", ""));
        Some(match first {
            "" => "empty".to_string(),
            "beacon" => match word(rest) {
                Some((message, _)) => format!("beacon {message}"),
                None => "beacon".to_string(),
            },
            "reg" => match registry_type(rest) {
                Some(t) => format!("reg {t}"),
                None => "reg".to_string(),
            },
            _ if first.starts_with('"') => "text".to_string(),
            _ if first.starts_with('[') => "bytes".to_string(),
            _ => first.to_string(),
        })
    }

    /// Why a `drop` line's datagram died; `None` for other lines.
    pub fn drop_reason(&self) -> Option<&'a str> {
        if self.kind != "drop" {
            return None;
        }
        let reason = DROP_REASONS
            .iter()
            .filter(|r| self.detail.ends_with(*r))
            .max_by_key(|r| r.len());
        Some(match reason {
            Some(r) if self.detail.ends_with(&format!("hairpin {r}")) => {
                let at = self.detail.len() - r.len() - "hairpin ".len();
                &self.detail[at..]
            }
            Some(r) => &self.detail[self.detail.len() - r.len()..],
            None => word_last(self.detail),
        })
    }
}

/// The last word of `s`.
fn word_last(s: &str) -> &str {
    s.rsplit(char::is_whitespace).next().unwrap_or("")
}

/// The `"type"` of the first registry frame in `reg {...}`.
fn registry_type(frame: &str) -> Option<&str> {
    let at = frame.find("\"type\":\"")? + "\"type\":\"".len();
    let end = frame[at..].find('"')?;
    Some(&frame[at..at + end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_back_into_their_columns() {
        let l = parse("   0.119000 nat-a        drop 192.168.0.2:49152 > 192.168.0.1:49152 136B PILA from=2 filtered").unwrap();
        assert_eq!(l.time, Duration::from_micros(119_000));
        assert_eq!((l.node, l.kind), ("nat-a", "drop"));
        assert_eq!((l.src, l.dst), ("192.168.0.2:49152", "192.168.0.1:49152"));
        assert_eq!(l.packet_kind().as_deref(), Some("PILA"));
        assert_eq!(l.drop_reason(), Some("filtered"));

        let l = parse("   0.010000 nat-a        nat  10.1.0.2:49152 > 192.168.0.3:9001 as 192.168.0.1:49152 new 5B beacon Discover node=1").unwrap();
        assert_eq!(l.packet_kind().as_deref(), Some("beacon Discover"));
        let l = parse(r#"   0.005000 a            tcp  10.1.0.2:49152 > 192.168.0.3:9000 113B reg {"listen_addr":"0.0.0.0:49152","type":"register"}"#).unwrap();
        assert_eq!(l.packet_kind().as_deref(), Some("reg register"));
        let l = parse("   0.009000 a            note daemon up as node 1 (start 1)").unwrap();
        assert_eq!(
            (l.kind, l.detail),
            ("note", "daemon up as node 1 (start 1)")
        );
        assert_eq!(l.packet_kind(), None);
    }

    #[test]
    fn lines_of_another_shape_are_refused() {
        for bad in [
            "",
            "garbage",
            "1.5 a send x > y",
            "0.000001 a send x y z",
            "0.000001 a",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
