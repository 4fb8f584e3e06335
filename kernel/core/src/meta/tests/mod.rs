//! Unit tests of the snapshot model, mirroring walb-tools' `utest/test_meta.cpp` case by
//! case, plus the text/byte forms and the examples of the tutorial and the spec.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::timestamp::{format_compact, format_pretty, parse_compact, parse_pretty};
use super::*;
use crate::error::Error;

fn snap(b: u64, e: u64) -> MetaSnap {
    MetaSnap::new(b, e).expect("valid snapshot")
}

fn cs(g: u64) -> MetaSnap {
    MetaSnap::clean(g)
}

/// `MetaDiff(b, e, mergeable, ts)` of the C++ tests: a clean diff.
fn cd(b: u64, e: u64, mergeable: bool, ts: u64) -> MetaDiff {
    MetaDiff::clean(b, e)
        .expect("valid diff")
        .with_mergeable(mergeable)
        .with_timestamp(ts)
}

/// `MetaDiff({b0,b1}, {e0,e1}, mergeable)`.
fn dd(b: (u64, u64), e: (u64, u64), mergeable: bool) -> MetaDiff {
    MetaDiff::new(snap(b.0, b.1), snap(e.0, e.1))
        .expect("valid diff")
        .with_mergeable(mergeable)
}

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// A random diff applicable to `s` (clean, or dirty starting at `s` itself).
fn rand_diff(r: &mut StdRng, s: MetaSnap, all_mergeable: bool) -> MetaDiff {
    let dirty = r.random_range(0..3) == 0;
    let b = if dirty { s } else { cs(s.gid_b) };
    let e0 = s.gid_e + 1 + r.random_range(0..10);
    let e = if dirty {
        snap(e0, e0 + 1 + r.random_range(0..20))
    } else {
        cs(e0)
    };
    let mergeable = all_mergeable || r.random_bool(0.5);
    let d = MetaDiff::new(b, e)
        .expect("valid")
        .with_mergeable(mergeable);
    assert!(s.can_apply(&d));
    d
}

fn rand_diff_list(r: &mut StdRng, s: MetaSnap, n: usize, all_mergeable: bool) -> Vec<MetaDiff> {
    let mut v = Vec::new();
    let mut s = s;
    for _ in 0..n {
        let d = rand_diff(r, s, all_mergeable);
        s = s.apply(&d).expect("applicable");
        v.push(d);
    }
    v
}

fn ranges(v: &[MetaDiff]) -> Vec<(MetaSnap, MetaSnap)> {
    v.iter().map(MetaDiff::key).collect()
}

#[test]
fn diff() {
    let d0 = dd((0, 0), (1, 2), false);
    let d1 = cd(1, 2, true, 0);
    assert!(d0.can_merge(&d1));
    let d2 = d0.merge(&d1).expect("mergeable");
    assert!(d2.same_range(&cd(0, 2, false, 0)));
}

#[test]
fn snap_apply() {
    assert_eq!(
        snap(0, 7).apply(&dd((0, 0), (10, 10), false)).ok(),
        Some(cs(10))
    );
    assert_eq!(
        snap(0, 10).apply(&dd((0, 0), (10, 10), false)).ok(),
        Some(cs(10))
    );
    assert_eq!(
        snap(0, 10).apply(&dd((0, 10), (11, 12), false)).ok(),
        Some(snap(11, 12))
    );
}

#[test]
fn serialize() {
    let s0 = cs(0);
    let d0 = cd(0, 1, false, 0);
    let mut buf = s0.to_bytes();
    d0.write_bytes(&mut buf);
    let (s1, n) = MetaSnap::read_prefix(&buf).expect("snap");
    assert_eq!(n, MetaSnap::ENCODED_LEN);
    let d1 = MetaDiff::from_bytes(&buf[n..]).expect("diff");
    assert_eq!(s0, s1);
    assert_eq!(d0, d1);
}

