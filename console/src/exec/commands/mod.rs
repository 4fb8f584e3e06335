//! The exec command table: names, usage, parsing and what each command does.
//!
//! Every command is one row of [`COMMANDS`] (name, usage, one-line help, its `--options`
//! and a parse function) and one variant of its family's enum, and both live in the
//! family's file with the command's run and output: [`overview`], [`lifecycle`],
//! [`backup`], [`archive`], [`routing`], [`admin`]. The table is the families' rows in
//! help order; [`ExecCmd`] is one variant per family, and its methods hand over to the
//! family. Parsing is pure (no cluster file, no network), so the TUI's command palette
//! and scripts accept exactly the same commands, and errors name the command and show its
//! usage. Roles are checked when a command runs, against the cluster file.
//!
//! Adding a command (like hash-backup, merge, apply or replicate) is one row, one variant
//! and one arm in its family's file; nothing else changes.

pub mod admin;
pub mod archive;
pub mod backup;
pub mod lifecycle;
pub mod overview;
pub mod retention;
pub mod routing;
pub mod spec;

use std::time::Duration;

use crate::client::{Client, ClientError};
use crate::exec::output::Outcome;
pub use crate::ops::parse_compress;
pub use admin::{AdminCmd, GetTarget, GET_TARGETS};
pub use archive::{copy_lines, ArchiveCmd};
pub use backup::BackupCmd;
pub use lifecycle::LifecycleCmd;
pub use overview::{state_all, status_all, OverviewCmd};
pub use routing::{peers_lines, ArchiveInfoOp, RoutingCmd};
pub use spec::{Args, CommandSpec, OptSpec, UsageError};

/// A parsed exec command: its family, and the command in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExecCmd {
    /// `help`, `state-all`, `status` ([`overview`]).
    Overview(OverviewCmd),
    /// A volume's lifecycle on one node ([`lifecycle`]).
    Lifecycle(LifecycleCmd),
    /// Backups, snapshots and restores ([`backup`]).
    Backup(BackupCmd),
    /// The archives' work: merge, apply, replication, procedures ([`archive`]).
    Archive(ArchiveCmd),
    /// Who ships to whom ([`routing`]).
    Routing(RoutingCmd),
    /// Daemon administration and `get` ([`admin`]).
    Admin(AdminCmd),
}

/// The number of rows of the table.
const ROW_COUNT: usize = overview::ROWS.len()
    + lifecycle::ROWS.len()
    + backup::ROWS.len()
    + archive::ROWS.len()
    + routing::ROWS.len()
    + admin::ROWS.len();

/// The families' rows one after the other.
const fn concat_rows(families: [&[CommandSpec]; 6]) -> [CommandSpec; ROW_COUNT] {
    let mut out = [families[0][0]; ROW_COUNT];
    let (mut n, mut f) = (0, 0);
    while f < families.len() {
        let mut i = 0;
        while i < families[f].len() {
            out[n] = families[f][i];
            n += 1;
            i += 1;
        }
        f += 1;
    }
    out
}

static TABLE: [CommandSpec; ROW_COUNT] = concat_rows([
    overview::ROWS,
    lifecycle::ROWS,
    backup::ROWS,
    archive::ROWS,
    routing::ROWS,
    admin::ROWS,
]);

/// Every exec command, in help order.
pub static COMMANDS: &[CommandSpec] = &TABLE;

/// The row of command `name`.
pub fn spec(name: &str) -> Option<&'static CommandSpec> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// Parses one command from its words (`["restore", "a0", "vol", "8"]`).
pub fn parse_args(words: &[String]) -> Result<ExecCmd, UsageError> {
    let (name, rest) = words
        .split_first()
        .ok_or_else(|| UsageError::plain("no command given (try: help)"))?;
    let spec = spec(name).ok_or_else(|| {
        UsageError::plain(format!(
            "unknown command {name:?} (`walb-console --exec help` lists the commands)"
        ))
    })?;
    let fail = |message: String| UsageError {
        command: Some(spec.name.to_owned()),
        message,
        usage: Some(spec.usage()),
    };
    let mut args = Args::new(spec, rest).map_err(fail)?;
    let cmd = (spec.parse)(&mut args).map_err(fail)?;
    args.finish().map_err(fail)?;
    Ok(cmd)
}

