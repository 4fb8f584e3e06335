//! The house's measures as a ratchet: no new import circle between modules, no new
//! file in `src` over 1000 lines, no new function over 100 lines — and every entry of the
//! lists below that is gone must leave the list, so it only shrinks. What is listed is
//! the debt the structure issue pays off.
//!
//! And the typed contract: no console function reads a daemon's text answer
//! (`Reply::Lines`, `Reply::Text`) but the fallbacks for daemons of an older protocol
//! listed in [`TEXT_FALLBACKS`]; everything else is read from typed replies.

use std::collections::BTreeSet;
use std::path::Path;

use walb_tests::house::{measure, unsafe_rule};

const FILE_MAX: usize = 1000;
const FN_MAX: usize = 100;

/// Circles known today: `crate: module, module, ...`.
const KNOWN_CIRCLES: &[&str] = &[];

/// Files over [`FILE_MAX`] lines known today.
const KNOWN_LONG_FILES: &[&str] = &[];

/// Functions over [`FN_MAX`] lines known today: tables only (`loss` is the table of what
/// each destructive command loses, one arm per command).
const KNOWN_LONG_FNS: &[&str] = &["console/src/tui/loss.rs::loss"];

/// The console's functions that may meet a daemon's text answer: a protocol-3 daemon's
/// names lists and state or role names, read as they are; its status lines, shown as they
/// are; and the error that names the upgrade for every other text answer.
const TEXT_FALLBACKS: &[&str] = &[
    "console/src/client/calls.rs::Client::host_type",
    "console/src/client/calls.rs::Client::state",
    "console/src/client/calls.rs::Client::status",
    "console/src/client/mod.rs::expect_names",
    "console/src/client/mod.rs::not_typed",
];

fn check(what: &str, now: BTreeSet<String>, known: &[&str]) -> Vec<String> {
    let known: BTreeSet<String> = known.iter().map(|s| s.to_string()).collect();
    let mut out = Vec::new();
    for n in now.difference(&known) {
        out.push(format!("new {what}: {n}"));
    }
    for k in known.difference(&now) {
        out.push(format!("gone (take it off the list): {what}: {k}"));
    }
    out
}

#[test]
fn no_new_circle_long_file_or_long_function_and_the_lists_only_shrink() {
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let m = measure(&ws).expect("reading the sources");
    assert!(
        m.file_lines.len() > 100,
        "too few files read: {}",
        m.file_lines.len()
    );
    let circles = m
        .circles
        .iter()
        .flat_map(|(k, cs)| cs.iter().map(move |c| format!("{k}: {}", c.join(", "))))
        .collect();
    let files = m
        .file_lines
        .iter()
        .filter(|(_, n)| **n > FILE_MAX)
        .map(|(f, _)| f.clone())
        .collect();
    let fns = m
        .fn_lines
        .iter()
        .filter(|(_, n)| **n > FN_MAX)
        .map(|(f, _)| f.clone())
        .collect();
    let mut bad = check("import circle", circles, KNOWN_CIRCLES);
    bad.extend(check("file over 1000 lines", files, KNOWN_LONG_FILES));
    bad.extend(check("function over 100 lines", fns, KNOWN_LONG_FNS));
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// Unsafe code lives in the device runtime's named modules only: every other crate root
/// forbids it, and nothing else allows it.
#[test]
fn unsafe_code_is_confined_to_the_device_runtime() {
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let bad = unsafe_rule(&ws).expect("reading the sources");
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// The console reads the daemons' typed answers: a function of the console that touches a
/// text answer is one of [`TEXT_FALLBACKS`] (and each of those still does).
#[test]
fn the_console_reads_text_answers_only_in_the_old_protocol_fallbacks() {
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let m = measure(&ws).expect("reading the sources");
    let console = m
        .text_replies
        .iter()
        .filter(|f| f.starts_with("console/src/"))
        .cloned()
        .collect();
    let bad = check("reader of a daemon's text answer", console, TEXT_FALLBACKS);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