#[test]
fn byte_layouts() {
    let s = snap(5, 0x0102);
    assert_eq!(
        s.to_bytes(),
        [0x11, 0x03, 5, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x01, 0, 0, 0, 0, 0, 0]
    );
    let d = dd((1, 2), (3, 4), true)
        .with_comp_diff(false)
        .with_timestamp(0x10)
        .with_data_size(7);
    let b = d.to_bytes();
    assert_eq!(b.len(), MetaDiff::ENCODED_LEN);
    assert_eq!(&b[..4], &[0x12, 0x03, 1, 0]);
    assert_eq!(&b[4..12], &0x10u64.to_le_bytes());
    assert_eq!(&b[12..30], &snap(1, 2).to_bytes()[..]);
    assert_eq!(&b[30..48], &snap(3, 4).to_bytes()[..]);
    assert_eq!(&b[48..], &7u64.to_le_bytes());

    let st = MetaState::new_applying(cs(3), snap(9, 10), 99).expect("valid");
    let b = st.to_bytes();
    assert_eq!(b.len(), MetaState::ENCODED_LEN);
    assert_eq!(&b[..3], &[0x13, 0x03, 1]);
    assert_eq!(MetaState::from_bytes(&b).expect("state"), st);
    // The init state: <|2^64-1|>.
    let e = MetaState::empty();
    assert!(MetaState::from_bytes(&e.to_bytes())
        .expect("empty")
        .is_empty());

    let lg = MetaLsidGid::new(100, 7, true, 1_495_601_380);
    let b = lg.to_bytes();
    assert_eq!(b.len(), MetaLsidGid::ENCODED_LEN);
    assert_eq!(&b[..3], &[0x14, 0x03, 1]);
    assert_eq!(&b[11..19], &100u64.to_le_bytes());
    assert_eq!(MetaLsidGid::from_bytes(&b).expect("lsidgid"), lg);
    assert_eq!(MetaLsidGid::default().gid, u64::MAX);
}

#[test]
fn byte_errors() {
    let d = cd(1, 5, true, 3);
    let b = d.to_bytes();
    for cut in 0..b.len() {
        let e = MetaDiff::from_bytes(&b[..cut]).expect_err("truncated");
        assert!(e.is_incomplete(), "cut {cut}: {e}");
    }
    let mut bad = b.clone();
    bad[0] = 0x11;
    assert!(MetaDiff::from_bytes(&bad)
        .expect_err("preamble")
        .is_corrupt());
    let mut bad = b.clone();
    bad[2] = 2;
    assert!(MetaDiff::from_bytes(&bad).expect_err("bool").is_corrupt());
    let mut long = b.clone();
    long.push(0);
    assert!(MetaDiff::from_bytes(&long)
        .expect_err("trailing")
        .is_corrupt());
    // Progress rule broken: |5|-->|1|.
    let mut back = Vec::new();
    back.extend_from_slice(&b[..12]);
    cs(5).write_bytes(&mut back);
    cs(1).write_bytes(&mut back);
    back.extend_from_slice(&0u64.to_le_bytes());
    assert!(MetaDiff::from_bytes(&back)
        .expect_err("progress")
        .is_corrupt());
    // Snapshot with gidB > gidE.
    let mut s = snap(1, 2).to_bytes();
    s[2] = 9;
    assert!(MetaSnap::from_bytes(&s).expect_err("order").is_corrupt());
    // Applying state without progress.
    let mut st = MetaState::new(cs(4), 0).to_bytes();
    st[2] = 1;
    assert!(MetaState::from_bytes(&st)
        .expect_err("applying")
        .is_corrupt());
    assert!(MetaLsidGid::from_bytes(&[0x14])
        .expect_err("short")
        .is_incomplete());
}

fn check_merge(d0: &MetaDiff, d1: &MetaDiff, md: &MetaDiff) {
    assert!(d0.can_merge(d1), "{d0:#} ++ {d1:#}");
    let m = d0.merge(d1).expect("mergeable");
    assert!(m.same_range(md), "{m:#} != {md:#}");
}

