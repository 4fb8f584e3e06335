//! Property tests of the snapshot model (`walb_kernel::meta`) against a block-level model.
//!
//! The model follows walb-tools' `doc/apply-merge-model.md`: a device of `NB` blocks is
//! written between consecutive gids (a random write history); a block's content is the
//! stamp of its last write. From it we build, step by step, the real images `s_i`, the
//! block diffs `d_i` and the metadata `ms_i`/`md_i`:
//!
//! - rule 1 (wlog): `md_i = |B|-->|B'|`, `d_i = log_diff(B, B')`, `s_{i+1} = s_i << d_i`,
//!   `ms_{i+1} = |B', max(B', ms_i.E)|`;
//! - rule 2 (hash backup): `s_{i+1}` = a dirty copy taken over `[B', E']` after `ms_i.E`,
//!   `d_i = compared_diff(s_i, s_{i+1})`, `md_i = ms_i-->|B',E'|`.
//!
//! The properties tie the kernel's metadata answers to the block contents: an image is
//! always consistent with its snapshot (every block from some gid in `[B, E]`), a clean
//! snapshot's image equals the device at that gid, merged diffs apply like their parts
//! (b1, b2), a dirty image becomes clean exactly when the diffs pass its end (b3), compared
//! diffs apply to their one source (b4), and the diff manager's restore/scan/apply lists
//! rebuild the right images before and after merges and garbage collection.

use std::collections::HashMap;

use proptest::collection::vec;
use proptest::prelude::*;
use walb_kernel::meta::timestamp::MAX_TIMESTAMP;
use walb_kernel::meta::{
    diff_file_name, parse_diff_file_name, ChainBound, DiffManager, MergeLimits, MetaDiff,
    MetaLsidGid, MetaSnap, MetaState,
};

/// Blocks of the modelled device.
const NB: usize = 8;
/// Length of the write history in gid steps (larger than any gid a scenario reaches).
const HIST: usize = 200;

/// Content of each block: the stamp (gid after the write) of its last write, 0 initially.
type Image = Vec<u64>;
/// A block diff: new content for some blocks.
type Blocks = Vec<Option<u64>>;

/// Bit `a` of `writes[g]` set: block `a` was written between gid `g` and `g + 1`.
#[derive(Debug, Clone)]
struct History {
    writes: Vec<u8>,
}

impl History {
    fn written(&self, a: usize, g: u64) -> bool {
        usize::try_from(g)
            .ok()
            .and_then(|g| self.writes.get(g))
            .is_some_and(|w| w & (1 << a) != 0)
    }

    /// Content of block `a` at gid `t`.
    fn value(&self, a: usize, t: u64) -> u64 {
        (0..t)
            .rev()
            .find(|&g| self.written(a, g))
            .map_or(0, |g| g + 1)
    }

    /// The clean image at gid `t`.
    fn clean(&self, t: u64) -> Image {
        (0..NB).map(|a| self.value(a, t)).collect()
    }

    /// A dirty copy over `[b, b + len]`: block `a` read at `b + picks[a] % (len + 1)`.
    fn dirty(&self, b: u64, len: u64, picks: &[u8]) -> Image {
        (0..NB)
            .map(|a| self.value(a, b + u64::from(picks[a]) % (len + 1)))
            .collect()
    }

    /// True if every block of `img` holds its content of some gid in `[B, E]` of `s`.
    fn consistent(&self, img: &Image, s: MetaSnap) -> bool {
        (0..NB).all(|a| (s.gid_b..=s.gid_e).any(|t| self.value(a, t) == img[a]))
    }

    /// The log diff of the writes between gids `z` and `w`.
    fn log_diff(&self, z: u64, w: u64) -> Blocks {
        (0..NB)
            .map(|a| (z..w).any(|g| self.written(a, g)).then(|| self.value(a, w)))
            .collect()
    }
}

fn apply_blocks(img: &Image, d: &Blocks) -> Image {
    img.iter().zip(d).map(|(&s, &x)| x.unwrap_or(s)).collect()
}

fn merge_blocks(d0: &Blocks, d1: &Blocks) -> Blocks {
    d0.iter().zip(d1).map(|(&a, &b)| b.or(a)).collect()
}

fn fold_blocks(ds: &[Blocks]) -> Blocks {
    ds.iter()
        .fold(vec![None; NB], |acc, d| merge_blocks(&acc, d))
}

