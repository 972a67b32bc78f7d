//! The TaskFile (`spec/services.md` §7.4): indented JSON, times as RFC3339 UTC with second
//! precision, the optional times and durations omitted while unset.

use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use time::OffsetDateTime;

/// Where a task is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// Submitted, not yet answered.
    New,
    /// Accepted; waiting in the queue.
    Accepted,
    /// Declined by the receiver.
    Declined,
    /// Being executed.
    Executing,
    /// Results arrived (submitter's copy).
    Completed,
    /// Results sent (receiver's copy).
    Succeeded,
    /// Not answered within the accept window.
    Cancelled,
    /// Waited too long at the head of the queue.
    Expired,
}

impl Status {
    /// Every status.
    pub const ALL: [Status; 8] = [
        Status::New,
        Status::Accepted,
        Status::Declined,
        Status::Executing,
        Status::Completed,
        Status::Succeeded,
        Status::Cancelled,
        Status::Expired,
    ];

    /// The name in files and frames.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "NEW",
            Status::Accepted => "ACCEPTED",
            Status::Declined => "DECLINED",
            Status::Executing => "EXECUTING",
            Status::Completed => "COMPLETED",
            Status::Succeeded => "SUCCEEDED",
            Status::Cancelled => "CANCELLED",
            Status::Expired => "EXPIRED",
        }
    }

    /// The status called `name`.
    pub fn parse(name: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One task as stored in `received/` or `submitted/`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFile {
    /// The task id.
    pub task_id: String,
    /// What to do.
    pub task_description: String,
    /// When it was created (RFC3339 UTC).
    pub created_at: String,
    /// The status name.
    pub status: String,
    /// Why it has this status.
    pub status_justification: String,
    /// The submitter's address.
    pub from: String,
    /// The receiver's address.
    pub to: String,
    /// When it was accepted, declined or cancelled.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub accepted_at: String,
    /// When it became the head of the queue.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub staged_at: String,
    /// When execution started.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub execute_started_at: String,
    /// When it completed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub completed_at: String,
    /// created → accepted, ms.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub time_idle_ms: i64,
    /// staged → execution, ms.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub time_staged_ms: i64,
    /// execution → completion, ms.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub time_cpu_ms: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// `at` as RFC3339 UTC with second precision (`2026-12-06T13:00:00Z`).
pub fn rfc3339(at: SystemTime) -> String {
    let secs = at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let t = OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The time an RFC3339 text names (`None` when empty or unreadable).
pub fn parse_time(text: &str) -> Option<SystemTime> {
    if text.is_empty() {
        return None;
    }
    let t = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    let nanos = t.unix_timestamp_nanos();
    if nanos < 0 {
        return None;
    }
    Some(UNIX_EPOCH + Duration::from_nanos(u64::try_from(nanos).ok()?))
}

/// Milliseconds from `from` to `to` (0 when `to` is earlier).
pub fn millis_between(from: SystemTime, to: SystemTime) -> i64 {
    to.duration_since(from)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl TaskFile {
    /// A NEW task created `now`.
    pub fn new(task_id: &str, description: &str, from: &str, to: &str, now: SystemTime) -> Self {
        TaskFile {
            task_id: task_id.into(),
            task_description: description.into(),
            created_at: rfc3339(now),
            status: Status::New.as_str().into(),
            status_justification: "A new task was created".into(),
            from: from.into(),
            to: to.into(),
            ..Default::default()
        }
    }

    /// The status, if the file names a known one.
    pub fn status(&self) -> Option<Status> {
        Status::parse(&self.status)
    }

    /// Sets status and justification.
    pub fn set_status(&mut self, status: Status, justification: &str) {
        self.status = status.as_str().into();
        self.status_justification = justification.into();
    }

    /// Answered (accepted, declined or cancelled) `now`: sets `accepted_at` and the idle time.
    pub fn answered(&mut self, now: SystemTime) {
        self.accepted_at = rfc3339(now);
        if let Some(created) = parse_time(&self.created_at) {
            self.time_idle_ms = millis_between(created, now);
        }
    }

    /// Execution (or expiry) starts `now`: sets `execute_started_at` and the staged time.
    pub fn execution_started(&mut self, now: SystemTime) {
        self.execute_started_at = rfc3339(now);
        if let Some(staged) = parse_time(&self.staged_at) {
            self.time_staged_ms = millis_between(staged, now);
        }
    }

    /// Completed `now`: sets `completed_at` and the execution time.
    pub fn completed(&mut self, now: SystemTime) {
        self.completed_at = rfc3339(now);
        if let Some(started) = parse_time(&self.execute_started_at) {
            self.time_cpu_ms = millis_between(started, now);
        }
    }

    /// Indented JSON, as written to disk.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Parses a stored file.
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("unreadable task file: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn a_new_file_is_written_as_the_spec_says() {
        let f = TaskFile::new(
            "id",
            "do it",
            "0:0000.0000.0001",
            "0:0000.0000.0002",
            at(1_700_000_000),
        );
        let text = String::from_utf8(f.to_json()).unwrap();
        assert_eq!(
            text,
            "{\n  \"task_id\": \"id\",\n  \"task_description\": \"do it\",\n  \
             \"created_at\": \"2023-11-14T22:13:20Z\",\n  \"status\": \"NEW\",\n  \
             \"status_justification\": \"A new task was created\",\n  \
             \"from\": \"0:0000.0000.0001\",\n  \"to\": \"0:0000.0000.0002\"\n}"
        );
        assert_eq!(TaskFile::from_json(text.as_bytes()).unwrap(), f);
    }

    #[test]
    fn times_follow_the_lifecycle() {
        let mut f = TaskFile::new("id", "d", "a", "b", at(1000));
        f.answered(at(1030));
        assert_eq!(f.time_idle_ms, 30_000);
        assert_eq!(f.accepted_at, rfc3339(at(1030)));
        f.staged_at = rfc3339(at(1040));
        f.execution_started(at(1100));
        assert_eq!(f.time_staged_ms, 60_000);
        f.completed(at(1220));
        assert_eq!(f.time_cpu_ms, 120_000);
        let json: serde_json::Value = serde_json::from_slice(&f.to_json()).unwrap();
        assert_eq!(json["time_cpu_ms"], 120_000);
        assert_eq!(json["completed_at"], "1970-01-01T00:20:20Z");
    }

    #[test]
    fn statuses_round_trip_and_unknown_ones_are_none() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("new"), None);
        assert_eq!(parse_time("garbage"), None);
        assert_eq!(parse_time(""), None);
        assert_eq!(
            parse_time("1970-01-01T00:00:10.5Z"),
            Some(at(10) + Duration::from_millis(500))
        );
    }
}
