//! wdevc: the WalB device and file tool.
fn main() {}
