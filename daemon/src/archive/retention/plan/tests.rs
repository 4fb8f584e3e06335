//! Table tests of the selection against hand-worked grids and counts.

use super::*;
use crate::archive::retention::{Counts, Retention};
use walb_kernel::meta::MetaSnap;

const H: u64 = 3600;
/// Midnight (UTC) of day 20000 since the epoch.
const D0: u64 = 20_000 * 86_400;

/// A volume whose base is the first point and whose chain runs through the others:
/// `(gid, timestamp, explicit)`; the diff leaving an explicit point is not mergeable.
fn vol(pts: &[(u64, u64, bool)]) -> (MetaState, Vec<MetaDiff>) {
    let base = MetaState::new(MetaSnap::clean(pts[0].0), pts[0].1);
    let chain = pts
        .windows(2)
        .map(|w| {
            MetaDiff::clean(w[0].0, w[1].0)
                .unwrap()
                .with_mergeable(!w[0].2)
                .with_timestamp(w[1].1)
        })
        .collect();
    (base, chain)
}

fn policy(counts: Counts, grid: &str) -> Retention {
    Retention {
        on: true,
        counts,
        grid: grid.parse().unwrap(),
    }
}

fn no_counts() -> Counts {
    Counts {
        last: 0,
        hourly: 0,
        daily: 0,
        weekly: 0,
        monthly: 0,
        yearly: 0,
    }
}

/// `(gid, fate)` of every point, with the reasons as text.
fn fates(p: &Plan) -> Vec<(u64, String)> {
    p.verdicts
        .iter()
        .map(|v| {
            let f = match &v.fate {
                Fate::Keep(w) => w.iter().map(Why::to_string).collect::<Vec<_>>().join(","),
                Fate::Fold => "fold".into(),
                Fate::Apply => "apply".into(),
            };
            (v.point.gid, f)
        })
        .collect()
}

fn want(rows: &[(u64, &str)]) -> Vec<(u64, String)> {
    rows.iter().map(|(g, f)| (*g, (*f).to_owned())).collect()
}

#[test]
fn the_grid_keeps_the_newest_of_each_whole_bucket() {
    // now = 1000; intervals: ages [0,10) all, [10,40) by 10 s, [40,160) by 60 s.
    let r = policy(no_counts(), "1x10s(keep=all) | 3x10s | 2x60s");
    let pts = [
        (0, 800, false),  // age 200: older than the grid
        (1, 850, false),  // age 150, 60 s bucket 840..900 (whole): older of two
        (2, 890, false),  // age 110, same bucket: its newest
        (3, 905, false),  // age 95, bucket 900..960 (whole, ends at now - 40)
        (4, 955, false),  // age 45, same bucket: its newest
        (5, 960, false),  // age 40, bucket 960..1020 still filling: kept
        (6, 968, false),  // age 32, 10 s bucket 960..970: alone
        (7, 975, false),  // age 25, bucket 970..980: alone
        (8, 985, false),  // age 15, bucket 980..990 (ends at now - 10): older
        (9, 989, false),  // age 11, same: newest
        (10, 990, false), // age 10, bucket 990..1000 still filling
        (11, 993, false), // age 7: keep-all
        (12, 999, false), // age 1: keep-all, newest
    ];
    let (base, chain) = vol(&pts);
    let p = plan(&r, &base, &chain, 1000, &BTreeSet::new(), &[]);
    assert_eq!(
        fates(&p),
        want(&[
            (0, "apply"),
            (1, "apply"),
            (2, "grid2"),
            (3, "fold"),
            (4, "grid2"),
            (5, "grid2:filling"),
            (6, "grid1"),
            (7, "grid1"),
            (8, "fold"),
            (9, "grid1"),
            (10, "grid1:filling"),
            (11, "grid0:all"),
            (12, "newest,grid0:all"),
        ])
    );
    assert_eq!(p.apply_to, Some(2));
    assert_eq!(p.merges, vec![(2, 4), (7, 9)]);
    assert!(p.demote.is_empty());
    assert_eq!(p.kept(), 9);
    // Ten seconds later, bucket 990..1000 is whole and 10 (alone in it) stays; 11 and
    // 12 move to the 10 s interval (bucket 990..1000 with 10: 12 is its newest).
    let p = plan(&r, &base, &chain, 1010, &BTreeSet::new(), &[]);
    let f = fates(&p);
    assert_eq!(f[10], (10, "fold".into()));
    assert_eq!(f[11], (11, "fold".into()));
    assert_eq!(f[12], (12, "newest,grid1".into()));
    assert!(p.merges.contains(&(9, 12)), "{:?}", p.merges);
}