#[test]
fn merge() {
    // clean +++ clean
    check_merge(&cd(0, 1, true, 0), &cd(1, 2, true, 0), &cd(0, 2, true, 0));
    check_merge(&cd(0, 2, true, 0), &cd(1, 3, true, 0), &cd(0, 3, true, 0));
    assert!(!cd(0, 2, true, 0).can_merge(&cd(3, 5, true, 0)));
    assert!(!cd(0, 5, true, 0).can_merge(&cd(1, 3, true, 0)));
    assert!(!cd(1, 3, true, 0).can_merge(&cd(0, 5, true, 0)));
    // clean +++ dirty, dirty +++ clean
    check_merge(
        &cd(0, 1, true, 0),
        &dd((1, 1), (2, 3), true),
        &dd((0, 0), (2, 3), true),
    );
    check_merge(
        &cd(0, 5, true, 0),
        &dd((1, 2), (7, 8), true),
        &dd((0, 0), (7, 8), true),
    );
    check_merge(
        &dd((0, 1), (5, 10), true),
        &cd(2, 7, true, 0),
        &dd((0, 1), (7, 10), true),
    );
    check_merge(
        &dd((0, 1), (5, 10), true),
        &cd(2, 12, true, 0),
        &dd((0, 1), (12, 12), true),
    );
    // mergeable flag of the second diff
    let d0 = cd(0, 1, true, 0);
    let mut d1 = cd(1, 2, false, 0);
    assert!(!d0.can_merge(&d1));
    assert!(d0.merge(&d1).is_err());
    d1.mergeable = true;
    assert!(d0.can_merge(&d1));
    // compared diffs never merge
    for (c0, c1) in [(true, false), (false, true), (true, true)] {
        let a = cd(0, 1, true, 0).with_comp_diff(c0);
        let b = cd(1, 2, true, 0).with_comp_diff(c1);
        assert!(!a.can_merge(&b));
    }
    // result flags: first's mergeable, second's timestamp, size unknown
    let m = cd(0, 1, false, 10)
        .with_data_size(5)
        .merge(&cd(1, 2, true, 20).with_data_size(6))
        .expect("mergeable");
    assert!(!m.mergeable && !m.comp_diff);
    assert_eq!((m.timestamp, m.data_size), (20, 0));
    assert!(MetaDiff::merge_all(&[]).is_err());
}

fn check_apply(s0: MetaSnap, d0: &MetaDiff, s1: MetaSnap) {
    assert!(s0.can_apply(d0), "{s0} << {d0:#}");
    let st = MetaState::new(s0, 0);
    assert!(st.can_apply(d0));
    let sa = st.begin_applying(std::slice::from_ref(d0)).expect("begin");
    let sb = st.apply(d0).expect("apply");
    assert!(sa.can_apply(d0));
    let sc = sa.end_applying(std::slice::from_ref(d0)).expect("end");
    assert!(sa.applying && !sb.applying && !sc.applying);
    assert_eq!(sa.timestamp, d0.timestamp);
    assert_eq!(sb.timestamp, d0.timestamp);
    assert_eq!(sc.timestamp, d0.timestamp);
    assert_eq!(sb, sc);
    assert!(MetaState::new(s1, 0).same_snapshots(&sb));
}

#[test]
fn apply() {
    let d = |b, e| cd(b, e, false, 7);
    check_apply(cs(0), &d(0, 1), cs(1));
    check_apply(cs(1), &d(0, 2), cs(2));
    assert_eq!(cs(0).relation(&d(1, 2)), Relation::TooNew);
    assert!(!cs(0).can_apply(&d(1, 2)));
    assert_eq!(cs(2).relation(&d(0, 1)), Relation::TooOld);
    assert!(cs(2).apply(&d(0, 1)).is_err());
    // dirty snapshots, clean diffs
    check_apply(snap(0, 2), &d(0, 2), cs(2));
    check_apply(snap(0, 2), &d(0, 4), cs(4));
    check_apply(snap(0, 2), &d(0, 1), snap(1, 2));
    // dirty snapshots, dirty diffs
    check_apply(snap(0, 5), &dd((0, 5), (15, 16), false), snap(15, 16));
    check_apply(snap(0, 5), &dd((0, 5), (10, 10), false), cs(10));
    check_apply(snap(5, 10), &dd((0, 5), (15, 15), false), cs(15));
    check_apply(snap(5, 10), &dd((0, 5), (7, 10), false), snap(7, 10));
}

#[test]
fn old_or_new() {
    let s0 = cs(5);
    let d = cd(4, 5, false, 0);
    assert!(!s0.can_apply(&d));
    assert_eq!(s0.relation(&d), Relation::TooOld);
    let d = cd(6, 7, false, 0);
    assert_eq!(s0.relation(&d), Relation::TooNew);
    let d = cd(3, 7, false, 0);
    assert!(s0.can_apply(&d));
}

