//! Trace mode: decoding system calls into strace-style lines and counting them for `-c`.
//!
//! Nothing here knows how calls are intercepted; the preload feeds it numbers, registers and
//! results, and it produces bytes.

pub mod decode;
pub mod filter;
pub mod line;
pub mod memory;
pub mod names;
pub mod signature;
pub mod summary;
pub mod symbols;

pub use symbols::{errno_name, errno_text};
