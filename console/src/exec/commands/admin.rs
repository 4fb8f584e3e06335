//! Daemon administration and queries: `gc-diff`, `set-full-scan-bps`, `get` (its targets
//! are a table, [`GET_TARGETS`]), `metrics`, `shutdown`.

use std::time::Duration;

use walb_wire::msg::{LogUsageRow, RestoredImage, TsDeltaRow, VolActions, VolBase};
use walb_wire::Role;

use super::spec::*;
use super::ExecCmd;
use crate::client::{Client, ClientError};
use crate::exec::output::Outcome;

/// A parsed command of this family (daemon administration or a query).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminCmd {
    /// `gc-diff ARCHIVE VOL`.
    GcDiff {
        /// Archive.
        archive: String,
        /// Volume.
        vol: String,
    },
    /// `set-full-scan-bps STORAGE BPS`.
    SetFullScanBps {
        /// Storage.
        node: String,
        /// Bytes per second, 0 = no limit.
        bps: u64,
    },
    /// `get NODE TARGET [ARGS]`.
    Get {
        /// Node.
        node: String,
        /// Target.
        target: GetTarget,
    },
    /// `metrics [--out FILE] [--sample S]`.
    Metrics {
        /// Write the text atomically to this file instead of stdout.
        out: Option<std::path::PathBuf>,
        /// How long to listen to the event streams for throughputs.
        sample: Duration,
    },
    /// `shutdown NODE [graceful|force]`.
    Shutdown {
        /// Node.
        node: String,
        /// Abort running work.
        force: bool,
    },
}

/// This family's rows of the command table, in help order.
pub(super) const ROWS: &[CommandSpec] = &[
    // gc-diff and set-full-scan-bps.
    CommandSpec {
        name: "gc-diff",
        args: "ARCHIVE VOL",
        about: "delete the diffs no restorable snapshot needs any more (unreachable from the base)",
        options: &[],
        parse: |a| {
            Ok(ExecCmd::Admin(AdminCmd::GcDiff {
                archive: a.req("ARCHIVE")?,
                vol: a.req("VOL")?,
            }))
        },
    },
    CommandSpec {
        name: "set-full-scan-bps",
        args: "STORAGE BPS",
        about: "limit the device reads of full and hash backups, bytes per second (k, m, g suffixes; 0 = no limit), until the daemon restarts",
        options: &[],
        parse: |a| {
            let node = a.req("STORAGE")?;
            let bps = a.req("BPS")?;
            Ok(ExecCmd::Admin(AdminCmd::SetFullScanBps {
                node,
                bps: bytes_per_second(&bps)?,
            }))
        },
    },
    CommandSpec {
        name: "get",
        args: "NODE TARGET [ARGS...]",
        about: "one query (walbc get targets; `help get` lists them)",
        options: &[],
        parse: |a| {
            let node = a.req("NODE")?;
            let target = a.req("TARGET")?;
            let target = GetTarget::parse(&target, a)?;
            Ok(ExecCmd::Admin(AdminCmd::Get { node, target }))
        },
    },
    CommandSpec {
        name: "metrics",
        args: "",
        about: "the cluster's live data in Prometheus text format (for node_exporter's textfile collector)",
        options: &[OPT_OUT, OPT_SAMPLE],
        parse: |a| {
            Ok(ExecCmd::Admin(AdminCmd::Metrics {
                out: a.value_str("--out").map(std::path::PathBuf::from),
                sample: a.seconds("--sample", Duration::from_secs(2))?,
            }))
        },
    },
    CommandSpec {
        name: "shutdown",
        args: "NODE [graceful|force]",
        about: "stop a daemon",
        options: &[],
        parse: |a| {
            let node = a.req("NODE")?;
            let force = match a.opt().as_deref() {
                None | Some("graceful") => false,
                Some("force") => true,
                Some(m) => return Err(format!("unknown shutdown mode {m:?} (graceful or force)")),
            };
            Ok(ExecCmd::Admin(AdminCmd::Shutdown { node, force }))
        },
    },
];

