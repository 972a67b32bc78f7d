//! The task frame (`spec/services.md` §7.4): `[u32 type][u32 length][JSON payload]`, big
//! endian, `length` at most [`MAX_FRAME`], types 1-4. Decoding is strict: an unknown type, an
//! oversized length or a payload that is not the type's JSON is an error with its reason.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Largest payload of one frame.
pub const MAX_FRAME: usize = 16 << 20;
/// Size of the frame header.
pub const HEADER_LEN: usize = 8;

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameType {
    /// A task request, and the reply to it (type 1).
    Submit,
    /// The legacy result message (type 2); the daemon does not handle it.
    Result,
    /// A status change for the submitter (type 3).
    StatusUpdate,
    /// The results of a task (type 4).
    SendResults,
}

impl FrameType {
    /// The type of wire value `code`, if it is one of the four.
    pub fn from_code(code: u32) -> Option<Self> {
        match code {
            1 => Some(FrameType::Submit),
            2 => Some(FrameType::Result),
            3 => Some(FrameType::StatusUpdate),
            4 => Some(FrameType::SendResults),
            _ => None,
        }
    }

    /// The wire value.
    pub fn code(self) -> u32 {
        match self {
            FrameType::Submit => 1,
            FrameType::Result => 2,
            FrameType::StatusUpdate => 3,
            FrameType::SendResults => 4,
        }
    }
}

/// Why a frame was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    /// The type is not 1-4.
    #[error("unknown task frame type {0}")]
    UnknownType(u32),
    /// The length is over [`MAX_FRAME`].
    #[error("task frame of {0} bytes is over the {MAX_FRAME}-byte limit")]
    TooLong(u64),
    /// The payload is not the type's JSON message.
    #[error("bad {kind:?} payload: {reason}")]
    BadPayload {
        /// The frame type.
        kind: FrameType,
        /// What was wrong.
        reason: String,
    },
}

/// A frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The type.
    pub kind: FrameType,
    /// Payload length.
    pub len: u32,
}

impl Header {
    /// Parses and checks a header.
    pub fn parse(bytes: [u8; HEADER_LEN]) -> Result<Self, FrameError> {
        let code = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let len = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        let kind = FrameType::from_code(code).ok_or(FrameError::UnknownType(code))?;
        if len as usize > MAX_FRAME {
            return Err(FrameError::TooLong(u64::from(len)));
        }
        Ok(Header { kind, len })
    }
}

/// `task submit`'s request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitRequest {
    /// The task id.
    pub task_id: String,
    /// What to do.
    pub task_description: String,
    /// The submitter's address.
    pub from_addr: String,
    /// The receiver's address.
    pub to_addr: String,
}

/// The reply to a submit (also type 1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitResponse {
    /// The task id.
    pub task_id: String,
    /// 200 accepted, 400 rejected.
    pub status: u16,
    /// Why.
    pub message: String,
}

/// A status change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusUpdate {
    /// The task id.
    pub task_id: String,
    /// The new status.
    pub status: String,
    /// Why.
    #[serde(default)]
    pub justification: String,
}

/// The results of a task.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendResults {
    /// The task id.
    pub task_id: String,
    /// "text" or "file".
    pub result_type: String,
    /// The text result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_text: Option<String>,
    /// The file's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// The file's bytes, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_data: Option<String>,
    /// When the task completed (RFC3339).
    #[serde(default)]
    pub completed_at: String,
    /// Idle time in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_idle_ms: Option<i64>,
    /// Staged time in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_staged_ms: Option<i64>,
    /// Execution time in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_cpu_ms: Option<i64>,
}

/// A decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A task request.
    Submit(SubmitRequest),
    /// A reply to a submit.
    SubmitResponse(SubmitResponse),
    /// The legacy result message, kept as raw JSON.
    Result(serde_json::Value),
    /// A status change.
    StatusUpdate(StatusUpdate),
    /// Results.
    SendResults(SendResults),
}

fn bad(kind: FrameType, e: impl std::fmt::Display) -> FrameError {
    FrameError::BadPayload {
        kind,
        reason: e.to_string(),
    }
}

impl Frame {
    /// The frame's type.
    pub fn kind(&self) -> FrameType {
        match self {
            Frame::Submit(_) | Frame::SubmitResponse(_) => FrameType::Submit,
            Frame::Result(_) => FrameType::Result,
            Frame::StatusUpdate(_) => FrameType::StatusUpdate,
            Frame::SendResults(_) => FrameType::SendResults,
        }
    }

