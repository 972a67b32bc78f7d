//! Task submit on port 1003 (`spec/services.md` §7.4, §7.5): a peer submits a task, this node
//! accepts or declines it, executes it and sends the results back; polo scores reward it.
//!
//! - [`frame`]: `[u32 type][u32 length][JSON]` frames and their messages (sans-IO).
//! - [`id`]: task ids (16 random bytes, 8-4-4-4-12 lowercase hex), generated and validated.
//! - [`file`]: the TaskFile JSON and the statuses.
//! - [`dirs`]: `tasks/{received,submitted,results}`, private modes, durable atomic writes.
//! - [`queue`]: the FIFO of accepted tasks and the time its head was staged.
//! - [`policy`]: which result files may be sent.
//! - [`polo`]: the reward formula.
//! - [`local`]: the steps the CLI performs on this node's files (accept, decline, execute, ...).
//! - [`service`]: the daemon side.
//! - [`client`]: the SDK side.

pub mod client;
pub mod dirs;
pub mod file;
pub mod frame;
pub mod id;
pub mod local;
pub mod policy;
pub mod polo;
pub mod queue;
pub mod service;

/// The task submit port.
pub const TASK_PORT: u16 = 1003;

pub use dirs::TaskDirs;
pub use file::{Status, TaskFile};
pub use frame::{Frame, FrameError, FrameType};
pub use service::{run, TaskConfig, TaskService};
