//! The external programs the tests run (`mkfs.ext4`, `losetup`, `fusermount3`, `tmux`,
//! `shellcheck`...), and what a test does when one is missing.
//!
//! A test calls [`require`] with the programs it needs before it starts. When one is not
//! installed the test fails at once, naming the program and the package that provides it
//! (`bash .ci/run`, the project's test command, installs every one of them), instead of
//! failing later on an obscure symptom. With `WALB_TEST_MISSING_TOOLS=skip` in the
//! environment it skips instead, saying loudly which program it lacked.
//!
//! This file has no dependency beyond `std`: the test crates of `kernel/`, `daemon/` and
//! `console/`, which cannot depend on `walb-tests`, include it with `#[path]`.

use std::path::{Path, PathBuf};

/// Programs the tests run and the Debian package of each.
const PACKAGES: &[(&str, &str)] = &[
    ("fusermount3", "fuse3"),
    ("mkfs.ext4", "e2fsprogs"),
    ("mkfs.xfs", "xfsprogs"),
    ("mkfs.btrfs", "btrfs-progs"),
    ("losetup", "mount"),
    ("mount", "mount"),
    ("umount", "mount"),
    ("setpriv", "util-linux"),
    ("fallocate", "util-linux"),
    ("fstrim", "util-linux"),
    ("script", "bsdutils"),
    ("tmux", "tmux"),
    ("shellcheck", "shellcheck"),
    ("truncate", "coreutils"),
    ("stty", "coreutils"),
    ("cp", "coreutils"),
    ("sha256sum", "coreutils"),
    ("bash", "bash"),
    ("zstd", "zstd"),
];

/// The environment variable that turns a missing program into a skip.
const SKIP_VAR: &str = "WALB_TEST_MISSING_TOOLS";

/// The package that provides `tool` (its own name when the table does not know it).
fn package_of(tool: &str) -> &str {
    PACKAGES
        .iter()
        .find(|(t, _)| *t == tool)
        .map_or(tool, |(_, p)| p)
}

/// Where `tool` is: on `PATH`, or in the sbin directories a non-login root shell may
/// lack on its `PATH`.
fn find(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].iter().map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// What is said of the programs in `missing` that `test` needs.
fn message(test: &str, missing: &[&str]) -> String {
    let what: Vec<String> = missing
        .iter()
        .map(|t| format!("`{t}` (package {})", package_of(t)))
        .collect();
    format!(
        "{test} needs {}, not installed; `bash .ci/run` installs what the tests need, \
         or set {SKIP_VAR}=skip to skip such tests",
        what.join(", ")
    )
}

/// Checks that every program of `tools` is installed before `test` runs. Returns `true`
/// when they all are; otherwise panics naming each missing program and its package, or
/// (with `WALB_TEST_MISSING_TOOLS=skip`) prints `SKIPPED: ...` on stderr and returns
/// `false`: the test then returns without running.
pub fn require(test: &str, tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| find(t).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let m = message(test, &missing);
    if std::env::var(SKIP_VAR).is_ok_and(|v| v == "skip") {
        eprintln!("SKIPPED: {m}");
        return false;
    }
    panic!("{m}");
}