fn compared(s0: &Image, s1: &Image) -> Blocks {
    s0.iter()
        .zip(s1)
        .map(|(&a, &b)| (a != b).then_some(b))
        .collect()
}

#[derive(Debug, Clone)]
enum Step {
    Log {
        adv: u64,
        mergeable: bool,
    },
    Hash {
        gap: u64,
        len: u64,
        picks: Vec<u8>,
        mergeable: bool,
    },
}

/// The sequences `ms_i`, `s_i`, `md_i`, `d_i` of one generated history.
#[derive(Debug, Clone)]
struct Scenario {
    hist: History,
    ms: Vec<MetaSnap>,
    imgs: Vec<Image>,
    md: Vec<MetaDiff>,
    bd: Vec<Blocks>,
}

impl Scenario {
    fn build(hist: History, x: u64, picks0: &[u8], steps: &[Step]) -> Scenario {
        let ms0 = MetaSnap::new(0, x).expect("x >= 0");
        let img0 = hist.dirty(0, x, picks0);
        let mut sc = Scenario {
            hist,
            ms: vec![ms0],
            imgs: vec![img0],
            md: Vec::new(),
            bd: Vec::new(),
        };
        for (i, step) in steps.iter().enumerate() {
            let ms = sc.ms[i];
            let img = &sc.imgs[i];
            let ts = 1000 + i as u64;
            let (next, md, d, next_img) = match step {
                Step::Log { adv, mergeable } => {
                    let b2 = ms.gid_b + adv;
                    let next = MetaSnap::new(b2, b2.max(ms.gid_e)).expect("ordered");
                    let md = MetaDiff::clean(ms.gid_b, b2)
                        .expect("progress")
                        .with_mergeable(*mergeable);
                    let d = sc.hist.log_diff(ms.gid_b, b2);
                    let next_img = apply_blocks(img, &d);
                    (next, md, d, next_img)
                }
                Step::Hash {
                    gap,
                    len,
                    picks,
                    mergeable,
                } => {
                    let b2 = ms.gid_e + gap;
                    let next = MetaSnap::new(b2, b2 + len).expect("ordered");
                    let md = MetaDiff::new(ms, next)
                        .expect("progress")
                        .with_mergeable(*mergeable);
                    let next_img = sc.hist.dirty(b2, *len, picks);
                    let d = compared(img, &next_img);
                    (next, md, d, next_img)
                }
            };
            sc.ms.push(next);
            sc.imgs.push(next_img);
            sc.md
                .push(md.with_timestamp(ts).with_data_size(10 + i as u64));
            sc.bd.push(d);
        }
        sc
    }

    fn n(&self) -> usize {
        self.md.len()
    }

    /// Merged block diff `d_{k,l}`.
    fn blocks(&self, k: usize, l: usize) -> Blocks {
        fold_blocks(&self.bd[k..l])
    }

    /// Index `i` with `ms_i.gid_b == gid`.
    fn index_of_gid(&self, gid: u64) -> Option<usize> {
        self.ms.iter().position(|s| s.gid_b == gid)
    }

    fn all_mergeable(mut self) -> Self {
        for d in &mut self.md {
            d.mergeable = true;
        }
        self
    }
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (1..=5u64, prop::bool::weighted(0.8))
            .prop_map(|(adv, mergeable)| Step::Log { adv, mergeable }),
        1 => (1..=3u64, 1..=6u64, vec(any::<u8>(), NB), prop::bool::weighted(0.8)).prop_map(
            |(gap, len, picks, mergeable)| Step::Hash { gap, len, picks, mergeable }
        ),
    ]
}

fn arb_history() -> impl Strategy<Value = History> {
    // About a quarter of the blocks are written per gid step.
    vec((any::<u8>(), any::<u8>()), HIST).prop_map(|w| History {
        writes: w.into_iter().map(|(a, b)| a & b).collect(),
    })
}

fn arb_scenario() -> impl Strategy<Value = Scenario> {
    (
        arb_history(),
        0..=10u64,
        vec(any::<u8>(), NB),
        vec(arb_step(), 1..=12),
    )
        .prop_map(|(h, x, picks, steps)| Scenario::build(h, x, &picks, &steps))
}