/// Splits a script line into words: whitespace separates, `'...'` and `"..."` quote, `#`
/// at the start of a word begins a comment. `Ok(empty)` for blank and comment lines.
pub fn split_words(line: &str) -> Result<Vec<String>, UsageError> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '#' if !in_word => break,
            '\'' | '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some(q) if q == c => break,
                        Some('\\') if c == '"' => match chars.next() {
                            Some(e) => cur.push(e),
                            None => return Err(UsageError::plain("unterminated quote")),
                        },
                        Some(x) => cur.push(x),
                        None => return Err(UsageError::plain("unterminated quote")),
                    }
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// Parses a script line; `None` for blank and comment lines.
pub fn parse_line(line: &str) -> Result<Option<ExecCmd>, UsageError> {
    let words = split_words(line)?;
    if words.is_empty() {
        return Ok(None);
    }
    parse_args(&words).map(Some)
}

/// The help text: every command's usage and summary, or one command's.
pub fn help_lines(command: Option<&str>) -> Result<Vec<String>, UsageError> {
    match command {
        None => {
            let width = COMMANDS.iter().map(|c| c.name.len()).max().unwrap_or(0);
            let mut out = vec![
                "commands (walb-console --exec COMMAND ARGS..., or one per line with --exec -):"
                    .to_owned(),
            ];
            for c in COMMANDS {
                out.push(format!("  {:width$}  {}", c.name, c.about));
            }
            out.push("`help COMMAND` shows a command's arguments.".to_owned());
            Ok(out)
        }
        Some(name) => {
            let c =
                spec(name).ok_or_else(|| UsageError::plain(format!("unknown command {name:?}")))?;
            let mut out = vec![format!("usage: {}", c.usage()), format!("  {}", c.about)];
            if c.name == "get" {
                out.push("targets:".to_owned());
                for (t, args, roles) in GET_TARGETS {
                    let r: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
                    out.push(format!("  {t} {args}  ({})", r.join(", ")));
                }
            }
            Ok(out)
        }
    }
}

