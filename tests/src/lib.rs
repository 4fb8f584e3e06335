//! walb-tests: end-to-end and scenario tests that run real walb processes.
//!
//! The data-kernel interop tests live next to the kernel (`kernel/tests/`); this crate
//! receives the multi-process tests once the daemons exist.
