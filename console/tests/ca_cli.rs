//! `walb-console ca` as a user runs it: init, issue (which prints the serial), and revoke
//! by id and by serial into the CA's deny list and daemons' certificate directories;
//! nonsense is refused without writing anything.

use std::path::{Path, PathBuf};
use std::process::Command;

use walb_wire::deny::{DenyList, Entry, DENY_FILE};

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn console(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_walb-console"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn ok(args: &[&str]) -> String {
    let (ok, text) = console(args);
    assert!(ok, "{args:?} failed: {text}");
    text
}

fn refused(args: &[&str], want: &str) {
    let (ok, text) = console(args);
    assert!(!ok, "{args:?} succeeded: {text}");
    assert!(text.contains(want), "{args:?}: {text:?} lacks {want:?}");
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn revoke_writes_the_deny_list_beside_every_ca_certificate() {
    let base = std::env::temp_dir().join(format!("walb-ca-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let _cleanup = Dir(base.clone());
    let (ca, a0, s0) = (base.join("ca"), base.join("a0"), base.join("s0"));
    ok(&["ca", "init", "--ca-dir", s(&ca), "--name", "t"]);
    let issued = ok(&[
        "ca",
        "issue",
        "--ca-dir",
        s(&ca),
        "--role",
        "operator",
        "--id",
        "alice",
        "--days",
        "1",
    ]);
    let serial = issued
        .lines()
        .find_map(|l| l.strip_prefix("serial:"))
        .unwrap()
        .trim()
        .to_owned();
    for (dir, role, id) in [(&a0, "archive", "a0"), (&s0, "storage", "s0")] {
        ok(&[
            "ca",
            "issue",
            "--ca-dir",
            s(&ca),
            "--role",
            role,
            "--id",
            id,
            "--out",
            s(dir),
        ]);
    }

    // Nonsense is refused, and nothing is written.
    refused(
        &["ca", "revoke", "--ca-dir", s(&ca), "--id", "king/x"],
        "unknown role \"king\"",
    );
    refused(
        &["ca", "revoke", "--ca-dir", s(&ca), "--id", "alice"],
        "not a walb identity",
    );
    refused(
        &["ca", "revoke", "--ca-dir", s(&ca), "--serial", "xyz"],
        "bad serial number",
    );
    refused(&["ca", "revoke", "--ca-dir", s(&ca)], "required");
    refused(
        &[
            "ca",
            "revoke",
            "--ca-dir",
            s(&ca),
            "--id",
            "operator/alice",
            "--out-dir",
            s(&base.join("nowhere")),
        ],
        "no ca.crt there",
    );
    refused(
        &[
            "ca",
            "revoke",
            "--ca-dir",
            s(&base),
            "--id",
            "operator/alice",
        ],
        "no CA certificate",
    );
    for dir in [&ca, &a0, &s0] {
        assert!(!dir.join(DENY_FILE).exists(), "{}", dir.display());
    }

    // By id, into the CA directory and both daemons' directories.
    let out = ok(&[
        "ca",
        "revoke",
        "--ca-dir",
        s(&ca),
        "--id",
        "operator/alice",
        "--out-dir",
        s(&a0),
        "--out-dir",
        s(&s0),
    ]);
    assert!(out.contains("revoked: id operator/alice"), "{out}");
    // By serial, as `ca issue` printed it; only into the CA directory this time.
    let out = ok(&["ca", "revoke", "--ca-dir", s(&ca), "--serial", &serial]);
    assert!(out.contains(&format!("revoked: serial {serial}")), "{out}");
    // Again: nothing new.
    let out = ok(&["ca", "revoke", "--ca-dir", s(&ca), "--id", "operator/alice"]);
    assert!(out.contains("already revoked"), "{out}");

    let list = |dir: &Path| DenyList::load(&dir.join(DENY_FILE)).unwrap();
    let id = Entry::Id("operator/alice".parse().unwrap());
    let by_serial = Entry::Serial(serial.parse().unwrap());
    assert!(list(&ca).contains(&id) && list(&ca).contains(&by_serial));
    assert_eq!(list(&ca).len(), 2);
    for dir in [&a0, &s0] {
        assert!(list(dir).contains(&id), "{}", dir.display());
        assert_eq!(list(dir).len(), 1);
    }
    let text = std::fs::read_to_string(ca.join(DENY_FILE)).unwrap();
    assert!(text.starts_with("# walb deny list"), "{text}");
    assert!(text.contains("id operator/alice    # revoked 20"), "{text}");
    // Written whole under a temporary name: none left over.
    for dir in [&ca, &a0, &s0] {
        for e in std::fs::read_dir(dir).unwrap() {
            let name = e.unwrap().file_name();
            assert!(!name.to_string_lossy().ends_with(".tmp"), "{name:?}");
        }
    }
}
