//! The house's measures as a ratchet: no new import circle between modules, no new
//! file in `src` over 1000 lines, no new function over 100 lines — and every entry of the
//! lists below that is gone must leave the list, so it only shrinks. What is listed is
//! the debt the structure issue pays off.

use std::collections::BTreeSet;
use std::path::Path;

use walb_tests::house::measure;

const FILE_MAX: usize = 1000;
const FN_MAX: usize = 100;

/// Circles known today: `crate: module, module, ...`.
const KNOWN_CIRCLES: &[&str] = &[
    "daemon: archive, archive::admit, archive::full, archive::hash, archive::policy, archive::query, archive::repl, archive::restore, archive::scan, archive::wdiff, opts, proxy, server, storage, storage::full, storage::hash, storage::monitor, storage::ship",
];

/// Files over [`FILE_MAX`] lines known today.
const KNOWN_LONG_FILES: &[&str] = &[
    "console/src/client.rs",
    "console/src/lab/mod.rs",
    "console/src/tui/actions.rs",
    "daemon/src/archive/repl.rs",
    "kernel/src/device/emu/mod.rs",
    "kernel/src/meta/tests.rs",
    "kernel/src/wdiff/indexed.rs",
    "tests/src/chaos/run.rs",
    "tests/src/lib.rs",
    "wire/src/msg.rs",
    "wire/src/transport.rs",
];

/// Functions over [`FN_MAX`] lines known today (tables among them).
const KNOWN_LONG_FNS: &[&str] = &[
    "console/src/tui/dump.rs::lines",
    "console/src/tui/input.rs::normal_key",
    "console/src/tui/loss.rs::loss",
    "console/src/tui/view/cluster.rs::draw",
    "console/src/tui/view/diffs.rs::draw",
    "console/src/tui/view/overlay.rs::draw",
    "console/src/tui/view/volumes.rs::draw",
    "daemon/src/archive/query.rs::answer_query",
    "daemon/src/archive/wdiff.rs::Archive::wdiff_body",
    "daemon/src/proxy/recv.rs::Proxy::receive",
    "daemon/src/proxy/send.rs::Proxy::transfer",
    "daemon/src/storage/hash.rs::sync",
    "daemon/src/storage/query.rs::Storage::query",
    "kernel/src/bin/wdevc/device.rs::run_device",
    "kernel/src/device/control.rs::handle_conn",
    "kernel/src/device/emu/writer.rs::Shared::write_batch",
    "kernel/src/diff/pipeline.rs::compress_ordered",
    "kernel/src/logpack.rs::LogPackHeader::parse",
    "kernel/src/wdiff/indexed.rs::IndexedDiffReader::new",
    "kernel/src/wdiff/sorted.rs::parse_pack",
    "tests/src/chaos/run.rs::Chaos::op",
    "tests/src/chaos/run.rs::Chaos::settle",
    "tests/src/lib.rs::Cluster::start",
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
