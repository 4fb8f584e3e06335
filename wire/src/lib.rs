//! walb-wire: the peer protocol of walb.
//!
//! This crate will hold the versioned protocol messages, the QUIC endpoint with mutual TLS
//! and the cluster certificate tooling. It is empty until the wire issue is taken up; the
//! workspace layout reserves its place so that `daemon` and `console` can depend on it.