    /// Header and payload in one buffer.
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        let kind = self.kind();
        let payload = match self {
            Frame::Submit(m) => serde_json::to_vec(m),
            Frame::SubmitResponse(m) => serde_json::to_vec(m),
            Frame::Result(m) => serde_json::to_vec(m),
            Frame::StatusUpdate(m) => serde_json::to_vec(m),
            Frame::SendResults(m) => serde_json::to_vec(m),
        }
        .map_err(|e| bad(kind, e))?;
        encode_raw(kind.code(), &payload)
    }

    /// Decodes a request payload of type `kind` (a type-1 payload is a [`SubmitRequest`]).
    pub fn decode_request(kind: FrameType, payload: &[u8]) -> Result<Self, FrameError> {
        Ok(match kind {
            FrameType::Submit => {
                Frame::Submit(serde_json::from_slice(payload).map_err(|e| bad(kind, e))?)
            }
            FrameType::Result => {
                Frame::Result(serde_json::from_slice(payload).map_err(|e| bad(kind, e))?)
            }
            FrameType::StatusUpdate => {
                Frame::StatusUpdate(serde_json::from_slice(payload).map_err(|e| bad(kind, e))?)
            }
            FrameType::SendResults => {
                Frame::SendResults(serde_json::from_slice(payload).map_err(|e| bad(kind, e))?)
            }
        })
    }

    /// Decodes the reply to a submit.
    pub fn decode_response(kind: FrameType, payload: &[u8]) -> Result<SubmitResponse, FrameError> {
        if kind != FrameType::Submit {
            return Err(bad(kind, "a submit reply must be type 1"));
        }
        serde_json::from_slice(payload).map_err(|e| bad(kind, e))
    }
}

/// A frame of any type code and payload (tests write hostile frames with it).
pub fn encode_raw(code: u32, payload: &[u8]) -> Result<Vec<u8>, FrameError> {
    if payload.len() > MAX_FRAME {
        return Err(FrameError::TooLong(payload.len() as u64));
    }
    let mut bytes = Vec::with_capacity(HEADER_LEN + payload.len());
    bytes.extend_from_slice(&code.to_be_bytes());
    bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    bytes.extend_from_slice(payload);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(code: u32, len: u32) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&code.to_be_bytes());
        b[4..].copy_from_slice(&len.to_be_bytes());
        b
    }

    #[test]
    fn headers_are_checked() {
        assert_eq!(
            Header::parse(header(3, 10)).unwrap(),
            Header {
                kind: FrameType::StatusUpdate,
                len: 10
            }
        );
        assert_eq!(Header::parse(header(5, 1)), Err(FrameError::UnknownType(5)));
        assert_eq!(Header::parse(header(0, 1)), Err(FrameError::UnknownType(0)));
        assert_eq!(
            Header::parse(header(1, MAX_FRAME as u32 + 1)),
            Err(FrameError::TooLong(MAX_FRAME as u64 + 1))
        );
        assert!(Header::parse(header(1, MAX_FRAME as u32)).is_ok());
    }

    #[test]
    fn submit_round_trips_in_the_spec_layout() {
        let request = SubmitRequest {
            task_id: "t".into(),
            task_description: "d".into(),
            from_addr: "0:0000.0000.0001".into(),
            to_addr: "0:0000.0000.0002".into(),
        };
        let bytes = Frame::Submit(request.clone()).encode().unwrap();
        assert_eq!(&bytes[..4], &[0, 0, 0, 1]);
        assert_eq!(
            u32::from_be_bytes(bytes[4..8].try_into().unwrap()) as usize,
            bytes.len() - 8
        );
        let json: serde_json::Value = serde_json::from_slice(&bytes[8..]).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"task_id":"t","task_description":"d",
                "from_addr":"0:0000.0000.0001","to_addr":"0:0000.0000.0002"})
        );
        assert_eq!(
            Frame::decode_request(FrameType::Submit, &bytes[8..]).unwrap(),
            Frame::Submit(request)
        );
    }

    #[test]
    fn results_omit_absent_fields() {
        let m = SendResults {
            task_id: "t".into(),
            result_type: "text".into(),
            result_text: Some("42".into()),
            completed_at: "2026-01-01T00:00:00Z".into(),
            ..Default::default()
        };
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"task_id":"t","result_type":"text","result_text":"42",
                "completed_at":"2026-01-01T00:00:00Z"})
        );
    }

    #[test]
    fn bad_payloads_say_why() {
        let e = Frame::decode_request(FrameType::StatusUpdate, b"{not json").unwrap_err();
        assert!(matches!(
            e,
            FrameError::BadPayload {
                kind: FrameType::StatusUpdate,
                ..
            }
        ));
        let e = Frame::decode_request(FrameType::Submit, b"{\"task_id\":1}").unwrap_err();
        assert!(e.to_string().contains("Submit"), "{e}");
        assert!(Frame::decode_response(FrameType::StatusUpdate, b"{}").is_err());
    }
}