/// The image reached by applying the block diffs of `list` (looked up by range) to `img`.
fn apply_list(
    map: &HashMap<(MetaSnap, MetaSnap), Blocks>,
    img: &Image,
    list: &[MetaDiff],
) -> Image {
    list.iter().fold(img.clone(), |acc, d| {
        apply_blocks(
            &acc,
            map.get(&d.key()).expect("every managed diff has blocks"),
        )
    })
}

fn arb_gid() -> impl Strategy<Value = u64> {
    prop_oneof![0..100u64, any::<u64>(), (u64::MAX - 100)..=u64::MAX]
}

fn arb_delta() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), 0..10u64, any::<u64>()]
}

fn arb_diff() -> impl Strategy<Value = MetaDiff> {
    (
        arb_gid(),
        arb_delta(),
        arb_delta(),
        arb_delta(),
        any::<bool>(),
        any::<bool>(),
        0..=MAX_TIMESTAMP,
        any::<u64>(),
    )
        .prop_filter_map("progress rule", |(b0, y, z, w, m, c, ts, size)| {
            let b1 = b0.saturating_add(y);
            let e0 = b0.saturating_add(1).saturating_add(z);
            let e1 = e0.max(b1).saturating_add(w);
            let d = MetaDiff::new(MetaSnap::new(b0, b1).ok()?, MetaSnap::new(e0, e1).ok()?).ok()?;
            Some(
                d.with_mergeable(m)
                    .with_comp_diff(c)
                    .with_timestamp(ts)
                    .with_data_size(size),
            )
        })
}

fn arb_snap() -> impl Strategy<Value = MetaSnap> {
    (arb_gid(), arb_delta()).prop_map(|(b, d)| MetaSnap {
        gid_b: b,
        gid_e: b.saturating_add(d),
    })
}

fn arb_state() -> impl Strategy<Value = MetaState> {
    (arb_diff(), any::<bool>(), 0..=MAX_TIMESTAMP).prop_map(|(d, applying, ts)| {
        if applying {
            MetaState::new_applying(d.snap_b, d.snap_e, ts).expect("progress")
        } else {
            MetaState::new(d.snap_b, ts)
        }
    })
}

/// The properties (module named so that `cargo test meta` selects them).
mod meta {
    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Every image is consistent with its snapshot, clean snapshots are exact device
        /// images, and the kernel's apply produces the model's next snapshot.
        #[test]
        fn images_match_snapshots(sc in arb_scenario()) {
            for i in 0..=sc.n() {
                prop_assert!(sc.hist.consistent(&sc.imgs[i], sc.ms[i]), "s_{} vs {}", i, sc.ms[i]);
                if sc.ms[i].is_clean() {
                    prop_assert_eq!(&sc.imgs[i], &sc.hist.clean(sc.ms[i].gid_b));
                }
            }
            for i in 0..sc.n() {
                prop_assert_eq!(sc.ms[i].apply(&sc.md[i]).ok(), Some(sc.ms[i + 1]));
                prop_assert_eq!(apply_blocks(&sc.imgs[i], &sc.bd[i]), sc.imgs[i + 1].clone());
            }
            prop_assert_eq!(sc.ms[0].apply_all(&sc.md).ok(), Some(sc.ms[sc.n()]));
        }

        /// (b3) A dirty image `|B,x|` fed with log diffs stays dirty until the diffs pass `x`,
        /// then it is clean and equals the device at that gid.
        #[test]
        fn dirty_image_becomes_clean(
            hist in arb_history(),
            x in 1..=30u64,
            picks in vec(any::<u8>(), NB),
            advs in vec(1..=6u64, 1..=12),
        ) {
            let mut ms = MetaSnap::new(0, x).expect("ordered");
            let mut img = hist.dirty(0, x, &picks);
            for adv in advs {
                let b2 = ms.gid_b + adv;
                let d = MetaDiff::clean(ms.gid_b, b2).expect("progress");
                let next = ms.apply(&d).expect("applicable");
                img = apply_blocks(&img, &hist.log_diff(ms.gid_b, b2));
                prop_assert_eq!(next.gid_b, b2);
                prop_assert_eq!(next.is_clean(), b2 >= x, "{} << {:#} = {}", ms, d, next);
                prop_assert!(hist.consistent(&img, next));
                if next.is_clean() {
                    prop_assert_eq!(&img, &hist.clean(b2));
                }
                ms = next;
            }
        }