#[test]
fn compared_diff_relation() {
    let c = cd(5, 20, true, 0).with_comp_diff(true);
    assert_eq!(cs(5).relation(&c), Relation::Applicable);
    assert_eq!(snap(5, 9).relation(&c), Relation::Applicable);
    assert_eq!(cs(6).relation(&c), Relation::NotApplicable);
    assert_eq!(cs(4).relation(&c), Relation::TooNew);
    assert_eq!(cs(20).relation(&c), Relation::TooOld);
    assert_eq!(cs(5).apply(&c).ok(), Some(cs(20)));
    // the same range without the flag applies to anything inside it
    let n = cd(5, 20, true, 0);
    assert_eq!(cs(6).relation(&n), Relation::Applicable);
    assert_eq!(Relation::NotApplicable.to_string(), "not-applicable-diff");
    assert_eq!(Relation::TooNew.as_str(), "too-new-diff");
    assert_eq!(Relation::TooOld.as_str(), "too-old-diff");
    assert_eq!(Relation::Applicable.as_str(), "applicable-diff");
}

#[test]
fn contains() {
    let mut r = rng(1);
    for _ in 0..10 {
        let v = rand_diff_list(&mut r, cs(0), 10, true);
        let m = MetaDiff::merge_all(&v).expect("mergeable");
        for d in &v {
            assert!(m.contains(d));
        }
    }
}

fn check_apply_merged(s: MetaSnap, v: &[MetaDiff]) {
    let end = s.apply_all(v).expect("applicable");
    for k in 1..=v.len() {
        let (v0, v1) = v.split_at(k);
        let Ok(m) = MetaDiff::merge_all(v0) else {
            break;
        };
        assert!(s.can_apply(&m));
        let a = s.apply(&m).expect("merged");
        assert_eq!(a, s.apply_all(v0).expect("parts"));
        assert_eq!(a.apply_all(v1).ok(), Some(end));
    }
}

#[test]
fn apply_merged() {
    let v = [
        cd(0, 1, true, 0),
        dd((1, 1), (2, 3), true),
        cd(2, 3, true, 0),
        cd(3, 4, true, 0),
    ];
    check_apply_merged(snap(0, 1), &v);
    let mut r = rng(2);
    for base in [cs(0), snap(0, 5), snap(0, 100)] {
        for _ in 0..100 {
            let v = rand_diff_list(&mut r, base, 10, true);
            check_apply_merged(base, &v);
        }
    }
}

/// Merges a random contiguous run of at least 2 diffs and replaces it with the result.
fn merge_and_replace(r: &mut StdRng, v: &mut Vec<MetaDiff>) -> bool {
    let n = v.len();
    if n < 2 {
        return false;
    }
    let b = if n == 2 { 0 } else { r.random_range(0..n - 2) };
    let e = if n == 2 {
        2
    } else {
        b + 2 + r.random_range(0..n - b - 2)
    };
    let m = MetaDiff::merge_all(&v[b..e]).expect("mergeable run");
    v.splice(b..e, [m]);
    true
}

fn exists_applicable(st: &MetaState, v: &[MetaDiff]) -> bool {
    let Some(i) = v.iter().position(|d| st.snap_b.can_apply(d)) else {
        return false;
    };
    !st.applying || (i + 1..=v.len()).any(|j| st.can_apply_all(&v[i..j]))
}

#[test]
fn diff_list() {
    let nr = 10;
    let mut r = rng(3);
    let s0 = snap(0, 5);
    let v = rand_diff_list(&mut r, s0, nr, true);
    for i in 0..nr - 1 {
        for j in 0..nr {
            assert_eq!(v[i].can_merge(&v[j]), j == i + 1, "{i} {j}");
        }
    }
    for i in 0..nr {
        let si = s0.apply_all(&v[..i]).expect("prefix");
        for j in i..nr {
            let part = &v[i..=j];
            let m = MetaDiff::merge_all(part).expect("mergeable");
            assert_eq!(si.apply(&m).ok(), si.apply_all(part).ok());
        }
    }
    for _ in 0..300 {
        let x1 = r.random_range(0..nr - 2);
        let x2 = x1 + 1 + r.random_range(0..nr - x1 - 1);
        let sx = s0.apply_all(&v[..x1]).expect("prefix");
        let st = MetaState::new(sx, 0)
            .begin_applying(&v[x1..x2])
            .expect("begin");
        let mut v3 = v.clone();
        while merge_and_replace(&mut r, &mut v3) {
            assert!(exists_applicable(&st, &v3), "{st} {v3:?}");
        }
    }
}

mod manager;