#[test]
fn counts_keep_explicit_snapshots_as_pbs_prune_does() {
    let pts = [
        (0, D0, true),
        (1, D0 + H, true),
        (2, D0 + H + 1800, true),
        (3, D0 + 5 * H, true),
        (4, D0 + 86_400 + 2 * H, true),
        (5, D0 + 86_400 + 2 * H + 600, true),
        (6, D0 + 86_400 + 3 * H, true),
        (7, D0 + 86_400 + 3 * H + 300, false),
    ];
    let (base, chain) = vol(&pts);
    let now = D0 + 86_400 + 4 * H;
    let none = BTreeSet::new();
    // keep-last 1: 6. keep-hourly 2: 6's hour is covered; 5 (day 1, 02h) and 3 (day 0,
    // 05h); 4 shares 5's hour; 2 would be a third hour. keep-daily 2: both days are
    // covered already. 7 is the newest.
    let c = Counts {
        last: 1,
        hourly: 2,
        daily: 2,
        ..no_counts()
    };
    let p = plan(&policy(c, "none"), &base, &chain, now, &none, &[]);
    assert_eq!(
        fates(&p),
        want(&[
            (0, "apply"),
            (1, "apply"),
            (2, "apply"),
            (3, "hourly"),
            (4, "fold"),
            (5, "hourly"),
            (6, "last"),
            (7, "newest"),
        ])
    );
    assert_eq!(p.apply_to, Some(3));
    assert_eq!(p.merges, vec![(3, 5)]);
    // 4 is explicit: it is made implicit before the merge.
    assert_eq!(p.demote, vec![4]);
    // keep-daily 2 alone: the newest of each day, 6 and 3.
    let c = Counts {
        daily: 2,
        ..no_counts()
    };
    let p = plan(&policy(c, "none"), &base, &chain, now, &none, &[]);
    assert_eq!(p.apply_to, Some(3));
    assert_eq!(p.merges, vec![(3, 6)]);
    assert_eq!(p.demote, vec![4, 5]);
    // keep-weekly 1 and keep-monthly 1: the newest, once (same week and month).
    let c = Counts {
        weekly: 1,
        monthly: 1,
        ..no_counts()
    };
    let p = plan(&policy(c, "none"), &base, &chain, now, &none, &[]);
    let kept: Vec<(u64, String)> = fates(&p)
        .into_iter()
        .filter(|(_, f)| f != "apply" && f != "fold")
        .collect();
    assert_eq!(kept, want(&[(6, "weekly"), (7, "newest")]));
    // A pinned snapshot is kept and not counted: keep-last 1 then takes 5.
    let c = Counts {
        last: 1,
        ..no_counts()
    };
    let pins = BTreeSet::from([6, 1]);
    let p = plan(&policy(c, "none"), &base, &chain, now, &pins, &[]);
    let f = fates(&p);
    assert_eq!(f[1], (1, "pinned".into()));
    assert_eq!(f[5], (5, "last".into()));
    assert_eq!(f[6], (6, "pinned".into()));
    assert_eq!(p.apply_to, Some(1));
    assert_eq!(p.merges, vec![(1, 5)]);
    assert_eq!(p.demote, vec![2, 3, 4]);
}

