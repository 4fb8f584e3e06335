//! The diff manager's tests: applicable chains, merges, garbage collection, names.

use super::*;

fn manager_of(v: &[MetaDiff]) -> DiffManager {
    DiffManager::from_diffs(v.iter().cloned()).expect("distinct valid diffs")
}

///     |0|
/// (1) |0|-->|1|  M
/// (2)       |1|-->|2|  M
/// (3)             |2|-->|3|  M
/// (4)                   |3|-->|4|  (explicit |3|)
/// (5)                         |4|-->|5|  M
#[test]
fn manager1() {
    let s = cs(0);
    let st = MetaState::new(s, 0);
    let v = vec![
        cd(0, 1, true, 1000),
        cd(1, 2, true, 1001),
        cd(2, 3, true, 1002),
        cd(3, 4, false, 1003),
        cd(4, 5, true, 1004),
    ];
    let mut m = manager_of(&v);
    assert_eq!(m.latest_snapshot(&st), cs(5));
    assert_eq!(m.oldest_clean_snapshot(&st).ok(), Some(0));
    assert_eq!(m.applicable_chain(s, ChainBound::gid(4)).len(), 4);
    assert_eq!(m.applicable_chain(s, ChainBound::time(1003)).len(), 4);
    assert_eq!(m.diffs_to_apply(&st, 2, 0).len(), 2);
    assert_eq!(m.diffs_to_apply(&st, 4, 0).len(), 4);
    assert_eq!(m.diffs_to_apply(&st, 4, 3).len(), 3);
    assert_eq!(m.diffs_to_restore(&st, 2, 0).map(|v| v.len()), Some(2));
    assert_eq!(m.diffs_to_restore(&st, 4, 0).map(|v| v.len()), Some(4));
    assert_eq!(m.diffs_to_restore(&st, 4, 1).map(|v| v.len()), Some(1));
    assert_eq!(m.diffs_to_reach(&st, cs(2)).map(|v| v.len()), Some(2));
    assert_eq!(m.diffs_to_reach(&st, cs(4)).map(|v| v.len()), Some(4));
    assert_eq!(m.restorable(&st, true).len(), 6);
    let explicit = m.restorable(&st, false);
    assert_eq!(
        explicit
            .iter()
            .map(|p| (p.gid, p.timestamp))
            .collect::<Vec<_>>(),
        [(0, 0), (3, 1002), (5, 1004)]
    );
    assert!(explicit[1].explicit && explicit[2].explicit);
    assert_eq!(explicit[1].to_string(), "3 1970-01-01T00:16:42 1");

    let v1 = m.mergeable_from(0, &MergeLimits::default());
    assert_eq!(v1.len(), 3);
    let v2 = m.mergeable_from(3, &MergeLimits::default());
    assert_eq!(v2.len(), 2);
    let md1 = MetaDiff::merge_all(&v1).expect("v1");
    let md2 = MetaDiff::merge_all(&v2).expect("v2");
    m.add(md1.clone()).expect("add");
    m.add(md2.clone()).expect("add");
    assert!(m.add(md2.clone()).is_err(), "duplicate");
    assert_eq!(m.latest_snapshot(&st), cs(5));
    let garbage = m.gc(cs(0));
    assert_eq!(garbage.len(), 5);
    assert_eq!(m.latest_snapshot(&st), cs(5));
    let all: Vec<MetaDiff> = m.iter().cloned().collect();
    assert_eq!(all, [md1, md2]);
}

