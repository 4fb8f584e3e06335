//! walb-console: the operator's console and client library.
//!
//! Empty until the pipeline and console issues are taken up.