#[test]
fn replicas_pins_and_compared_diffs_bound_the_merges() {
    let pts: Vec<(u64, u64, bool)> = (0..=6).map(|g| (g, D0 + g, false)).collect();
    let (base, mut chain) = vol(&pts);
    // 5 --> 6 is a compared diff: nothing merges across it.
    chain[5] = chain[5].clone().with_comp_diff(true);
    let r = policy(no_counts(), "none");
    let p = plan(&r, &base, &chain, D0 + 100, &BTreeSet::from([2]), &[4]);
    assert_eq!(
        fates(&p),
        want(&[
            (0, "apply"),
            (1, "apply"),
            (2, "pinned"),
            (3, "fold"),
            (4, "replica"),
            (5, "unmergeable"),
            (6, "newest"),
        ])
    );
    assert_eq!(p.merges, vec![(2, 4)]);
    assert_eq!(p.apply_to, Some(2));
    // A kept base is not applied; a pin off the chain changes nothing.
    let p = plan(&r, &base, &chain, D0 + 100, &BTreeSet::from([0, 99]), &[]);
    assert_eq!(p.apply_to, None);
    assert_eq!(p.merges, vec![(0, 5)]);
    // An apply in progress: nothing until it is finished.
    let applying = MetaState::new_applying(MetaSnap::clean(0), MetaSnap::clean(2), D0).unwrap();
    let p = plan(&r, &applying, &chain, D0 + 100, &BTreeSet::new(), &[]);
    assert!(p.is_idle() && p.verdicts.is_empty());
}

#[test]
fn long_runs_merge_in_pieces_and_off_keeps_everything() {
    let pts: Vec<(u64, u64, bool)> = (0..=300).map(|g| (g, D0 + g, false)).collect();
    let (base, chain) = vol(&pts);
    let r = policy(no_counts(), "none");
    let p = plan(&r, &base, &chain, D0 + 1000, &BTreeSet::from([0]), &[]);
    assert_eq!(p.merges, vec![(0, 128), (128, 256), (256, 300)]);
    assert_eq!(p.apply_to, None);
    // The ends of the pieces are merged away by the next pass.
    let f = fates(&p);
    assert_eq!(
        (&f[128].1[..], &f[256].1[..], &f[299].1[..]),
        ("fold", "fold", "fold")
    );
    assert_eq!(p.kept(), 2);
    // Without the pin everything but the newest is applied.
    let p = plan(&r, &base, &chain, D0 + 1000, &BTreeSet::new(), &[]);
    assert_eq!((p.apply_to, p.merges.len()), (Some(300), 0));
    let p = plan(
        &Retention::off(),
        &base,
        &chain,
        D0 + 1000,
        &BTreeSet::new(),
        &[],
    );
    assert!(p.is_idle());
    assert_eq!(p.kept(), 301);
}

#[test]
fn the_default_policy_bounds_a_day_of_steady_snapshots() {
    // One implicit snapshot every 5 s and an explicit one every 30 min for a day: after
    // ten minutes' passes (the plan carried out), the count stays under the bound.
    let r = Retention::default();
    let mut pts: Vec<(u64, u64, bool)> = Vec::new();
    let mut peak = 0;
    for (gid, s) in (0..86_400u64).step_by(5).enumerate() {
        pts.push((gid as u64, D0 + s, s % 1800 == 0));
        if s % 600 != 595 {
            continue;
        }
        let now = D0 + s;
        let (base, chain) = vol(&pts);
        let p = plan(&r, &base, &chain, now, &BTreeSet::new(), &[]);
        let keep: Vec<(u64, u64, bool)> = p
            .verdicts
            .iter()
            .zip(&pts)
            .filter(|(v, _)| matches!(v.fate, Fate::Keep(_)))
            .map(|(_, pt)| *pt)
            .collect();
        // Dropped explicit points were demoted: what stays keeps its flag.
        pts = keep;
        peak = peak.max(pts.len() - 1);
    }
    // 2 min of snapshots (24), 60 minutes, 24 hours + 61 minutes, 49 counted, newest.
    let bound = r.bound(24, 0, 0).unwrap() as usize;
    assert!(peak <= bound, "{peak} diffs > {bound}");
    assert!(
        peak > 60,
        "only {peak} diffs: the grid keeps one per minute"
    );
}