/// s0  |0,       10|
/// d0  |0|-->|5|
/// d1       |5, 10|-->|15,    20|
/// d2                 |15|-->|20|
/// d3                        |20|-->|25|
#[test]
fn manager2() {
    let st = MetaState::new(snap(0, 10), 0);
    let v = vec![
        cd(0, 5, false, 1000),
        dd((5, 10), (15, 20), false).with_timestamp(1001),
        cd(15, 20, false, 1002),
        cd(20, 25, false, 1003),
    ];
    let m = manager_of(&v);
    assert_eq!(m.oldest_clean_snapshot(&st).ok(), Some(20));
    assert_eq!(
        m.oldest_clean_state(&st).ok(),
        Some(MetaState::new(cs(20), 1002))
    );
    assert_eq!(m.applicable_chain(st.snap_b, ChainBound::NONE).len(), 4);
    assert!(m.minimum_applicable(&st).is_empty());
    let apply_len = |st: &MetaState, g| m.diffs_to_apply(st, g, 0).len();
    let restore_len = |st: &MetaState, g| m.diffs_to_restore(st, g, 0).map(|v| v.len());
    let reach_len = |st: &MetaState, s| m.diffs_to_reach(st, s).map(|v| v.len());
    assert_eq!([5, 15, 20, 25].map(|g| apply_len(&st, g)), [1, 2, 3, 4]);
    assert_eq!(
        [5, 15, 20, 25].map(|g| restore_len(&st, g)),
        [None, None, Some(3), Some(4)]
    );
    assert_eq!(reach_len(&st, cs(5)), None);
    assert_eq!(reach_len(&st, snap(5, 10)), Some(1));
    assert_eq!(reach_len(&st, snap(15, 20)), Some(2));
    assert_eq!(reach_len(&st, cs(20)), Some(3));
    assert_eq!(reach_len(&st, cs(25)), Some(4));
    // scanning does not need a clean image
    assert_eq!(m.diffs_to_scan(&st, 15, 0).map(|v| v.len()), Some(2));
    assert_eq!(m.diffs_to_scan(&st, 15, 1), None);
    assert_eq!(m.diffs_to_scan(&st, 6, 0), None);
    assert_eq!(m.restorable(&st, true).len(), 2);
    assert_eq!(m.restorable(&st, false).len(), 2);

    let st1a = st.begin_applying(&v).expect("begin");
    let st1b = st1a.begin_applying(&v).expect("begin again");
    let st1c = MetaState::new_applying(snap(0, 10), cs(25), 0).expect("valid");
    let st2a = st.end_applying(&v).expect("end");
    let st2b = st1a.end_applying(&v).expect("end from applying");
    let st2c = MetaState::new(cs(25), 0);
    assert_eq!(st1a, st1b);
    assert!(st1a.same_snapshots(&st1c));
    assert_eq!(st2a, st2b);
    assert!(st2a.same_snapshots(&st2c));

    assert!(!st1c.can_apply(&v[0]), "does not reach |25|");
    assert!(st1c.can_apply(&cd(0, 25, true, 0)));
    assert!(!st1c.can_apply_all(&v[..3]));
    assert!(!st1c.can_apply_all(&[]));
    assert!(st1c.begin_applying(&v[..3]).is_err());
    assert_eq!(m.minimum_applicable(&st1c).len(), 4);
    assert_eq!(
        m.settled_state(&st1c).ok(),
        Some(MetaState::new(cs(25), 1003))
    );
    assert_eq!(m.settled_state(&st).ok(), Some(st));
    // `get meta-snap` / `get meta-state 0|1 gid`
    assert_eq!(m.chain_snapshot(&st, ChainBound::gid(16)), snap(15, 20));
    assert_eq!(
        m.chain_state(&st, ChainBound::gid(20), false).ok(),
        Some(MetaState::new(cs(20), 1002))
    );
    assert_eq!(
        m.chain_state(&st, ChainBound::gid(20), true)
            .map(|s| s.snapshots_string())
            .ok(),
        Some("<|0,10|-->|20|>".to_string())
    );
    assert!(m.chain_state(&st1c, ChainBound::gid(20), false).is_err());
    assert_eq!([5, 20, 25].map(|g| apply_len(&st1c, g)), [4, 4, 4]);
    assert_eq!(
        [5, 20, 25].map(|g| restore_len(&st1c, g)),
        [None, None, Some(4)]
    );
    assert_eq!(reach_len(&st1c, cs(5)), None);
    assert_eq!(reach_len(&st1c, cs(20)), None);
    assert_eq!(reach_len(&st1c, cs(25)), Some(4));
    // an apply in progress can't be finished by fewer diffs
    assert_eq!(m.diffs_to_apply(&st1c, 25, 1).len(), 4);
    assert_eq!(m.restorable(&st1c, true).len(), 1);
}