        /// (b1) Merging is associative in metadata and block content, and two merged diffs
        /// `md_{i,j}`, `md_{k,l}` merge iff `i <= k <= j < l`, giving `md_{i,l}`.
        #[test]
        fn merge_is_associative(sc in arb_scenario()) {
            let n = sc.n();
            // A run merges iff every diff after its first is mergeable.
            let mut merged: HashMap<(usize, usize), MetaDiff> = HashMap::new();
            for i in 0..n {
                for j in i + 1..=n {
                    let m = MetaDiff::merge_all(&sc.md[i..j]);
                    prop_assert_eq!(m.is_ok(), sc.md[i + 1..j].iter().all(|d| d.mergeable));
                    if let Ok(m) = m {
                        prop_assert_eq!(m.snap_b, sc.md[i].snap_b);
                        prop_assert_eq!(m.timestamp, sc.md[j - 1].timestamp);
                        prop_assert_eq!(m.mergeable, sc.md[i].mergeable);
                        merged.insert((i, j), m);
                    }
                }
            }
            for (&(i, j), a) in &merged {
                for (&(k, l), b) in &merged {
                    let expect = i <= k && k <= j && j < l && sc.md[k].mergeable;
                    prop_assert_eq!(a.can_merge(b), expect, "md_{{{},{}}} ++ md_{{{},{}}}", i, j, k, l);
                    if expect {
                        let m = a.merge(b).expect("can_merge");
                        prop_assert!(m.same_range(&merged[&(i, l)]));
                        prop_assert_eq!(
                            merge_blocks(&sc.blocks(i, j), &sc.blocks(k, l)),
                            sc.blocks(i, l)
                        );
                    }
                }
            }
            // (A ++ B) ++ C == A ++ (B ++ C) on consecutive runs, all made mergeable.
            let sc = sc.all_mergeable();
            for a in 0..n {
                for b in a + 1..n {
                    for c in b + 1..n {
                        let x = MetaDiff::merge_all(&sc.md[a..b]).expect("run");
                        let y = MetaDiff::merge_all(&sc.md[b..c]).expect("run");
                        let z = MetaDiff::merge_all(&sc.md[c..n]).expect("run");
                        let left = x.merge(&y).and_then(|xy| xy.merge(&z)).expect("left");
                        let right = y.merge(&z).and_then(|yz| x.merge(&yz)).expect("right");
                        prop_assert_eq!(&left, &right);
                        let (bx, by, bz) = (sc.blocks(a, b), sc.blocks(b, c), sc.blocks(c, n));
                        prop_assert_eq!(
                            merge_blocks(&merge_blocks(&bx, &by), &bz),
                            merge_blocks(&bx, &merge_blocks(&by, &bz))
                        );
                    }
                }
            }
        }

        /// (b2) `md_{k,l}` applies exactly to `ms_i` with `k <= i < l`, and gives `ms_l`; the
        /// same holds for the block content, and equals applying the parts in order.
        #[test]
        fn merged_diff_applies_like_its_parts(sc in arb_scenario()) {
            let sc = sc.all_mergeable();
            let n = sc.n();
            for k in 0..n {
                for l in k + 1..=n {
                    let m = MetaDiff::merge_all(&sc.md[k..l]).expect("all mergeable");
                    let blocks = sc.blocks(k, l);
                    prop_assert_eq!(sc.ms[k].apply(&m).ok(), sc.ms[k].apply_all(&sc.md[k..l]).ok());
                    for i in 0..=n {
                        let ok = sc.ms[i].can_apply(&m);
                        prop_assert_eq!(ok, k <= i && i < l, "{} << {:#}", sc.ms[i], m);
                        if ok {
                            prop_assert_eq!(sc.ms[i].apply(&m).ok(), Some(sc.ms[l]));
                            prop_assert_eq!(apply_blocks(&sc.imgs[i], &blocks), sc.imgs[l].clone());
                        }
                        // An apply in progress <ms_i --> ms_j> also needs the diff to reach j.
                        for j in i + 1..=n {
                            let st = MetaState::new_applying(sc.ms[i], sc.ms[j], 0).expect("progress");
                            let ok = st.can_apply(&m);
                            prop_assert_eq!(ok, k <= i && i < l && j <= l, "{} << {:#}", st, m);
                            prop_assert_eq!(ok, st.can_apply_all(std::slice::from_ref(&m)));
                            if ok {
                                prop_assert_eq!(st.apply(&m).map(|s| s.snap_b).ok(), Some(sc.ms[l]));
                            }
                        }
                    }
                }
            }
        }

