//! The storage engine: per-file redo or undo logs of 4 KiB blocks over a [`crate::persist::Medium`], a
//! block index, commit (fsync), checkpoint and recovery. It never sees a system call number; the
//! preload will call it for files in managed directories.

pub mod file;
mod index;
pub mod log;
pub mod policy;
pub mod record;
pub mod stats;

pub use file::{EngineSettings, Frozen, ManagedFile, Piece, Recovered};
pub use policy::{Logging, Mode};