///     |0,       10|
/// (1) |0|-->|5|
/// (2)       |5, 10|-->|15,    20|
/// (3)                 |15|-->|20|
#[test]
fn manager3() {
    let st = MetaState::new(snap(0, 10), 0);
    let v = vec![
        cd(0, 5, false, 1000),
        dd((5, 10), (15, 20), false).with_timestamp(1001),
        cd(15, 20, false, 1002),
    ];
    let m = manager_of(&v);
    assert_eq!(m.oldest_clean_snapshot(&st).ok(), Some(20));
    assert_eq!(m.applicable_chain(st.snap_b, ChainBound::NONE).len(), 3);
    assert!(m.minimum_applicable(&st).is_empty());
    assert_eq!(
        [5, 10, 15, 20].map(|g| m.diffs_to_apply(&st, g, 0).len()),
        [1, 1, 2, 3]
    );
    assert_eq!(
        [5, 10, 15, 20].map(|g| m.diffs_to_restore(&st, g, 0).map(|v| v.len())),
        [None, None, None, Some(3)]
    );
    assert_eq!(m.diffs_to_reach(&st, snap(5, 10)).map(|v| v.len()), Some(1));
    assert_eq!(
        m.diffs_to_reach(&st, snap(15, 20)).map(|v| v.len()),
        Some(2)
    );
    assert_eq!(m.diffs_to_reach(&st, cs(20)).map(|v| v.len()), Some(3));
    assert_eq!(m.restorable(&st, true).len(), 1);
    assert_eq!(m.restorable(&st, false).len(), 1);
}

#[test]
fn manager4_random() {
    let mut r = rng(4);
    for _ in 0..20 {
        let base = cs(0);
        let st = MetaState::new(base, 0);
        let v = rand_diff_list(&mut r, base, 20, false);
        let mut m = DiffManager::new();
        let mut s0 = base;
        for d in &v {
            assert_eq!(m.latest_snapshot(&st), s0);
            m.add(d.clone()).expect("add");
            s0 = s0.apply(d).expect("applicable");
        }
        assert_eq!(m.applicable_chain(base, ChainBound::NONE), v);
        let latest = m.latest_snapshot(&st);
        let restorable0 = m.restorable(&st, false);
        let restorable0a = m.restorable(&st, true).len();
        for _ in 0..10 {
            let v2 = m.mergeable_from(r.random_range(0..latest.gid_e), &MergeLimits::default());
            if v2.len() > 1 {
                m.add(MetaDiff::merge_all(&v2).expect("mergeable run"))
                    .expect("new diff");
                m.gc(base);
            }
            assert_eq!(m.latest_snapshot(&st), latest);
        }
        assert_eq!(m.restorable(&st, false), restorable0);
        assert!(m.restorable(&st, true).len() <= restorable0a);
        let gids = m.clean_snapshots(&st);
        if let Some(first) = gids.first() {
            assert_eq!(m.oldest_clean_snapshot(&st).ok(), Some(*first));
        }
    }
}

#[test]
fn manager_gc_range() {
    let v = vec![
        cd(0, 1, true, 1000),
        cd(0, 2, true, 1000),
        cd(1, 2, true, 1000),
        cd(1, 3, true, 1000),
        cd(2, 3, true, 1002),
        cd(2, 4, true, 1003),
    ];
    let mut m = manager_of(&v);
    let g = m.gc_range(1, 3);
    assert_eq!(g, [v[2].clone(), v[4].clone()]);
    assert_eq!(m.len(), 4);
}

#[test]
fn manager_merge1() {
    let s = cs(0);
    let v: Vec<MetaDiff> = (0..5).map(|g| cd(g, g + 1, true, 1000 + g)).collect();
    let mut m = manager_of(&v);
    let md1 = MetaDiff::merge_all(&v[0..3]).expect("md1");
    let md2 = MetaDiff::merge_all(&v[1..5]).expect("md2");
    m.add(md1.clone()).expect("add");
    m.add(md2.clone()).expect("add");
    let chain = m.applicable_chain(s, ChainBound::NONE);
    assert_eq!(ranges(&chain), ranges(&[md1.clone(), md2.clone()]));
    m.gc(s);
    let chain = m.applicable_chain(s, ChainBound::NONE);
    assert_eq!(ranges(&chain), ranges(&[md1.clone(), md2.clone()]));
    let md3 = MetaDiff::merge_all(&v[3..5]).expect("md3");
    m.add(md3.clone()).expect("add");
    m.gc(s);
    let chain = m.applicable_chain(s, ChainBound::NONE);
    assert_eq!(ranges(&chain), ranges(&[md1, md3]));
}

