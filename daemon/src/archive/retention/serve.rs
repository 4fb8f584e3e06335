//! The archive's retention calls: `Query::Retention` (the policy in force and what the
//! next pass would do) and `Command::SetRetention` (a volume's own policy and pins,
//! written whole and durably to the volume's `retention` file; `dry_run` only shows the
//! pass under the change). What the policy loop needs of a volume: its settings.

use std::collections::BTreeSet;
use std::path::Path;

use tracing::info;
use walb_kernel::meta::MetaDiff;
use walb_wire::msg::{
    RetentionFate, RetentionPoint, RetentionPolicy, RetentionReport, RetentionSet,
};
use walb_wire::{ErrorCode, Reply, WireError};

use super::{plan, Counts, Fate, Keep, Plan, Retention, VolRetention, FILE, PINS_MAX};
use crate::archive::{persist_error, Archive};
use crate::persist;
use crate::session::{blocking, refuse};
use crate::state::archive::ACTIVE_OR_STOPPED;

/// Reads the retention settings in volume directory `dir` (none: the defaults).
pub fn load(dir: &Path) -> Result<VolRetention, String> {
    let p = dir.join(FILE);
    match persist::read_opt(&p) {
        Err(e) => Err(e.to_string()),
        Ok(None) => Ok(VolRetention::default()),
        Ok(Some(b)) => {
            let text = String::from_utf8(b).map_err(|_| format!("{}: not text", p.display()))?;
            VolRetention::parse(&text).map_err(|e| format!("{}: {e}", p.display()))
        }
    }
}

/// [`load`], refused (naming volume `vol`, the file and what is wrong) if the file
/// cannot be used: the volume's retention is stopped then, never run as if it had no
/// pins.
fn load_or_refuse(vol: &str, dir: &Path) -> Result<VolRetention, WireError> {
    load(dir).map_err(|e| {
        refuse(
            ErrorCode::Internal,
            format!(
                "volume {vol}: its retention settings cannot be used: {e} (no retention pass \
                 runs on it until the file is fixed)"
            ),
        )
    })
}

/// The wire form of a policy.
pub fn to_dto(r: &Retention) -> RetentionPolicy {
    let Counts {
        last,
        hourly,
        daily,
        weekly,
        monthly,
        yearly,
    } = r.counts;
    RetentionPolicy {
        on: r.on,
        keep_last: last,
        keep_hourly: hourly,
        keep_daily: daily,
        keep_weekly: weekly,
        keep_monthly: monthly,
        keep_yearly: yearly,
        grid: r.grid.to_string(),
    }
}

/// The time the diffs of the bound's `W` arrive in: the leading keep-all intervals and
/// one bucket of the interval after them.
pub fn window_s(r: &Retention) -> u64 {
    let mut s = 0u64;
    for iv in &r.grid.0 {
        match iv.keep {
            Keep::All => s = s.saturating_add(iv.span_s()),
            Keep::Newest(_) => return s.saturating_add(iv.len_s),
        }
    }
    s
}

/// What a pass of `r` would do, for the wire.
#[allow(clippy::too_many_arguments)]
pub fn report(
    vol: &str,
    r: &Retention,
    own: &VolRetention,
    chain: &[MetaDiff],
    p: &Plan,
    now: u64,
    dests: u64,
    dry_run: bool,
) -> RetentionReport {
    let since = now.saturating_sub(window_s(r));
    let window = chain.iter().filter(|d| d.timestamp >= since).count() as u64;
    RetentionReport {
        vol: vol.to_owned(),
        policy: to_dto(r),
        own: own.policy.is_some(),
        pinned: own.pinned.iter().copied().collect(),
        now_s: now,
        points: p
            .verdicts
            .iter()
            .map(|v| RetentionPoint {
                gid: v.point.gid,
                timestamp: v.point.ts,
                explicit: v.point.explicit,
                fate: match &v.fate {
                    Fate::Keep(w) => RetentionFate::Keep(w.iter().map(|w| w.to_string()).collect()),
                    Fate::Fold => RetentionFate::Fold,
                    Fate::Apply => RetentionFate::Apply,
                },
            })
            .collect(),
        demote: p.demote.clone(),
        merges: p.merges.clone(),
        apply_to: p.apply_to,
        diffs: chain.len() as u64,
        bound: r.bound(window, own.pinned.len() as u64, dests),
        dry_run,
    }
}

/// `set` applied to `v` (the policy in force being `default` if the volume has none).
pub fn change(
    v: &VolRetention,
    default: &Retention,
    s: &RetentionSet,
) -> Result<VolRetention, String> {
    let mut out = v.clone();
    if s.default {
        out.policy = None;
    }
    if !s.set.is_empty() {
        let mut r = out.effective(default).clone();
        for (k, val) in &s.set {
            r.set(k, val)?;
        }
        out.policy = Some(r);
    }
    out.pinned.extend(s.pin.iter().copied());
    for g in &s.unpin {
        out.pinned.remove(g);
    }
    if out.pinned.len() > PINS_MAX {
        return Err(format!("at most {PINS_MAX} pins"));
    }
    Ok(out)
}

