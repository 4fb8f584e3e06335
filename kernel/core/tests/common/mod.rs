//! Helpers shared by the kernel's integration tests (core's; the device's and wdevc's include
//! this file by `#[path]`).
#![allow(dead_code)]

use std::path::PathBuf;

/// The golden data of walb-tools 1.0.19.
///
/// Found at `../shared/golden/walb-tools-1.0.19/` next to the project root, or wherever
/// `WALB_GOLDEN_DIR` points.
pub fn golden_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("WALB_GOLDEN_DIR") {
        return PathBuf::from(d);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/golden/walb-tools-1.0.19")
}

/// Path of one golden file.
pub fn golden(name: &str) -> PathBuf {
    let p = golden_dir().join(name);
    assert!(
        p.exists(),
        "golden file {} not found (set WALB_GOLDEN_DIR)",
        p.display()
    );
    p
}

/// The expected SHA-256 (hex) of a golden image name such as `pub-512-after-1.img`.
pub fn golden_image_sha256(name: &str) -> String {
    let text = std::fs::read_to_string(golden("SHA256SUMS.images")).expect("SHA256SUMS.images");
    for line in text.lines() {
        let mut it = line.split_whitespace();
        if let (Some(sum), Some(n)) = (it.next(), it.next()) {
            if n == name {
                return sum.to_string();
            }
        }
    }
    panic!("no checksum for {name}");
}

/// Size of the golden device images: 16 MiB.
pub const GOLDEN_DEVICE_BYTES: u64 = 16 << 20;

/// SHA-256 of a byte slice, as lower-case hex.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}
