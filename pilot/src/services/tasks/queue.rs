//! The queue of accepted tasks, first accepted first out. It is not a second copy of anything:
//! it is computed from the `received/` files (status ACCEPTED, ordered by `accepted_at`, then
//! creation, then id), so the daemon's timers and the CLI see the same queue, it survives a
//! restart, and a declined or executed task leaves it by changing status (§14 Q13). The time
//! the head became head is stored in its file as `staged_at`.

use super::dirs::{Side, TaskDirs};
use super::file::{parse_time, rfc3339, Status, TaskFile};
use std::io;
use std::time::SystemTime;

fn key(t: &TaskFile) -> (Option<SystemTime>, Option<SystemTime>, String) {
    (
        parse_time(&t.accepted_at),
        parse_time(&t.created_at),
        t.task_id.clone(),
    )
}

/// The accepted tasks among `tasks`, in queue order.
pub fn order(tasks: Vec<TaskFile>) -> Vec<TaskFile> {
    let mut queue: Vec<TaskFile> = tasks
        .into_iter()
        .filter(|t| t.status() == Some(Status::Accepted))
        .collect();
    queue.sort_by_key(key);
    queue
}

/// The queue on disk.
pub fn load(dirs: &TaskDirs) -> io::Result<Vec<TaskFile>> {
    Ok(order(dirs.list(Side::Received)?))
}

/// The head of the queue, its `staged_at` set to `now` (and saved) if it was not staged yet.
pub fn stage_head(dirs: &TaskDirs, now: SystemTime) -> io::Result<Option<TaskFile>> {
    let Some(mut head) = load(dirs)?.into_iter().next() else {
        return Ok(None);
    };
    if head.staged_at.is_empty() {
        head.staged_at = rfc3339(now);
        dirs.save(Side::Received, &head)?;
    }
    Ok(Some(head))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    fn task(id: char, created: u64, accepted: Option<u64>, status: Status) -> TaskFile {
        let id: String = format!("{}-0000-0000-0000-000000000000", id.to_string().repeat(8));
        let mut t = TaskFile::new(&id, "d", "a", "b", at(created));
        if let Some(a) = accepted {
            t.answered(at(a));
        }
        t.set_status(status, "x");
        t
    }

    #[test]
    fn fifo_by_acceptance_not_by_name() {
        let q = order(vec![
            task('a', 10, Some(30), Status::Accepted),
            task('b', 11, Some(20), Status::Accepted),
            task('c', 5, None, Status::New),
            task('d', 1, Some(2), Status::Declined),
        ]);
        let ids: Vec<char> = q
            .iter()
            .map(|t| t.task_id.chars().next().unwrap())
            .collect();
        assert_eq!(ids, vec!['b', 'a']);
    }

    #[test]
    fn the_head_is_staged_once() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = TaskDirs::new(tmp.path());
        assert_eq!(stage_head(&dirs, at(1)).unwrap(), None);
        dirs.save(Side::Received, &task('a', 1, Some(2), Status::Accepted))
            .unwrap();
        dirs.save(Side::Received, &task('b', 1, Some(3), Status::Accepted))
            .unwrap();
        let head = stage_head(&dirs, at(100)).unwrap().unwrap();
        assert!(head.task_id.starts_with('a'));
        assert_eq!(head.staged_at, rfc3339(at(100)));
        let again = stage_head(&dirs, at(200)).unwrap().unwrap();
        assert_eq!(again.staged_at, rfc3339(at(100)));
        let stored = dirs.load(Side::Received, &head.task_id).unwrap().unwrap();
        assert_eq!(stored.staged_at, rfc3339(at(100)));
    }
}
