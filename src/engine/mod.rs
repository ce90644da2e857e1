//! The storage engine: per-file redo logs over a [`crate::persist::Medium`], an index of logged
//! ranges, commit (fsync), checkpoint and recovery. It never sees a system call number; the
//! preload will call it for files in managed directories.

pub mod extents;
pub mod file;
pub mod log;
pub mod record;

pub use file::{EngineSettings, ManagedFile, Piece, Recovered};