/// A `get` target (walbc's §2.2 targets the daemons answer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GetTarget {
    /// `state VOL`.
    State(String),
    /// `host-type`.
    HostType,
    /// `vol`.
    Vol,
    /// `pid`.
    Pid,
    /// `version`.
    Version,
    /// `latest-snap [VOL]`.
    LatestSnap(Option<String>),
    /// `log-usage [VOL]`.
    LogUsage(Option<String>),
    /// `is-overflow VOL`.
    IsOverflow(String),
    /// `uuid VOL`.
    Uuid(String),
    /// `is-wdiff-send-error VOL ARCHIVE`.
    IsWdiffSendError(String, String),
    /// `diff VOL [GIDB [GIDE]]` (archive) or `diff VOL [ARCHIVE]` (proxy queue).
    Diff(String, Vec<String>),
    /// `applicable-diff VOL [MAXGID]`.
    ApplicableDiff(String, Option<u64>),
    /// `restorable VOL [all]`.
    Restorable(String, bool),
    /// `restored VOL`.
    Restored(String),
    /// `base VOL`.
    Base(String),
    /// `vol-size VOL`.
    VolSize(String),
    /// `progress VOL`.
    Progress(String),
    /// `exists-base-image VOL`.
    ExistsBaseImage(String),
    /// `num-action VOL ACTION`.
    NumAction(String, String),
    /// `archive-uuid VOL`.
    ArchiveUuid(String),
    /// `meta-state VOL [0|1 [GID]]`.
    MetaState(String, bool, Option<u64>),
    /// `ts-delta`.
    TsDelta,
    /// `num-diff VOL [GIDB [GIDE]]`.
    NumDiff(String, Option<u64>, Option<u64>),
    /// `total-diff-size VOL [GIDB [GIDE]]`.
    TotalDiffSize(String, Option<u64>, Option<u64>),
    /// `exists-diff VOL G0 G1 G2 G3`: the diff `|G0,G1|-->|G2,G3|`.
    ExistsDiff(String, [u64; 4]),
    /// `all-actions`.
    AllActions,
    /// `base-all`.
    BaseAll,
    /// `meta-snap VOL [GID]`.
    MetaSnap(String, Option<u64>),
}

const SPA: &[Role] = &[Role::Storage, Role::Proxy, Role::Archive];

const S: &[Role] = &[Role::Storage];

const P: &[Role] = &[Role::Proxy];

const A: &[Role] = &[Role::Archive];

const SA: &[Role] = &[Role::Storage, Role::Archive];

const PA: &[Role] = &[Role::Proxy, Role::Archive];

/// The `get` targets: name, arguments, the roles that answer it.
pub static GET_TARGETS: &[(&str, &str, &[Role])] = &[
    ("state", "VOL", SPA),
    ("host-type", "", SPA),
    ("vol", "", SPA),
    ("pid", "", SPA),
    ("version", "", SPA),
    ("latest-snap", "[VOL]", SPA),
    ("log-usage", "[VOL]", S),
    ("is-overflow", "VOL", S),
    ("uuid", "VOL", SA),
    ("is-wdiff-send-error", "VOL ARCHIVE", P),
    (
        "diff",
        "VOL [GIDB [GIDE]] (archive) | VOL [ARCHIVE] (proxy)",
        PA,
    ),
    ("applicable-diff", "VOL [MAXGID]", A),
    ("restorable", "VOL [all]", A),
    ("restored", "VOL", A),
    ("base", "VOL", A),
    ("vol-size", "VOL", A),
    ("progress", "VOL", A),
    ("exists-base-image", "VOL", A),
    (
        "num-action",
        "VOL Merge|Apply|Restore|ReplSyncAsClient|Resize",
        A,
    ),
    ("archive-uuid", "VOL", A),
    ("meta-state", "VOL [0|1 [GID]]", SA),
    ("ts-delta", "", SA),
    ("num-diff", "VOL [GIDB [GIDE]]", A),
    ("total-diff-size", "VOL [GIDB [GIDE]]", A),
    ("exists-diff", "VOL G0 G1 G2 G3", A),
    ("all-actions", "", A),
    ("base-all", "", A),
    ("meta-snap", "VOL [GID]", A),
];