impl Archive {
    /// The archive's default policy (its options).
    pub fn default_retention(&self) -> &Retention {
        &self.cfg.policy.retention
    }

    /// The report of volume `name` under `settings` (its own if `None`).
    fn retention_report(
        &self,
        name: &str,
        settings: Option<VolRetention>,
        dry_run: bool,
    ) -> Result<RetentionReport, WireError> {
        let v = self.vol_in(name, ACTIVE_OR_STOPPED, "retention")?;
        let own = match settings {
            Some(s) => s,
            None => load_or_refuse(name, &v.dir)?,
        };
        let r = own.effective(self.default_retention()).clone();
        let replicas: Vec<u64> = self
            .replica_gids()
            .get(name)
            .map(|m| m.values().copied().collect())
            .unwrap_or_default();
        let (base, chain) = {
            let m = v.meta();
            (
                m.base,
                m.diffs.applicable_chain(m.base.snap_b, Default::default()),
            )
        };
        let now = self.ctx.clock.now_s();
        let p = plan(&r, &base, &chain, now, &own.pinned, &replicas);
        Ok(report(
            name,
            &r,
            &own,
            &chain,
            &p,
            now,
            replicas.len() as u64,
            dry_run,
        ))
    }

    /// `Query::Retention`.
    pub(in crate::archive) fn retention(&self, name: &str) -> Result<Reply, WireError> {
        self.retention_report(name, None, false)
            .map(Reply::Retention)
    }

    /// `Command::SetRetention` (see the module documentation).
    pub(in crate::archive) async fn set_retention(
        &self,
        s: RetentionSet,
    ) -> Result<Reply, WireError> {
        let v = self.vol_in(&s.vol, ACTIVE_OR_STOPPED, "retention")?;
        let now = load_or_refuse(&s.vol, &v.dir)?;
        let next = change(&now, self.default_retention(), &s)
            .map_err(|e| refuse(ErrorCode::BadRequest, format!("retention {}: {e}", s.vol)))?;
        if !s.dry_run && next != now {
            let (path, text) = (v.dir.join(FILE), next.encode());
            blocking(move || persist::write_atomic(&path, text.as_bytes()))
                .await?
                .map_err(persist_error)?;
            let r = next.effective(self.default_retention());
            let pins: BTreeSet<u64> = next.pinned.clone();
            info!(vol = %s.vol, own = next.policy.is_some(), policy = ?r.lines(), ?pins, "retention set");
        }
        self.retention_report(&s.vol, Some(next), s.dry_run)
            .map(Reply::Retention)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(kv: &[(&str, &str)]) -> RetentionSet {
        RetentionSet {
            vol: "v".into(),
            default: false,
            set: kv.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
            pin: Vec::new(),
            unpin: Vec::new(),
            dry_run: false,
        }
    }

    #[test]
    fn changes_start_from_the_policy_in_force_and_default_drops_it() {
        let d = Retention::default();
        let v = change(&VolRetention::default(), &d, &set(&[("keep-last", "2")])).unwrap();
        let mut want = d.clone();
        want.counts.last = 2;
        assert_eq!(v.policy, Some(want.clone()));
        // A second change keeps the first.
        let v = change(&v, &d, &set(&[("keep-grid", "1x5m(keep=all)")])).unwrap();
        want.grid = "1x5m(keep=all)".parse().unwrap();
        assert_eq!(v.policy, Some(want));
        let mut back = set(&[]);
        back.default = true;
        back.pin = vec![4, 9];
        let v = change(&v, &d, &back).unwrap();
        assert_eq!((v.policy.clone(), v.pinned.len()), (None, 2));
        let mut unpin = set(&[]);
        unpin.unpin = vec![4];
        let v = change(&v, &d, &unpin).unwrap();
        assert_eq!(v.pinned, BTreeSet::from([9]));
        assert!(change(&v, &d, &set(&[("keep-grid", "1y")])).is_err());
        assert!(change(&v, &d, &set(&[("keep-often", "1")])).is_err());
    }

    #[test]
    fn the_window_is_the_keep_all_intervals_and_one_bucket_after() {
        assert_eq!(window_s(&Retention::default()), 120);
        let mut r = Retention {
            grid: "24x1h".parse().unwrap(),
            ..Retention::default()
        };
        assert_eq!(window_s(&r), 3600);
        r.grid = "none".parse().unwrap();
        assert_eq!(window_s(&r), 0);
    }

    #[test]
    fn a_corrupt_settings_file_is_named() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(load(d.path()).unwrap(), VolRetention::default());
        std::fs::write(d.path().join(FILE), "keep-last=lots\n").unwrap();
        let e = load(d.path()).unwrap_err();
        assert!(e.contains("retention") && e.contains("line 1"), "{e}");
    }
}