#[test]
fn manager_merge2() {
    let s = cs(0);
    let v = vec![
        cd(0, 1, true, 1000),
        cd(2, 3, true, 1002),
        cd(4, 5, true, 1004),
        cd(0, 3, true, 1002),
        cd(2, 5, true, 1004),
    ];
    let mut m = manager_of(&v);
    let g = m.gc(s);
    assert_eq!(g.len(), 3);
    let chain = m.applicable_chain(s, ChainBound::NONE);
    assert_eq!(chain, [v[3].clone(), v[4].clone()]);
}

#[test]
fn manager_merge3() {
    let mut r = rng(5);
    let mut base = cs(0);
    let mut m = DiffManager::new();
    for gid in 0..400u64 {
        let d = cd(gid, gid + 1, true, 1_500_000_000 + gid)
            .with_data_size(1 + r.random_range(0..10_000));
        m.add(d).expect("add");
        let v = m.applicable_chain(base, ChainBound::NONE);
        assert_eq!(base.apply_all(&v).ok(), Some(cs(gid + 1)));
        if m.len() - v.len() > 10 {
            m.gc(base);
            assert_eq!(m.len(), v.len());
        }
        if v.len() > 20 {
            let e = 2 + r.random_range(0..v.len() - 1);
            let b = r.random_range(0..e - 1);
            let md = MetaDiff::merge_all(&v[b..e]).expect("consecutive chain diffs");
            // may already exist from an earlier identical merge
            let _ = m.add(md);
        }
        let v = m.applicable_chain(base, ChainBound::NONE);
        assert_eq!(base.apply_all(&v).ok(), Some(cs(gid + 1)));
        if v.len() > 10 {
            let g = v[r.random_range(0..v.len())].snap_e.gid_b;
            let erased = m.erase_before_gid(g);
            assert!(erased.iter().all(|d| d.snap_e.gid_b <= g));
            assert!(m.iter().all(|d| d.snap_e.gid_b > g));
            base = base
                .apply_all(
                    &v.iter()
                        .take_while(|d| d.snap_e.gid_b <= g)
                        .cloned()
                        .collect::<Vec<_>>(),
                )
                .expect("prefix of the chain");
            assert_eq!(base, cs(g));
        }
    }
}

fn check_name(d: &MetaDiff) {
    let name = diff_file_name(d);
    let x = parse_diff_file_name(&name).expect("own name parses");
    assert!(d.same_range(&x));
    assert_eq!(
        (d.mergeable, d.comp_diff, d.timestamp),
        (x.mergeable, x.comp_diff, x.timestamp)
    );
}