impl GetTarget {
    fn parse(name: &str, a: &mut Args) -> Result<GetTarget, String> {
        use GetTarget as G;
        let t = match name {
            "state" => G::State(a.req("VOL")?),
            "host-type" => G::HostType,
            "vol" => G::Vol,
            "pid" => G::Pid,
            "version" => G::Version,
            "latest-snap" => G::LatestSnap(a.opt()),
            "log-usage" => G::LogUsage(a.opt()),
            "is-overflow" => G::IsOverflow(a.req("VOL")?),
            "uuid" => G::Uuid(a.req("VOL")?),
            "is-wdiff-send-error" => G::IsWdiffSendError(a.req("VOL")?, a.req("ARCHIVE")?),
            "diff" => {
                let vol = a.req("VOL")?;
                let rest = a.rest();
                if rest.len() > 2 {
                    return Err(format!("unexpected argument {:?}", rest[2]));
                }
                G::Diff(vol, rest)
            }
            "applicable-diff" => G::ApplicableDiff(a.req("VOL")?, a.opt_num("MAXGID")?),
            "restorable" => G::Restorable(a.req("VOL")?, a.keyword("all")?),
            "restored" => G::Restored(a.req("VOL")?),
            "base" => G::Base(a.req("VOL")?),
            "vol-size" => G::VolSize(a.req("VOL")?),
            "progress" => G::Progress(a.req("VOL")?),
            "exists-base-image" => G::ExistsBaseImage(a.req("VOL")?),
            "num-action" => G::NumAction(a.req("VOL")?, a.req("ACTION")?),
            "archive-uuid" => G::ArchiveUuid(a.req("VOL")?),
            "ts-delta" => G::TsDelta,
            "num-diff" => G::NumDiff(a.req("VOL")?, a.opt_num("GIDB")?, a.opt_num("GIDE")?),
            "total-diff-size" => {
                G::TotalDiffSize(a.req("VOL")?, a.opt_num("GIDB")?, a.opt_num("GIDE")?)
            }
            "exists-diff" => G::ExistsDiff(
                a.req("VOL")?,
                [
                    a.req_num("G0")?,
                    a.req_num("G1")?,
                    a.req_num("G2")?,
                    a.req_num("G3")?,
                ],
            ),
            "all-actions" => G::AllActions,
            "base-all" => G::BaseAll,
            "meta-snap" => G::MetaSnap(a.req("VOL")?, a.opt_num("GID")?),
            "meta-state" => {
                let vol = a.req("VOL")?;
                let applying = match a.opt().as_deref() {
                    None | Some("0") => false,
                    Some("1") => true,
                    Some(x) => return Err(format!("meta-state wants 0 or 1, got {x:?}")),
                };
                G::MetaState(vol, applying, a.opt_num("GID")?)
            }
            other => {
                let names: Vec<&str> = GET_TARGETS.iter().map(|t| t.0).collect();
                return Err(format!(
                    "unknown get target {other:?} (one of {})",
                    names.join(", ")
                ));
            }
        };
        Ok(t)
    }

    /// The target's name.
    pub fn name(&self) -> &'static str {
        use GetTarget as G;
        match self {
            G::State(_) => "state",
            G::HostType => "host-type",
            G::Vol => "vol",
            G::Pid => "pid",
            G::Version => "version",
            G::LatestSnap(_) => "latest-snap",
            G::LogUsage(_) => "log-usage",
            G::IsOverflow(_) => "is-overflow",
            G::Uuid(_) => "uuid",
            G::IsWdiffSendError(..) => "is-wdiff-send-error",
            G::Diff(..) => "diff",
            G::ApplicableDiff(..) => "applicable-diff",
            G::Restorable(..) => "restorable",
            G::Restored(_) => "restored",
            G::Base(_) => "base",
            G::VolSize(_) => "vol-size",
            G::Progress(_) => "progress",
            G::ExistsBaseImage(_) => "exists-base-image",
            G::NumAction(..) => "num-action",
            G::ArchiveUuid(_) => "archive-uuid",
            G::MetaState(..) => "meta-state",
            G::TsDelta => "ts-delta",
            G::NumDiff(..) => "num-diff",
            G::TotalDiffSize(..) => "total-diff-size",
            G::ExistsDiff(..) => "exists-diff",
            G::AllActions => "all-actions",
            G::BaseAll => "base-all",
            G::MetaSnap(..) => "meta-snap",
        }
    }

    /// The roles that answer this target.
    pub fn roles(&self) -> &'static [Role] {
        GET_TARGETS
            .iter()
            .find(|t| t.0 == self.name())
            .map_or(SPA, |t| t.2)
    }
}