impl ExecCmd {
    /// The command's name.
    pub fn name(&self) -> &'static str {
        match self {
            ExecCmd::Overview(c) => c.name(),
            ExecCmd::Lifecycle(c) => c.name(),
            ExecCmd::Backup(c) => c.name(),
            ExecCmd::Archive(c) => c.name(),
            ExecCmd::Routing(c) => c.name(),
            ExecCmd::Admin(c) => c.name(),
        }
    }

    /// Whether the command only reads (a viewer certificate, or `--read-only`, may run
    /// it).
    pub fn is_read_only(&self) -> bool {
        match self {
            ExecCmd::Overview(c) => c.is_read_only(),
            ExecCmd::Lifecycle(c) => c.is_read_only(),
            ExecCmd::Backup(c) => c.is_read_only(),
            ExecCmd::Archive(c) => c.is_read_only(),
            ExecCmd::Routing(c) => c.is_read_only(),
            ExecCmd::Admin(c) => c.is_read_only(),
        }
    }

    /// The node and volume the command is about, if it names them.
    pub fn target(&self) -> (Option<&str>, Option<&str>) {
        match self {
            ExecCmd::Overview(c) => c.target(),
            ExecCmd::Lifecycle(c) => c.target(),
            ExecCmd::Backup(c) => c.target(),
            ExecCmd::Archive(c) => c.target(),
            ExecCmd::Routing(c) => c.target(),
            ExecCmd::Admin(c) => c.target(),
        }
    }

    /// The command's `--timeout` (its default when not given), for those that take one.
    pub fn timeout(&self) -> Option<Duration> {
        match self {
            ExecCmd::Overview(c) => c.timeout(),
            ExecCmd::Lifecycle(c) => c.timeout(),
            ExecCmd::Backup(c) => c.timeout(),
            ExecCmd::Archive(c) => c.timeout(),
            ExecCmd::Routing(c) => c.timeout(),
            ExecCmd::Admin(c) => c.timeout(),
        }
    }

    /// Whether the command talks to daemons (and so needs a cluster file).
    pub fn needs_cluster(&self) -> bool {
        !matches!(self, ExecCmd::Overview(OverviewCmd::Help { .. }))
    }

    /// Runs the command (help runs without a client: see [`help_lines`]).
    pub async fn run(&self, client: &Client) -> Result<Outcome, ClientError> {
        match self {
            ExecCmd::Overview(c) => c.run(client).await,
            ExecCmd::Lifecycle(c) => c.run(client).await,
            ExecCmd::Backup(c) => c.run(client).await,
            ExecCmd::Archive(c) => c.run(client).await,
            ExecCmd::Routing(c) => c.run(client).await,
            ExecCmd::Admin(c) => c.run(client).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use walb_wire::msg::{Codec, CompressOpt, MergeUntil, StopMode};
    use walb_wire::Role;

    use super::spec::size_lb;
    use super::*;
    use crate::ops::{self, TIMEOUT_LONG, TIMEOUT_SHORT};
    use crate::procs;

    fn words(s: &str) -> Vec<String> {
        split_words(s).unwrap()
    }

    fn parse(s: &str) -> Result<ExecCmd, UsageError> {
        parse_args(&words(s))
    }

    fn err(s: &str) -> String {
        parse(s).unwrap_err().to_string()
    }

    #[test]
    fn resize_sizes_take_suffixes_and_whole_blocks() {
        assert_eq!(size_lb("36m"), Ok(36 << 11));
        assert_eq!(size_lb("4K"), Ok(8));
        assert_eq!(size_lb("1024"), Ok(2));
        assert!(size_lb("1000").unwrap_err().contains("multiple of 512"));
        assert!(size_lb("0").is_err());
        assert!(size_lb("12q").unwrap_err().contains("suffix"));
        assert!(size_lb("99999999999t").is_err(), "overflow");
        let c = parse_line("resize a0 vol 1g --zero-clear")
            .unwrap()
            .unwrap();
        assert!(matches!(
            c,
            ExecCmd::Backup(BackupCmd::Resize {
                size_lb: 2_097_152,
                zero_clear: true,
                ..
            })
        ));
    }

    #[test]
    fn every_command_parses_its_documented_form() {
        let ok = [
            "help",
            "help restore",
            "state-all vol",
            "status",
            "status s0",
            "status s0 vol",
            "init-storage s0 vol /dev/walb/walb-tutorial-device",
            "init-archive a0 vol",
            "start s0 vol",
            "start s0 vol target --timeout 5",
            "start s0 vol standby",
            "stop s0 vol",
            "stop p0 vol empty",
            "stop s0 vol force --timeout=1.5",
            "reset s0 vol",
            "reset s0 vol 100",
            "clear a0 vol",
            "full-backup s0 vol",
            "full-backup s0 vol --no-wait --bulk 512 --timeout 60",
            "snapshot s0 vol",
            "snapshot s0 vol a0 a1",
            "wait-restorable a0 vol 8 --timeout 30",
            "restore a0 vol 8",
            "restored-path a0 vol 8",
            "del-restored a0 vol 8",
            "restorable a0 vol",
            "restorable a0 vol all",
            "diff-list a0 vol",
            "diff-list a0 vol 2 8",
            "archive-info p0 add vol a0",
            "archive-info p0 add vol a0 localhost:10200 snappy:0:1 3",
            "archive-info p0 update vol a0 zstd:3:2",
            "archive-info p0 get vol a0",
            "archive-info p0 delete vol a0",
            "archive-info p0 list vol",
            "kick s0",
            "kick p0 vol a0",
            "get s0 state vol",
            "get s0 host-type",
            "get s0 vol",
            "get s0 pid",
            "get s0 version",
            "get s0 latest-snap",
            "get s0 latest-snap vol",
            "get s0 log-usage vol",
            "get s0 is-overflow vol",
            "get s0 uuid vol",
            "get p0 is-wdiff-send-error vol a0",
            "get a0 diff vol 0 10",
            "get p0 diff vol a0",
            "get a0 applicable-diff vol 10",
            "get a0 restorable vol all",
            "get a0 restored vol",
            "get a0 base vol",
            "get a0 vol-size vol",
            "get a0 progress vol",
            "get a0 exists-base-image vol",
            "get a0 num-action vol Restore",
            "get a0 archive-uuid vol",
            "get s0 meta-state vol",
            "get a0 meta-state vol 1 20",
            "shutdown s0",
            "shutdown s0 force",
            "hash-backup s0 vol --bulk 64 --timeout 9",
            "merge a0 vol 2 7",
            "apply a0 vol 8",
            "resize s0 vol 64m",
            "resize a0 vol 1g --zero-clear",
            "disable-snapshot a0 vol 3 4",
            "enable-snapshot a0 vol 3",
            "metrics",
            "metrics --out /tmp/walb.prom --sample 0.5",
            "replicate a0 vol a1",
            "replicate a0 vol a1 --gid 8 --resync --dont-merge --sync --timeout 60",
            "start-synchronizing a1 vol",
            "stop-synchronizing a1 vol --timeout 30",
            "is-synchronizing a1 vol",
            "bhash a0 vol 8",
            "virt-full-scan a0 vol 8 /tmp/img",
            "virt-full-scan a0 vol 8 /dev/loop9 --bulk 4096",
            "get a0 ts-delta",
            "get s0 ts-delta",
            "get a0 num-diff vol",
            "get a0 total-diff-size vol 2 8",
            "get a0 exists-diff vol 2 2 3 3",
            "get a0 all-actions",
            "get a0 base-all",
            "get a0 meta-snap vol 8",
            "gc-diff a0 vol",
            "set-full-scan-bps s0 10m",
            "hash-backup s0 vol --no-wait",
            "bind a0 vol storage s0",
            "bind a0 vol proxy p0 p1 --add",
            "bind p0 vol storage --remove s1",
            "peers a0 vol",
            "go-standby s0 vol --timeout 30",
            "copy-archive-info p0 vol p2",
            "resize vol 36m --zero-clear",
            "merge a0 vol 2 --max-mb 4",
            "replicate a0 vol a1 --compress zstd:3 --max-merge-mb 64 --bulk 1024",
            "latest-clean a0 vol",
            "retention a0 vol",
            "retention a0 vol --keep-last 2 --keep-grid 1x1h --pin 3,4 --dry-run",
            "retention a0 vol --default --unpin 3",
        ];
        for line in ok {
            let c = parse(line).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(c.name(), line.split_whitespace().next().unwrap(), "{line}");
        }
        // Every command of the table is exercised above.
        for spec in COMMANDS {
            assert!(
                ok.iter()
                    .any(|l| l.split_whitespace().next() == Some(spec.name)),
                "{} untested",
                spec.name
            );
        }
        for (t, _, _) in GET_TARGETS {
            assert!(
                ok.iter().any(|l| l.split_whitespace().nth(2) == Some(*t)),
                "get {t} untested"
            );
        }
    }

    #[test]
    fn status_targets_and_small_commands_parse_their_values() {
        assert_eq!(
            parse("get a0 exists-diff vol 2 2 3 4").unwrap(),
            ExecCmd::Admin(AdminCmd::Get {
                node: "a0".into(),
                target: GetTarget::ExistsDiff("vol".into(), [2, 2, 3, 4]),
            })
        );
        assert!(err("get a0 exists-diff vol 2 2 3").contains("G3"));
        assert_eq!(
            parse("get a0 num-diff vol 5").unwrap(),
            ExecCmd::Admin(AdminCmd::Get {
                node: "a0".into(),
                target: GetTarget::NumDiff("vol".into(), Some(5), None),
            })
        );
        assert!(err("get a0 total-diff-size vol x").contains("GIDB"));
        assert!(err("get a0 all-actions vol").contains("unexpected"));
        assert_eq!(
            parse("get a0 meta-snap vol").unwrap(),
            ExecCmd::Admin(AdminCmd::Get {
                node: "a0".into(),
                target: GetTarget::MetaSnap("vol".into(), None),
            })
        );
        assert_eq!(
            parse("gc-diff a0 vol").unwrap(),
            ExecCmd::Admin(AdminCmd::GcDiff {
                archive: "a0".into(),
                vol: "vol".into(),
            })
        );
        assert!(err("gc-diff a0").contains("VOL"));
        for (arg, bps) in [
            ("0", 0),
            ("1000", 1000),
            ("4k", 4096),
            ("10M", 10 << 20),
            ("1g", 1 << 30),
        ] {
            assert_eq!(
                parse(&format!("set-full-scan-bps s0 {arg}")).unwrap(),
                ExecCmd::Admin(AdminCmd::SetFullScanBps {
                    node: "s0".into(),
                    bps,
                }),
                "{arg}"
            );
        }
        assert!(err("set-full-scan-bps s0 12q").contains("suffix"));
        assert!(err("set-full-scan-bps s0 99999999999g").contains("too large"));
        assert!(err("set-full-scan-bps s0").contains("BPS"));
        assert!(matches!(
            parse("hash-backup s0 vol --no-wait").unwrap(),
            ExecCmd::Backup(BackupCmd::HashBackup { wait: false, .. })
        ));
        assert!(matches!(
            parse("hash-backup s0 vol").unwrap(),
            ExecCmd::Backup(BackupCmd::HashBackup { wait: true, .. })
        ));
        // Storages answer ts-delta now; meta-snap and the diff counts are the archive's.
        let roles = |t: &str| GET_TARGETS.iter().find(|g| g.0 == t).unwrap().2;
        assert_eq!(roles("ts-delta"), &[Role::Storage, Role::Archive]);
        assert_eq!(roles("num-diff"), &[Role::Archive]);
        let help = help_lines(Some("get")).unwrap().join("\n");
        for t in [
            "num-diff VOL [GIDB [GIDE]]",
            "exists-diff VOL G0 G1 G2 G3",
            "base-all",
            "meta-snap VOL [GID]",
        ] {
            assert!(help.contains(t), "{t} not in {help}");
        }
        let help = help_lines(Some("set-full-scan-bps")).unwrap().join("\n");
        assert!(
            help.contains("usage: set-full-scan-bps STORAGE BPS"),
            "{help}"
        );
    }

    #[test]
    fn parsed_values() {
        assert_eq!(
            parse("stop s0 vol force --timeout=1.5").unwrap(),
            ExecCmd::Lifecycle(LifecycleCmd::Stop {
                node: "s0".into(),
                vol: "vol".into(),
                mode: StopMode::Force,
                timeout: Duration::from_millis(1500),
            })
        );
        assert_eq!(
            parse("full-backup s0 vol --no-wait --bulk 512").unwrap(),
            ExecCmd::Backup(BackupCmd::FullBackup {
                node: "s0".into(),
                vol: "vol".into(),
                bulk_lb: Some(512),
                wait: false,
                timeout: TIMEOUT_LONG,
            })
        );
        assert_eq!(
            parse("archive-info p0 add vol a0 3 lzma:9:2 host:1").unwrap(),
            ExecCmd::Routing(RoutingCmd::ArchiveInfo {
                proxy: "p0".into(),
                op: ArchiveInfoOp::Set {
                    vol: "vol".into(),
                    archive: "a0".into(),
                    addr: Some("host:1".into()),
                    compress: Some(CompressOpt {
                        codec: Codec::Lzma,
                        level: 9,
                        ncpu: 2
                    }),
                    delay_s: Some(3),
                    update: false,
                }
            })
        );
        assert_eq!(
            parse("snapshot s0 vol a0 a1").unwrap(),
            ExecCmd::Backup(BackupCmd::Snapshot {
                node: "s0".into(),
                vol: "vol".into(),
                archives: vec!["a0".into(), "a1".into()],
                timeout: TIMEOUT_LONG,
            })
        );
        assert_eq!(
            parse("replicate a0 vol a1 --gid 8 --sync").unwrap(),
            ExecCmd::Archive(ArchiveCmd::Replicate {
                src: "a0".into(),
                vol: "vol".into(),
                dst: "a1".into(),
                opts: ops::ReplicateOpts {
                    gid: Some(8),
                    do_resync: false,
                    dont_merge: false,
                    bulk_lb: None,
                    compress: None,
                    merge_size_max: None,
                },
                sync: true,
                timeout: TIMEOUT_LONG,
            })
        );
        assert_eq!(
            parse("stop-synchronizing a1 vol").unwrap(),
            ExecCmd::Archive(ArchiveCmd::Synchronizing {
                archive: "a1".into(),
                vol: "vol".into(),
                start: false,
                timeout: TIMEOUT_SHORT,
            })
        );
        assert!(parse("is-synchronizing a1 vol").unwrap().is_read_only());
        assert!(!parse("replicate a0 vol a1").unwrap().is_read_only());
        assert_eq!(
            parse("get a0 meta-state vol 1 20").unwrap(),
            ExecCmd::Admin(AdminCmd::Get {
                node: "a0".into(),
                target: GetTarget::MetaState("vol".into(), true, Some(20)),
            })
        );
    }

    #[test]
    fn procedure_commands_parse_their_forms() {
        assert_eq!(
            parse("resize vol 36m").unwrap(),
            ExecCmd::Backup(BackupCmd::Resize {
                node: None,
                vol: "vol".into(),
                size_lb: 36 << 11,
                zero_clear: false,
            })
        );
        assert!(matches!(
            parse("resize a0 vol 36m").unwrap(),
            ExecCmd::Backup(BackupCmd::Resize { node: Some(n), .. }) if n == "a0"
        ));
        assert!(err("resize vol").contains("missing SIZE"));
        assert!(err("resize a0 vol 36m 1").contains("unexpected argument"));
        assert!(err("resize vol 1000").contains("multiple of 512"));
        assert!(matches!(
            parse("merge a0 vol 2 --max-mb 4").unwrap(),
            ExecCmd::Archive(ArchiveCmd::Merge {
                gid_b: 2,
                until: MergeUntil::SizeMib(4),
                ..
            })
        ));
        assert!(matches!(
            parse("merge a0 vol 2 7").unwrap(),
            ExecCmd::Archive(ArchiveCmd::Merge {
                until: MergeUntil::Gid(7),
                ..
            })
        ));
        assert!(err("merge a0 vol 2").contains("missing GIDE (or --max-mb N)"));
        assert!(err("merge a0 vol 2 7 --max-mb 4").contains("not both"));
        assert!(err("merge a0 vol 2 --max-mb 0").contains("positive"));
        let ExecCmd::Archive(ArchiveCmd::Replicate { opts, .. }) =
            parse("replicate a0 vol a1 --compress zstd:3 --max-merge-mb 64 --bulk 1024").unwrap()
        else {
            panic!("not a replicate");
        };
        assert_eq!(
            opts.compress,
            Some(CompressOpt {
                codec: Codec::Zstd,
                level: 3,
                ncpu: 1
            })
        );
        assert_eq!(opts.merge_size_max, Some(64 << 20));
        assert_eq!(opts.bulk_lb, Some(1024));
        assert!(err("replicate a0 vol a1 --compress snappy").contains("zstd[:LEVEL] or none"));
        assert!(err("replicate a0 vol a1 --max-merge-mb 0").contains("positive"));
        assert!(err("replicate a0 vol a1 --max-merge-mb 99999999999999").contains("too large"));
        assert_eq!(
            parse("go-standby s0 vol").unwrap(),
            ExecCmd::Archive(ArchiveCmd::GoStandby {
                node: "s0".into(),
                vol: "vol".into(),
                timeout: TIMEOUT_SHORT,
            })
        );
        assert!(err("go-standby s0").contains("missing VOL"));
        assert!(err("copy-archive-info p0 vol").contains("missing DST_PROXY"));
        assert!(parse("latest-clean a0 vol").unwrap().is_read_only());
        assert!(!parse("go-standby s0 vol").unwrap().is_read_only());
        let help = help_lines(Some("latest-clean")).unwrap().join("\n");
        assert!(help.contains("restorable ARCHIVE VOL all"), "{help}");
    }

    #[test]
    fn copy_archive_info_says_what_to_bind() {
        let r = procs::CopyDone {
            archives: vec![(
                "a0".into(),
                walb_wire::msg::ArchiveDest {
                    addr: "localhost:1".into(),
                    compress: crate::ops::default_compress(),
                    delay_s: 0,
                },
            )],
            storage: None,
        };
        let l = copy_lines("p0", "p2", "vol", &r);
        assert_eq!(l[0], "archive a0 localhost:1 snappy:0:1 0");
        assert!(l[1].contains("bind p2 vol storage ID"), "{}", l[1]);
        let r = procs::CopyDone {
            storage: Some("s0".into()),
            ..r
        };
        assert_eq!(copy_lines("p0", "p2", "vol", &r)[1], "storage s0");
    }

    #[test]
    fn mistakes_name_the_command_and_show_usage() {
        assert_eq!(
            err("restore a0 vol"),
            "restore: missing GID (usage: restore ARCHIVE VOL GID [--timeout S])"
        );
        assert!(err("restore a0 vol x").contains("GID must be a number, got \"x\""));
        assert!(err("restore a0 vol 8 9").contains("unexpected argument \"9\""));
        assert!(err("frobnicate x").contains("unknown command \"frobnicate\""));
        assert!(err("state-all vol --json").contains("unknown option --json"));
        assert!(err("state-all vol --json").contains("before --exec"));
        assert!(err("stop s0 vol nicely").contains("unknown stop mode \"nicely\""));
        assert!(err("start s0 vol up").contains("unknown start mode"));
        assert!(err("restore a0 vol 8 --timeout").contains("--timeout needs a value S"));
        assert!(err("restore a0 vol 8 --timeout soon").contains("--timeout wants seconds"));
        assert!(err("full-backup s0 vol --no-wait=1").contains("takes no value"));
        assert!(err("archive-info p0 add vol").contains("missing ARCHIVE"));
        assert!(err("archive-info p0 add vol a0 bogus").contains("is none of HOST:PORT"));
        assert!(err("archive-info p0 add vol a0 1 2").contains("two delays"));
        assert!(err("archive-info p0 rename vol").contains("unknown archive-info sub-command"));
        assert!(err("get s0 nonsense").contains("unknown get target \"nonsense\""));
        assert!(err("get s0 state").contains("missing VOL"));
        assert!(err("get a0 meta-state vol 2").contains("wants 0 or 1"));
        assert!(err("shutdown s0 now").contains("unknown shutdown mode"));
        assert!(err("kick p0 vol a0 extra").contains("unexpected argument"));
        assert!(err("replicate a0 vol").contains("missing DST"));
        assert!(err("replicate a0 vol a1 --gid x").contains("--gid must be a number"));
        assert!(err("replicate a0 vol a1 --sync=1").contains("takes no value"));
        assert_eq!(
            parse_args(&[]).unwrap_err().to_string(),
            "no command given (try: help)"
        );
    }

    #[test]
    fn script_lines_split_with_quotes_and_comments() {
        assert_eq!(words("  # a comment"), Vec::<String>::new());
        assert_eq!(words(""), Vec::<String>::new());
        assert_eq!(
            words("init-storage s0 vol '/dev/walb/my dev' # tail"),
            ["init-storage", "s0", "vol", "/dev/walb/my dev"]
        );
        assert_eq!(words(r#"a "b \" c" d#e"#), ["a", "b \" c", "d#e"]);
        assert!(split_words("a 'b").is_err());
        assert_eq!(parse_line("# only").unwrap(), None);
        assert!(parse_line("restore a0").is_err());
    }

    #[test]
    fn compress_options() {
        assert_eq!(
            parse_compress("snappy:0:1"),
            Some(CompressOpt {
                codec: Codec::Snappy,
                level: 0,
                ncpu: 1
            })
        );
        assert_eq!(parse_compress("zstd").map(|c| c.codec), Some(Codec::Zstd));
        assert_eq!(parse_compress("zstd:x"), None);
        assert_eq!(parse_compress("brotli:1:1"), None);
        assert_eq!(parse_compress("zstd:1:1:1"), None);
    }

    #[test]
    fn help_lists_every_command_and_get_targets() {
        let all = help_lines(None).unwrap().join("\n");
        for c in COMMANDS {
            assert!(all.contains(c.name), "{}", c.name);
        }
        let get = help_lines(Some("get")).unwrap().join("\n");
        assert!(
            get.contains("is-wdiff-send-error VOL ARCHIVE  (proxy)"),
            "{get}"
        );
        assert!(help_lines(Some("nope")).is_err());
    }
}