#[test]
fn diff_file_names() {
    let mut r = rng(6);
    for _ in 0..100 {
        let b = r.random_range(0..10);
        let e = b + r.random_range(0..10);
        for s in [cs(b), snap(b, e)] {
            let mut d =
                rand_diff(&mut r, s, false).with_timestamp(r.random_range(0..4_000_000_000));
            for (m, c) in [(true, true), (true, false), (false, true), (false, false)] {
                d.mergeable = m;
                d.comp_diff = c;
                check_name(&d);
            }
        }
    }
    let ts = parse_compact("20170524050040").expect("ts");
    let d = cd(2, 3, true, ts);
    assert_eq!(diff_file_name(&d), "20170524050040-M--2-3.wdiff");
    let d = dd((10, 10), (11, 57), false).with_timestamp(ts);
    assert_eq!(diff_file_name(&d), "20170524050040----10-10-11-57.wdiff");
    let d = cd(5, 20, true, ts).with_comp_diff(true);
    assert_eq!(diff_file_name(&d), "20170524050040-MC-5-20.wdiff");
    let p = parse_diff_file_name("20170524050040----10-10-11-57.wdiff").expect("spec example");
    assert_eq!(p.key(), (cs(10), snap(11, 57)));
    assert!(!p.mergeable && !p.comp_diff);
    for bad in [
        "",
        "20170524050040-M--2-3.wdif",
        "20170524050040-M--2-3-4.wdiff",
        "20170524050040-M--3-2.wdiff",
        "20170524050040-X--2-3.wdiff",
        "20170524050040-M-2-3.wdiff",
        "2017052405004x-M--2-3.wdiff",
        "20171324050040-M--2-3.wdiff",
        "20170524050040-M--2--3.wdiff",
        "20170524050040-M--0x2-3.wdiff",
        "20170524050040-M--2-99999999999999999999.wdiff",
        "20170524050040-M--2-3ä.wdiff",
    ] {
        assert!(parse_diff_file_name(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn snap_str() {
    for s in [snap(5, 10), cs(100)] {
        assert_eq!(s.to_string().parse::<MetaSnap>().ok(), Some(s));
    }
    assert_eq!(cs(5).to_string(), "|5|");
    assert_eq!(snap(5, 9).to_string(), "|5,9|");
    for bad in [
        "", "|", "||", "|5", "5|", "|9,5|", "|5|x", "|a|", "|5,|", "|-1|",
    ] {
        assert!(bad.parse::<MetaSnap>().is_err(), "{bad:?} accepted");
    }
}

#[test]
fn meta_state_str() {
    let ts = 1_495_601_080;
    let cases = [
        MetaState::new(cs(100), ts),
        MetaState::new(snap(100, 200), ts),
        MetaState::new_applying(cs(100), cs(300), ts).expect("valid"),
        MetaState::new_applying(cs(100), snap(300, 400), ts).expect("valid"),
        MetaState::new_applying(snap(100, 200), cs(300), ts).expect("valid"),
        MetaState::new_applying(snap(100, 200), snap(300, 400), ts).expect("valid"),
    ];
    for st in cases {
        let text = st.to_string();
        let back: MetaState = text.parse().expect("own form parses");
        assert_eq!(back, st, "{text}");
        assert_eq!(back.timestamp, st.timestamp);
    }
    assert_eq!(
        MetaState::new(cs(5), ts).to_string(),
        "<|5|>-20170524044440"
    );
    assert_eq!(
        MetaState::new_applying(cs(5), cs(9), ts)
            .expect("valid")
            .to_string(),
        "<|5|-->|9|>-20170524044440"
    );
    assert_eq!(
        MetaState::parse_with_default_timestamp("<|5|>", 77).ok(),
        Some(MetaState::new(cs(5), 77))
    );
    assert!("<|5|>".parse::<MetaState>().is_err());
    for bad in [
        "|5|",
        "<|5|",
        "<|5|>20170524044440",
        "<|9|-->|5|>-20170524044440",
        "<|5|->|9|>",
    ] {
        assert!(bad.parse::<MetaState>().is_err(), "{bad:?} accepted");
    }
}

#[test]
fn diff_lines_of_the_tutorial() {
    let text = "\
|0|-->|1| -- 2017-05-24T04:49:40 4128
|1|-->|2| -- 2017-05-24T05:00:15 9427
|2|-->|3| M- 2017-05-24T05:00:40 8280
|3|-->|4| M- 2017-05-24T05:00:45 8688
|4|-->|5| M- 2017-05-24T05:00:49 9309
|5|-->|6| M- 2017-05-24T05:01:36 8567
|6|-->|7| M- 2017-05-24T05:02:10 4128
|7|-->|8| -- 2017-05-24T05:13:31 4128";
    let v: Vec<MetaDiff> = text
        .lines()
        .map(|l| l.parse().expect("tutorial line"))
        .collect();
    for (d, l) in v.iter().zip(text.lines()) {
        assert_eq!(d.to_string(), l);
    }
    assert_eq!(format!("{:#}", v[0]), "|0|-->|1|");
    assert_eq!(v[0].timestamp, 1_495_601_380);
    let mut m = manager_of(&v);
    // `merge vol 2 7`: the mergeable run from 2, cut before diffs starting at >= 7.
    let limits = MergeLimits {
        before_gid: Some(7),
        ..MergeLimits::default()
    };
    let run = m.mergeable_from(2, &limits);
    assert_eq!(run.len(), 5);
    let merged = MetaDiff::merge_all(&run).expect("run").with_data_size(9927);
    assert_eq!(merged.to_string(), "|2|-->|7| M- 2017-05-24T05:02:10 9927");
    m.add(merged).expect("add");
    m.remove_all(&run);
    let listed: Vec<String> = m.iter().map(ToString::to_string).collect();
    assert_eq!(
        listed,
        [
            "|0|-->|1| -- 2017-05-24T04:49:40 4128",
            "|1|-->|2| -- 2017-05-24T05:00:15 9427",
            "|2|-->|7| M- 2017-05-24T05:02:10 9927",
            "|7|-->|8| -- 2017-05-24T05:13:31 4128",
        ]
    );
    // `get num-diff` / `total-diff-size` / `diff` ranges: gidB <= B.gidB < gidE.
    assert_eq!(m.count_range(0, u64::MAX).ok(), Some(4));
    assert_eq!(m.count_range(1, 7).ok(), Some(2));
    assert_eq!(m.total_size_range(1, 7).ok(), Some(9427 + 9927));
    assert_eq!(m.range(7, 8).map(|v| v.len()).ok(), Some(1));
    assert!(matches!(m.range(3, 3), Err(Error::Invalid(_))));
    assert_eq!(m.min_max_gid(), Some((0, 8)));

    // Apply 0..8 to the base: nothing is left afterwards.
    let st = MetaState::new(cs(0), 0);
    let list = m.diffs_to_apply(&st, 8, 0);
    let applied = st.apply_all(&list).expect("chain");
    assert_eq!(applied.snap_b, cs(8));
    assert_eq!(m.erase_before_gid(8).len(), 4);
    assert!(m.is_empty());

    for bad in [
        "|0|-->|1| -- 2017-05-24T04:49:40",
        "|0|-->|1| X- 2017-05-24T04:49:40 1",
        "|0|-->|1| -- 2017-05-24 04:49:40 1",
        "|1|-->|1| -- 2017-05-24T04:49:40 1",
        "|0|->|1| -- 2017-05-24T04:49:40 1",
        "|0|-->|1| -- 2017-05-24T04:49:40 +1",
    ] {
        assert!(bad.parse::<MetaDiff>().is_err(), "{bad:?} accepted");
    }
}

#[test]
fn restorable_flags_follow_mergeable() {
    // n13 of walb-tools' scenario tests: base |0|, five snapshots, the first four
    // disabled (made implicit) -> two restorable points: the base and the last one.
    let v: Vec<MetaDiff> = (0..5).map(|g| cd(g, g + 1, false, 100 + g)).collect();
    let mut m = manager_of(&v);
    let st = MetaState::new(cs(0), 50);
    assert_eq!(m.restorable(&st, false).len(), 6);
    for g in 1..5 {
        let changed = m.set_mergeable_at(g, true).expect("diff starts there");
        assert_eq!(changed.len(), 1);
        assert!(changed[0].mergeable);
    }
    assert_eq!(m.set_mergeable_at(1, true).map(|v| v.len()), Some(0));
    assert_eq!(m.set_mergeable_at(9, true), None);
    let r = m.restorable(&st, false);
    assert_eq!(r.iter().map(|p| p.gid).collect::<Vec<_>>(), [0, 5]);
    let all = m.restorable(&st, true);
    assert_eq!(all.len(), 6);
    assert_eq!(
        all.iter().map(|p| p.explicit).collect::<Vec<_>>(),
        [true, false, false, false, false, true]
    );
    assert_eq!(all[2].timestamp, 101);
    // enable again
    m.set_mergeable_at(3, false).expect("diff at 3");
    let r = m.restorable(&st, false);
    assert_eq!(r.iter().map(|p| p.gid).collect::<Vec<_>>(), [0, 3, 5]);
}

#[test]
fn applying_state_with_merged_diff_jumping_over_its_target() {
    // The base was being applied <|0|-->|5|>, and meanwhile only a merged |0|-->|7| is left:
    // the minimum list must still finish the apply.
    let m = manager_of(&[cd(0, 7, true, 10), cd(7, 9, true, 20)]);
    let st = MetaState::new_applying(cs(0), cs(5), 1).expect("valid");
    let min = m.minimum_applicable(&st);
    assert_eq!(ranges(&min), ranges(&[cd(0, 7, true, 10)]));
    assert_eq!(m.diffs_to_apply(&st, 3, 0).len(), 1);
    assert_eq!(
        m.oldest_clean_state(&st).ok(),
        Some(MetaState::new(cs(7), 10))
    );
    assert_eq!(m.diffs_to_restore(&st, 5, 0), None);
    assert_eq!(m.diffs_to_restore(&st, 7, 0).map(|v| v.len()), Some(1));
    assert_eq!(
        m.restorable(&st, true)
            .iter()
            .map(|p| p.gid)
            .collect::<Vec<_>>(),
        [7, 9]
    );
    // Without any usable diff the apply cannot be finished.
    let empty = DiffManager::new();
    assert!(empty.oldest_clean_state(&st).is_err());
    assert!(empty.restorable(&st, true).is_empty());
    assert!(empty.latest_state(&st).is_err());
}

#[test]
fn mergeable_limits_and_send_list() {
    let v: Vec<MetaDiff> = (0..6)
        .map(|g| cd(g, g + 1, g != 3, 100 + g).with_data_size(10))
        .collect();
    let m = manager_of(&v);
    let all = m.mergeable_from(0, &MergeLimits::default());
    assert_eq!(all.len(), 3, "stops before the explicit snapshot |3|");
    let sized = MergeLimits {
        max_total_size: Some(25),
        ..MergeLimits::default()
    };
    assert_eq!(m.mergeable_from(0, &sized).len(), 2);
    let tiny = MergeLimits {
        max_total_size: Some(1),
        ..MergeLimits::default()
    };
    assert_eq!(
        m.mergeable_from(0, &tiny).len(),
        1,
        "the first diff is always kept"
    );
    let counted = MergeLimits {
        max_count: Some(1),
        ..MergeLimits::default()
    };
    assert_eq!(m.mergeable_from(3, &counted).len(), 1);
    let before = MergeLimits {
        before_gid: Some(3),
        ..MergeLimits::default()
    };
    assert!(m.mergeable_from(3, &before).is_empty());
    assert_eq!(m.mergeable_from(3, &MergeLimits::default()).len(), 3);
    assert!(m.mergeable_from(6, &MergeLimits::default()).is_empty());
    assert_eq!(
        m.applicable_mergeable(cs(0), &MergeLimits::default()).len(),
        3
    );
    assert_eq!(
        m.applicable_mergeable(cs(3), &MergeLimits::default()).len(),
        3
    );
    assert_eq!(m.applicable_mergeable(cs(3), &counted).len(), 1);
}

#[test]
fn greedy_choice_and_removal() {
    let mut m = manager_of(&[
        cd(0, 2, true, 0),
        cd(1, 4, true, 0),
        cd(0, 4, true, 0),
        cd(2, 3, true, 0),
    ]);
    // from |1|: candidates |0|-->|2|, |1|-->|4|, |0|-->|4|: largest E.gidB, then B.gidB.
    assert_eq!(
        m.next_applicable(cs(1)).map(MetaDiff::key),
        Some((cs(1), cs(4)))
    );
    assert_eq!(m.applicable_candidates(cs(1)).len(), 3);
    assert_eq!(
        m.remove(&cd(1, 4, false, 9)).map(|d| d.key()),
        Some((cs(1), cs(4)))
    );
    assert!(m.remove(&cd(1, 4, false, 9)).is_none());
    assert_eq!(
        m.next_applicable(cs(1)).map(MetaDiff::key),
        Some((cs(0), cs(4)))
    );
    assert!(m.exists(&cd(2, 3, false, 0)));
    assert!(!m.exists(&cd(2, 4, false, 0)));
    let no_progress = MetaDiff {
        snap_e: cs(5),
        snap_b: cs(5),
        ..cd(0, 1, false, 0)
    };
    assert!(m.add(no_progress).is_err());
    assert_eq!(m.len(), 3);
}

#[test]
fn timestamps() {
    assert_eq!(format_compact(0), "19700101000000");
    assert_eq!(format_pretty(1_495_601_380), "2017-05-24T04:49:40");
    assert_eq!(
        parse_pretty("2017-05-24T04:49:40").ok(),
        Some(1_495_601_380)
    );
    assert_eq!(parse_compact("20170524044940").ok(), Some(1_495_601_380));
    assert_eq!(format_pretty(u64::MAX), "9999-12-31T23:59:59");
    assert_eq!(
        parse_compact(&format_compact(timestamp::MAX_TIMESTAMP)).ok(),
        Some(timestamp::MAX_TIMESTAMP)
    );
    for bad in [
        "+0170524044940",
        "2017052404494",
        "20170230000000",
        "19691231235959",
    ] {
        assert!(parse_compact(bad).is_err(), "{bad:?} accepted");
    }
    assert!(parse_pretty("2017-05-24 04:49:40").is_err());
    assert_eq!(
        MetaLsidGid::new(1, 2, true, 0).to_string(),
        "LsidGid timestamp 1970-01-01T00:00:00 isMergeable 1 lsid 1 gid 2"
    );
}
