//! A volume's life on one node: `init-storage`, `init-archive`, `start`, `stop`, `reset`,
//! `clear`.

use std::time::Duration;

use walb_wire::msg::{StartMode, StopMode};

use super::spec::*;
use super::ExecCmd;
use crate::client::{Client, ClientError};
use crate::exec::output::Outcome;
use crate::ops::{self, TIMEOUT_SHORT};

/// A parsed command of this family (a volume's lifecycle).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LifecycleCmd {
    /// `init-storage NODE VOL WDEV`.
    InitStorage {
        /// Storage.
        node: String,
        /// Volume.
        vol: String,
        /// WalB device (path or name).
        wdev: String,
        /// Wait limit.
        timeout: Duration,
    },
    /// `init-archive NODE VOL`.
    InitArchive {
        /// Archive.
        node: String,
        /// Volume.
        vol: String,
    },
    /// `start NODE VOL [target|standby]`.
    Start {
        /// Node.
        node: String,
        /// Volume.
        vol: String,
        /// Storage mode.
        mode: Option<StartMode>,
        /// Wait limit.
        timeout: Duration,
    },
    /// `stop NODE VOL [graceful|force|empty]`.
    Stop {
        /// Node.
        node: String,
        /// Volume.
        vol: String,
        /// How.
        mode: StopMode,
        /// Wait limit.
        timeout: Duration,
    },
    /// `reset NODE VOL [GID]`.
    Reset {
        /// Storage or archive.
        node: String,
        /// Volume.
        vol: String,
        /// Storage: first gid of the new epoch.
        gid: Option<u64>,
        /// Wait limit.
        timeout: Duration,
    },
    /// `clear NODE VOL`.
    Clear {
        /// Node.
        node: String,
        /// Volume.
        vol: String,
        /// Wait limit of each step.
        timeout: Duration,
    },
}

/// This family's rows of the command table, in help order.
pub(super) const ROWS: &[CommandSpec] = &[
    CommandSpec {
        name: "init-storage",
        args: "NODE VOL WDEV",
        about: "init-vol on a storage with its WalB device, then start it standby",
        options: &[OPT_TIMEOUT],
        parse: |a| {
            Ok(ExecCmd::Lifecycle(LifecycleCmd::InitStorage {
                node: a.req("NODE")?,
                vol: a.req("VOL")?,
                wdev: a.req("WDEV")?,
                timeout: a.timeout(TIMEOUT_SHORT)?,
            }))
        },
    },
    CommandSpec {
        name: "init-archive",
        args: "NODE VOL",
        about: "init-vol on an archive (Clear -> SyncReady)",
        options: &[],
        parse: |a| {
            Ok(ExecCmd::Lifecycle(LifecycleCmd::InitArchive {
                node: a.req("NODE")?,
                vol: a.req("VOL")?,
            }))
        },
    },
    CommandSpec {
        name: "start",
        args: "NODE VOL [target|standby]",
        about: "start a volume and wait until it runs (storage default: standby from SyncReady, else target)",
        options: &[OPT_TIMEOUT],
        parse: |a| {
            let node = a.req("NODE")?;
            let vol = a.req("VOL")?;
            let mode = match a.opt().as_deref() {
                None => None,
                Some("target") => Some(StartMode::Target),
                Some("standby") => Some(StartMode::Standby),
                Some(m) => return Err(format!("unknown start mode {m:?} (target or standby)")),
            };
            Ok(ExecCmd::Lifecycle(LifecycleCmd::Start {
                node,
                vol,
                mode,
                timeout: a.timeout(TIMEOUT_SHORT)?,
            }))
        },
    },
    CommandSpec {
        name: "stop",
        args: "NODE VOL [graceful|force|empty]",
        about: "stop a volume and wait until it is stopped",
        options: &[OPT_TIMEOUT],
        parse: |a| {
            let node = a.req("NODE")?;
            let vol = a.req("VOL")?;
            let mode = match a.opt().as_deref() {
                None | Some("graceful") => StopMode::Graceful,
                Some("force") => StopMode::Force,
                Some("empty") => StopMode::Empty,
                Some(m) => {
                    return Err(format!(
                        "unknown stop mode {m:?} (graceful, force or empty)"
                    ))
                }
            };
            Ok(ExecCmd::Lifecycle(LifecycleCmd::Stop {
                node,
                vol,
                mode,
                timeout: a.timeout(TIMEOUT_SHORT)?,
            }))
        },
    },
    CommandSpec {
        name: "reset",
        args: "NODE VOL [GID]",
        about: "reset-vol and wait for SyncReady (storage: a new gid epoch from GID, default 0)",
        options: &[OPT_TIMEOUT],
        parse: |a| {
            Ok(ExecCmd::Lifecycle(LifecycleCmd::Reset {
                node: a.req("NODE")?,
                vol: a.req("VOL")?,
                gid: a.opt_num("GID")?,
                timeout: a.timeout(TIMEOUT_SHORT)?,
            }))
        },
    },
    CommandSpec {
        name: "clear",
        args: "NODE VOL",
        about: "stop/reset as needed, then clear-vol (forgets the volume on that node)",
        options: &[OPT_TIMEOUT],
        parse: |a| {
            Ok(ExecCmd::Lifecycle(LifecycleCmd::Clear {
                node: a.req("NODE")?,
                vol: a.req("VOL")?,
                timeout: a.timeout(TIMEOUT_SHORT)?,
            }))
        },
    },
];