        /// (b4) A compared diff `ms_i-->ms_j` applies to `ms_i` only, gives `ms_j` (and the
        /// image `s_j`), and never merges.
        #[test]
        fn compared_diff_has_one_source(sc in arb_scenario()) {
            let n = sc.n();
            for i in 0..n {
                for j in i + 1..=n {
                    let c = MetaDiff::new(sc.ms[i], sc.ms[j])
                        .expect("progress")
                        .with_comp_diff(true)
                        .with_mergeable(true);
                    for k in 0..=n {
                        prop_assert_eq!(sc.ms[k].can_apply(&c), k == i);
                    }
                    prop_assert_eq!(sc.ms[i].apply(&c).ok(), Some(sc.ms[j]));
                    let d = compared(&sc.imgs[i], &sc.imgs[j]);
                    prop_assert_eq!(apply_blocks(&sc.imgs[i], &d), sc.imgs[j].clone());
                    for x in &sc.md {
                        prop_assert!(!x.can_merge(&c) && !c.can_merge(x));
                    }
                }
            }
        }

        /// The diff manager over the chain plus merges: restorable points are clean and
        /// restore to the device image, explicit points survive merges, gc never removes a
        /// chain diff, scans rebuild the right images, and an interrupted apply can always be
        /// finished to the right image.
        #[test]
        fn manager_answers_match_images(
            sc in arb_scenario(),
            ops in vec((any::<u8>(), any::<bool>()), 0..8),
            pick in (any::<u8>(), any::<u8>(), any::<u8>()),
        ) {
            let n = sc.n();
            let latest = sc.ms[n];
            let mut map: HashMap<(MetaSnap, MetaSnap), Blocks> = HashMap::new();
            for (d, b) in sc.md.iter().zip(&sc.bd) {
                map.insert(d.key(), b.clone());
            }
            let mut mgr = DiffManager::from_diffs(sc.md.iter().cloned()).expect("distinct");
            let base = MetaState::new(sc.ms[0], 0);
            prop_assert_eq!(mgr.applicable_chain(sc.ms[0], ChainBound::NONE), sc.md.clone());

            let explicit0 = mgr.restorable(&base, false);
            let all0 = mgr.restorable(&base, true);
            let clean_gids: Vec<u64> = sc.ms.iter().filter(|s| s.is_clean()).map(|s| s.gid_b).collect();
            prop_assert_eq!(all0.iter().map(|p| p.gid).collect::<Vec<_>>(), clean_gids);

            for (seed, do_gc) in ops {
                let g = u64::from(seed) % (latest.gid_b + 1);
                let run = mgr.mergeable_from(g, &MergeLimits::default());
                if run.len() >= 2 {
                    let m = MetaDiff::merge_all(&run).expect("mergeable run");
                    prop_assert!(run.iter().skip(1).all(|d| d.mergeable));
                    if !mgr.exists(&m) {
                        let parts: Vec<Blocks> = run.iter().map(|d| map[&d.key()].clone()).collect();
                        map.insert(m.key(), fold_blocks(&parts));
                        mgr.add(m).expect("new diff");
                    }
                }
                let chain = mgr.applicable_chain(sc.ms[0], ChainBound::NONE);
                prop_assert_eq!(sc.ms[0].apply_all(&chain).ok(), Some(latest));
                prop_assert_eq!(apply_list(&map, &sc.imgs[0], &chain), sc.imgs[n].clone());
                if do_gc {
                    let removed = mgr.gc(sc.ms[0]);
                    for r in &removed {
                        prop_assert!(!chain.iter().any(|c| c.same_range(r)), "gc removed {:#}", r);
                    }
                    prop_assert_eq!(mgr.applicable_chain(sc.ms[0], ChainBound::NONE), chain.clone());
                    prop_assert_eq!(mgr.len(), chain.len());
                }
            }
            prop_assert_eq!(mgr.latest_snapshot(&base), latest);

            // Explicit points never disappear; all points are clean and restore exactly.
            prop_assert_eq!(mgr.restorable(&base, false), explicit0);
            let all = mgr.restorable(&base, true);
            for p in &all {
                prop_assert!(all0.contains(p));
                let i = sc.index_of_gid(p.gid).expect("a snapshot of the chain");
                prop_assert!(sc.ms[i].is_clean());
                let ts = if i == 0 { base.timestamp } else { sc.md[i - 1].timestamp };
                prop_assert_eq!(p.timestamp, ts);
                let list = mgr.diffs_to_restore(&base, p.gid, 0).expect("restorable");
                prop_assert_eq!(apply_list(&map, &sc.imgs[0], &list), sc.hist.clean(p.gid));
            }
            for s in &sc.ms {
                if s.is_dirty() {
                    prop_assert!(mgr.diffs_to_restore(&base, s.gid_b, 0).is_none());
                }
            }
            // Scans reach exactly the snapshot asked for, clean or dirty.
            let mut points = vec![sc.ms[0]];
            let chain = mgr.applicable_chain(sc.ms[0], ChainBound::NONE);
            for d in &chain {
                let s = points[points.len() - 1].apply(d).expect("chain");
                points.push(s);
            }
            for g in 0..=latest.gid_b {
                let scan = mgr.diffs_to_scan(&base, g, 0);
                prop_assert_eq!(scan.is_some(), points.iter().any(|s| s.gid_b == g));
                if let Some(list) = scan {
                    let i = sc.index_of_gid(g).expect("a snapshot of the chain");
                    prop_assert_eq!(apply_list(&map, &sc.imgs[0], &list), sc.imgs[i].clone());
                }
            }

            // An apply of md_i..md_j was interrupted: any mix of s_i and s_j blocks.
            let i = usize::from(pick.0) % n;
            let j = i + 1 + usize::from(pick.1) % (n - i);
            let st = MetaState::new(sc.ms[i], 0).begin_applying(&sc.md[i..j]).expect("chain");
            let dij = sc.blocks(i, j);
            let partial: Image = (0..NB)
                .map(|a| match dij[a] {
                    Some(v) if pick.2 & (1 << a) != 0 => v,
                    _ => sc.imgs[i][a],
                })
                .collect();
            let min = mgr.minimum_applicable(&st);
            prop_assert!(st.can_apply_all(&min), "{} with {:?}", st, min);
            let done = st.apply_all(&min).expect("finishes");
            let l = sc.index_of_gid(done.snap_b.gid_b).expect("a snapshot of the chain");
            prop_assert!(l >= j);
            prop_assert_eq!(done.snap_b, sc.ms[l]);
            prop_assert_eq!(apply_list(&map, &partial, &min), sc.imgs[l].clone());
            let list = mgr.diffs_to_apply(&st, latest.gid_b, 0);
            prop_assert_eq!(st.apply_all(&list).map(|s| s.snap_b).ok(), Some(latest));
            prop_assert_eq!(apply_list(&map, &partial, &list), sc.imgs[n].clone());
            let capped = mgr.diffs_to_apply(&st, latest.gid_b, 1);
            prop_assert!(capped.len() >= min.len().max(1));
            prop_assert!(st.can_apply_all(&capped));
            // Apply rounds until the target: each round's list is applicable and progresses.
            let mut cur = st;
            let mut img = partial;
            for _ in 0..=n {
                if !cur.applying && cur.snap_b == latest {
                    break;
                }
                let round = mgr.diffs_to_apply(&cur, latest.gid_b, 2);
                prop_assert!(!round.is_empty());
                let half = cur.begin_applying(&round).expect("applicable round");
                prop_assert!(half.applying);
                cur = half.end_applying(&round).expect("finishes");
                img = apply_list(&map, &img, &round);
                let k = sc.index_of_gid(cur.snap_b.gid_b).expect("chain point");
                prop_assert_eq!(&img, &sc.imgs[k]);
                mgr.erase_before_gid(cur.snap_b.gid_b);
            }
            prop_assert_eq!(cur.snap_b, latest);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// wdiff names, diff-list lines and the byte form round-trip.
        #[test]
        fn diff_forms_round_trip(d in arb_diff(), junk in vec(any::<u8>(), 0..8)) {
            let name = diff_file_name(&d);
            let p = parse_diff_file_name(&name).expect("own name");
            prop_assert!(p.same_range(&d), "{} -> {:#}", name, p);
            prop_assert_eq!((p.mergeable, p.comp_diff, p.timestamp), (d.mergeable, d.comp_diff, d.timestamp));
            prop_assert_eq!(name.split('-').count(), if d.is_clean() { 4 } else { 6 } + usize::from(!d.mergeable) + usize::from(!d.comp_diff));

            let line = d.to_string();
            prop_assert_eq!(line.parse::<MetaDiff>().ok(), Some(d.clone()));
            prop_assert_eq!(format!("{:#}", d), format!("{}-->{}", d.snap_b, d.snap_e));

            let bytes = d.to_bytes();
            prop_assert_eq!(bytes.len(), MetaDiff::ENCODED_LEN);
            prop_assert_eq!(MetaDiff::from_bytes(&bytes).ok(), Some(d.clone()));
            for cut in 0..bytes.len() {
                prop_assert!(MetaDiff::from_bytes(&bytes[..cut]).expect_err("short").is_incomplete());
            }
            let mut longer = bytes.clone();
            longer.extend_from_slice(&junk);
            prop_assert_eq!(MetaDiff::read_prefix(&longer).ok(), Some((d.clone(), MetaDiff::ENCODED_LEN)));
            prop_assert_eq!(MetaDiff::from_bytes(&longer).is_ok(), junk.is_empty());
        }

        /// Snapshots, states and lsid/gid records round-trip in text and bytes.
        #[test]
        fn other_forms_round_trip(s in arb_snap(), st in arb_state(), lg in (any::<u64>(), any::<u64>(), any::<bool>(), any::<u64>())) {
            prop_assert_eq!(s.to_string().parse::<MetaSnap>().ok(), Some(s));
            prop_assert_eq!(MetaSnap::from_bytes(&s.to_bytes()).ok(), Some(s));
            prop_assert_eq!(st.to_string().parse::<MetaState>().ok(), Some(st));
            prop_assert_eq!(MetaState::from_bytes(&st.to_bytes()).ok(), Some(st));
            let lg = MetaLsidGid::new(lg.0, lg.1, lg.2, lg.3);
            prop_assert_eq!(MetaLsidGid::from_bytes(&lg.to_bytes()).ok(), Some(lg));
        }

        /// Arbitrary bytes and text never panic the decoders; accepted bytes are canonical.
        #[test]
        fn decoders_never_panic(bytes in vec(any::<u8>(), 0..64), text in ".{0,40}", lead in 0u8..4) {
            let mut b = bytes;
            // Often start with a valid preamble so the field checks are reached.
            if let Some(first) = b.first_mut() {
                *first = 0x11 + lead;
            }
            if let Some(second) = b.get_mut(1) {
                *second = 0x03;
            }
            if let Ok(x) = MetaSnap::from_bytes(&b) {
                prop_assert_eq!(x.to_bytes(), b.clone());
            }
            if let Ok(x) = MetaDiff::from_bytes(&b) {
                prop_assert_eq!(x.to_bytes(), b.clone());
            }
            if let Ok(x) = MetaState::from_bytes(&b) {
                prop_assert_eq!(x.to_bytes(), b.clone());
            }
            if let Ok(x) = MetaLsidGid::from_bytes(&b) {
                prop_assert_eq!(x.to_bytes(), b.clone());
            }
            let _ = text.parse::<MetaSnap>();
            let _ = text.parse::<MetaDiff>();
            let _ = text.parse::<MetaState>();
            let _ = parse_diff_file_name(&text);
            let _ = parse_diff_file_name(&format!("20170524050040-M-{text}.wdiff"));
        }

        /// Near the top of the gid range nothing overflows and the chain is still found.
        #[test]
        fn chain_near_u64_max(steps in vec(1..=1000u64, 1..10)) {
            let total: u64 = steps.iter().sum();
            let mut g = u64::MAX - total;
            let mut mgr = DiffManager::new();
            let start = MetaSnap::clean(g);
            for s in &steps {
                mgr.add(MetaDiff::clean(g, g + s).expect("progress").with_mergeable(true)).expect("add");
                g += s;
            }
            prop_assert_eq!(mgr.latest_snapshot(&MetaState::new(start, 0)), MetaSnap::clean(u64::MAX));
            prop_assert_eq!(mgr.mergeable_from(0, &MergeLimits::default()).len(), steps.len());
            prop_assert_eq!(mgr.count_range(0, u64::MAX).ok(), Some(steps.len()));
            prop_assert_eq!(mgr.erase_before_gid(u64::MAX).len(), steps.len());
        }
    }
}
