//! nvmmio: the parts of the library that can be built and tested without the preload.
//!
//! - [`sys`]: raw system calls that never re-enter the hook;
//! - [`trace`]: strace-style decoding, filters and `-c` summaries;
//! - [`config`]: the environment variables that configure the preloaded library;
//! - [`engine`]: per-file redo logs, index, commit, checkpoint and recovery;
//! - [`persist`]: the media logs live on, and the only code that makes stores durable.
//!
//! The LD_PRELOAD library itself (`libnvmmio.so`) lives in `preload/` and the CLI in
//! `src/bin/nvmmio/`.
#![deny(unsafe_code)]

pub mod config;
pub mod engine;
pub mod persist;
pub mod sys;
pub mod trace;