async fn run_get(
    client: &Client,
    node: &str,
    role: Role,
    target: &GetTarget,
) -> Result<Outcome, ClientError> {
    use GetTarget as G;
    let bad = |m: String| ClientError::State(format!("get {}: {m}", target.name()));
    Ok(match target {
        G::State(vol) => Outcome::State(client.state(node, vol).await?),
        G::HostType => Outcome::Text(client.host_type(node).await?.as_str().to_owned()),
        G::Vol => Outcome::Lines(client.vols(node).await?),
        G::Pid => Outcome::Number(client.pid(node).await?),
        G::Version => {
            let (software, protocol) = client.version(node).await?;
            Outcome::Version { software, protocol }
        }
        G::LatestSnap(vol) => Outcome::LatestSnap {
            role,
            snaps: client.latest_snap(node, vol.as_deref()).await?,
        },
        G::LogUsage(vol) => Outcome::rows(
            &client.log_usage(node, vol.as_deref()).await?,
            LogUsageRow::line,
        ),
        G::IsOverflow(vol) => Outcome::Bool(client.is_overflow(node, vol).await?),
        G::Uuid(vol) => Outcome::Uuid(client.uuid(node, vol).await?),
        G::IsWdiffSendError(vol, a) => {
            Outcome::Bool(client.is_wdiff_send_error(node, vol, a).await?)
        }
        G::Diff(vol, rest) => {
            if role == Role::Proxy {
                if rest.len() > 1 {
                    return Err(bad("on a proxy it takes VOL [ARCHIVE]".into()));
                }
                Outcome::Diffs(
                    client
                        .diffs(node, vol, None, None, rest.first().map(String::as_str))
                        .await?,
                )
            } else {
                let nums = rest
                    .iter()
                    .map(|s| number(s, "GID"))
                    .collect::<Result<Vec<u64>, String>>()
                    .map_err(bad)?;
                Outcome::Diffs(
                    client
                        .diffs(node, vol, nums.first().copied(), nums.get(1).copied(), None)
                        .await?,
                )
            }
        }
        G::ApplicableDiff(vol, g) => Outcome::Diffs(client.applicable_diff(node, vol, *g).await?),
        G::Restorable(vol, all) => Outcome::Restorable(client.restorable(node, vol, *all).await?),
        G::Restored(vol) => Outcome::rows(&client.restored(node, vol).await?, RestoredImage::line),
        G::Base(vol) => Outcome::MetaState(client.base(node, vol).await?),
        G::VolSize(vol) => Outcome::Number(client.vol_size(node, vol).await?),
        G::Progress(vol) => Outcome::Number(client.progress(node, vol).await?),
        G::ExistsBaseImage(vol) => Outcome::Bool(client.exists_base_image(node, vol).await?),
        G::NumAction(vol, action) => Outcome::Number(client.num_action(node, vol, action).await?),
        G::ArchiveUuid(vol) => Outcome::Uuid(client.archive_uuid(node, vol).await?),
        G::MetaState(vol, applying, gid) => {
            Outcome::MetaState(client.meta_state(node, vol, *applying, *gid).await?)
        }
        G::TsDelta => Outcome::rows(&client.ts_delta(node).await?, TsDeltaRow::line),
        G::NumDiff(vol, b, e) => Outcome::Number(client.diff_stats(node, vol, *b, *e).await?.num),
        G::TotalDiffSize(vol, b, e) => {
            Outcome::Number(client.diff_stats(node, vol, *b, *e).await?.total_size)
        }
        G::ExistsDiff(vol, g) => Outcome::Bool(client.exists_diff(node, vol, *g).await?),
        G::AllActions => Outcome::rows(&client.all_actions(node).await?, VolActions::line),
        G::BaseAll => Outcome::rows(&client.base_all(node).await?, VolBase::line),
        G::MetaSnap(vol, gid) => Outcome::MetaState(client.meta_snap(node, vol, *gid).await?),
    })
}

impl AdminCmd {
    /// The command's name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::GcDiff { .. } => "gc-diff",
            Self::SetFullScanBps { .. } => "set-full-scan-bps",
            Self::Get { .. } => "get",
            Self::Metrics { .. } => "metrics",
            Self::Shutdown { .. } => "shutdown",
        }
    }

    /// Whether the command only reads.
    pub fn is_read_only(&self) -> bool {
        matches!(self, Self::Get { .. } | Self::Metrics { .. })
    }

    /// The node and volume the command is about, if it names them.
    pub fn target(&self) -> (Option<&str>, Option<&str>) {
        match self {
            Self::GcDiff { archive, vol } => (Some(archive), Some(vol)),
            Self::SetFullScanBps { node, .. }
            | Self::Get { node, .. }
            | Self::Shutdown { node, .. } => (Some(node), None),
            Self::Metrics { .. } => (None, None),
        }
    }

    /// The command's `--timeout` (its default when not given), for those that take one.
    pub fn timeout(&self) -> Option<Duration> {
        None
    }

    /// Runs the command.
    pub async fn run(&self, client: &Client) -> Result<Outcome, ClientError> {
        let cl = client.cluster();
        match self {
            Self::GcDiff { archive, vol } => {
                cl.node_as(archive, &[Role::Archive], "gc-diff")?;
                client.gc_diff(archive, vol).await?;
                Ok(changed(archive, Some(vol)))
            }
            Self::SetFullScanBps { node, bps } => {
                cl.node_as(node, &[Role::Storage], "set-full-scan-bps")?;
                client.set_full_scan_bps(node, *bps).await?;
                Ok(changed(node, None))
            }
            Self::Get { node, target } => {
                let n = cl.node_as(node, target.roles(), &format!("get {}", target.name()))?;
                run_get(client, node, n.role, target).await
            }
            // walblib procedures.
            Self::Metrics { out, sample } => {
                let model = crate::model::load_snapshot(client, *sample).await;
                let text = crate::metrics::render(&model);
                match out {
                    None => Ok(Outcome::Text(text.trim_end().to_owned())),
                    Some(path) => {
                        crate::metrics::write_atomically(path, &text).map_err(|e| {
                            ClientError::State(format!("writing {}: {e}", path.display()))
                        })?;
                        Ok(changed("", None))
                    }
                }
            }
            Self::Shutdown { node, force } => {
                cl.node(node)?;
                client.shutdown(node, *force).await?;
                Ok(changed(node, None))
            }
        }
    }
}
