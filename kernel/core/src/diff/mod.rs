//! The diff engine.
//!
//! - [`io`]: the in-memory diff IO shared by every reader, writer and algorithm.
//! - [`convert`]: wlog → wdiff conversion.
//! - [`twopass`]: two-pass sorted conversion of wlog files (index, then read in address order).
//! - [`mem`]: overlap elimination (newest write wins).
//! - [`merge`]: the N-way streaming merge of address-ordered diffs.
//! - [`pipeline`]: parallel, order-preserving compression feeding a writer.
//! - [`source`]: merge inputs kept as stored (records copied without recompressing).
//! - [`stored_mem`]: overlap elimination over compressed IOs (sorted conversion).
//! - [`apply`]: redo of wlogs and diffs onto image files and block devices.
//! - [`virt`]: the virtual full scan (base image + diff, streamed).

pub mod apply;
pub mod convert;
pub mod io;
pub mod mem;
pub mod merge;
pub mod pipeline;
pub mod source;
pub mod stored_mem;
pub mod twopass;
pub mod virt;

pub use io::{DiffIo, IoData};