impl LifecycleCmd {
    /// The command's name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::InitStorage { .. } => "init-storage",
            Self::InitArchive { .. } => "init-archive",
            Self::Start { .. } => "start",
            Self::Stop { .. } => "stop",
            Self::Reset { .. } => "reset",
            Self::Clear { .. } => "clear",
        }
    }

    /// Whether the command only reads.
    pub fn is_read_only(&self) -> bool {
        false
    }

    /// The node and volume the command is about, if it names them.
    pub fn target(&self) -> (Option<&str>, Option<&str>) {
        match self {
            Self::InitStorage { node, vol, .. }
            | Self::InitArchive { node, vol }
            | Self::Start { node, vol, .. }
            | Self::Stop { node, vol, .. }
            | Self::Reset { node, vol, .. }
            | Self::Clear { node, vol, .. } => (Some(node), Some(vol)),
        }
    }

    /// The command's `--timeout` (its default when not given), for those that take one.
    pub fn timeout(&self) -> Option<Duration> {
        match self {
            Self::InitArchive { .. } => None,
            Self::InitStorage { timeout, .. }
            | Self::Start { timeout, .. }
            | Self::Stop { timeout, .. }
            | Self::Reset { timeout, .. }
            | Self::Clear { timeout, .. } => Some(*timeout),
        }
    }

    /// Runs the command.
    pub async fn run(&self, client: &Client) -> Result<Outcome, ClientError> {
        match self {
            Self::InitStorage {
                node,
                vol,
                wdev,
                timeout,
            } => {
                let st = ops::init_storage(client, node, vol, wdev, *timeout).await?;
                Ok(done(node, vol, st))
            }
            Self::InitArchive { node, vol } => {
                let st = ops::init_archive(client, node, vol).await?;
                Ok(done(node, vol, st))
            }
            Self::Start {
                node,
                vol,
                mode,
                timeout,
            } => {
                let st = ops::start(client, node, vol, *mode, *timeout).await?;
                Ok(done(node, vol, st))
            }
            Self::Stop {
                node,
                vol,
                mode,
                timeout,
            } => {
                let st = ops::stop(client, node, vol, *mode, *timeout).await?;
                Ok(done(node, vol, st))
            }
            Self::Reset {
                node,
                vol,
                gid,
                timeout,
            } => {
                let st = ops::reset(client, node, vol, *gid, *timeout).await?;
                Ok(done(node, vol, st))
            }
            Self::Clear { node, vol, timeout } => {
                let st = ops::clear(client, node, vol, *timeout).await?;
                Ok(done(node, vol, st))
            }
        }
    }
}
