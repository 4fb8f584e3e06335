//! walb-kernel: the data kernel of walb.
//!
//! Everything that touches the bytes of a WalB log or diff lives here, in synchronous code
//! with no async runtime, so that daemons, tools, tests and fuzzers share one implementation.
//! The crate is pure: formats, the diff engine and the snapshot model over `std`'s files
//! and byte slices, with no system-call bindings, no FUSE, no command line, and no unsafe
//! code. The device runtime (emulator, control socket, FUSE, driver ioctls, direct IO,
//! image files as redo targets) is the crate `walb_device`; the `wdevc` tool is its own
//! crate on top of both.
//!
//! # Layout
//!
//! - [`checksum`]: the salted additive checksum used by every WalB structure.
//! - [`block`]: logical/physical block units and their conversions.
//! - [`error`]: the typed error of the crate; "corrupt" is kept apart from "incomplete".
//! - [`ldev`]: the log device: superblock, ring buffer layout, reading packs from the ring.
//! - [`logpack`]: log pack headers and log records (the unit of the WalB log).
//! - [`wlog`]: the wlog file (a 4 KiB header followed by log packs and an end marker).
//! - [`compress`]: the six record codecs of walb-tools.
//! - [`wdiff`]: wdiff files, version 2, in SORTED and INDEXED form.
//! - [`diff`]: the diff engine: in-memory overlap elimination, wlog → wdiff conversion,
//!   N-way streaming merge, redo (apply) to images and devices, and the virtual full scan.
//! - [`gen`]: synthetic wlogs for tests and benchmarks.
//! - [`meta`]: the snapshot model (MetaSnap, MetaDiff, MetaState, diff manager, file names).
//!
//! # Invariants
//!
//! - All on-disk integers are little-endian; structures are parsed field by field, never
//!   transmuted, so no input can cause undefined behaviour or a panic.
//! - A reader that runs out of bytes returns [`Error::Incomplete`]; a reader that sees bytes
//!   that break a format rule returns [`Error::Corrupt`]. Both name where (lsid, byte offset,
//!   record index).
//! - Diff streams handed between modules are address-sorted and never overlap.

#![forbid(unsafe_code)]

pub mod block;
pub mod checksum;
pub mod compress;
pub mod diff;
pub mod error;
pub mod gen;
pub mod hash;
pub mod ldev;
pub mod logpack;
pub mod meta;
pub mod wdiff;
pub mod wlog;

pub use error::{Error, Location, Result};
