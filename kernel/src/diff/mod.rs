//! The diff engine.
//!
//! - [`io`]: the in-memory diff IO shared by every reader, writer and algorithm.

pub mod io;

pub use io::{DiffIo, IoData};
