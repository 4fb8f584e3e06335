//! The questions the console asks a daemon ([`Ask`]) and their answers ([`Answer`]):
//! the fold asks them, [`answer`] asks the daemon with the client.

use walb_wire::msg::{
    LogUsageRow, MetaDiffDto, MetaStateDto, RestoredImage, RetentionReport, SnapshotInfo,
    TsDeltaRow, VolumeState,
};
use walb_wire::ErrorCode;

use crate::client::{Client, ClientError, StatusAnswer};

/// A question for one daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ask {
    /// Version, pid and summary status.
    Hello,
    /// Volume names.
    Vols,
    /// A volume's state.
    State {
        /// Volume.
        vol: String,
    },
    /// Storage: log usage of every volume.
    LogUsage,
    /// Storage: its lag behind its primary archive, per volume.
    TsDelta,
    /// Latest snapshot of one volume, or all.
    LatestSnap {
        /// Volume.
        vol: Option<String>,
    },
    /// Storage: the overflow flag.
    Overflow {
        /// Volume.
        vol: String,
    },
    /// Proxy: the archives of a volume.
    ArchiveList {
        /// Volume.
        vol: String,
    },
    /// Proxy: the queue towards one archive, and its send-error flag.
    Queue {
        /// Volume.
        vol: String,
        /// Archive.
        archive: String,
    },
    /// Archive: the diff list.
    Diffs {
        /// Volume.
        vol: String,
    },
    /// Archive: restorable snapshots (all).
    Restorable {
        /// Volume.
        vol: String,
    },
    /// Archive: the base state.
    Base {
        /// Volume.
        vol: String,
    },
    /// Archive: restored images.
    Restored {
        /// Volume.
        vol: String,
    },
    /// Archive: the retention policy and its next pass.
    Retention {
        /// Volume.
        vol: String,
    },
}

/// A reply to an [`Ask`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// To [`Ask::Hello`].
    Hello {
        /// Software version.
        version: String,
        /// Process id.
        pid: u64,
        /// Summary status (`None` if it could not be had).
        status: Option<StatusAnswer>,
    },
    /// Names (volumes, archives).
    Names(Vec<String>),
    /// A state.
    State(VolumeState),
    /// Log usage.
    LogUsage(Vec<LogUsageRow>),
    /// Ts-delta rows.
    TsDelta(Vec<TsDeltaRow>),
    /// Snapshots (latest, restorable).
    Snaps(Vec<SnapshotInfo>),
    /// A flag.
    Bool(bool),
    /// A queue.
    Queue {
        /// Its diffs.
        diffs: Vec<MetaDiffDto>,
        /// The send-error flag.
        send_error: bool,
    },
    /// A diff list.
    Diffs(Vec<MetaDiffDto>),
    /// A meta state.
    Base(MetaStateDto),
    /// Restored images.
    Restored(Vec<RestoredImage>),
    /// A retention report.
    Retention(Box<RetentionReport>),
}

/// Why an [`Ask`] failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AskError {
    /// The daemon's code, if it refused.
    pub code: Option<ErrorCode>,
    /// The message.
    pub message: String,
}

fn ask_error(e: ClientError) -> AskError {
    AskError {
        code: e.code(),
        message: e.to_string(),
    }
}

/// Answers one [`Ask`] with the client.
pub async fn answer(client: &Client, node: &str, ask: &Ask) -> Result<Answer, AskError> {
    let r = match ask {
        Ask::Hello => {
            let (software, _) = client.version(node).await.map_err(ask_error)?;
            let pid = client.pid(node).await.map_err(ask_error)?;
            let status = client.status(node, None).await.ok();
            Answer::Hello {
                version: software,
                pid,
                status,
            }
        }
        Ask::Vols => Answer::Names(client.vols(node).await.map_err(ask_error)?),
        Ask::State { vol } => Answer::State(client.state(node, vol).await.map_err(ask_error)?),
        Ask::LogUsage => Answer::LogUsage(client.log_usage(node, None).await.map_err(ask_error)?),
        Ask::TsDelta => Answer::TsDelta(client.ts_delta(node).await.map_err(ask_error)?),
        Ask::LatestSnap { vol } => Answer::Snaps(
            client
                .latest_snap(node, vol.as_deref())
                .await
                .map_err(ask_error)?,
        ),
        Ask::Overflow { vol } => {
            Answer::Bool(client.is_overflow(node, vol).await.map_err(ask_error)?)
        }
        Ask::ArchiveList { vol } => Answer::Names(
            client
                .archive_info_list(node, vol)
                .await
                .map_err(ask_error)?,
        ),
        Ask::Queue { vol, archive } => {
            let diffs = client
                .diffs(node, vol, None, None, Some(archive))
                .await
                .map_err(ask_error)?;
            let send_error = client
                .is_wdiff_send_error(node, vol, archive)
                .await
                .map_err(ask_error)?;
            Answer::Queue { diffs, send_error }
        }
        Ask::Diffs { vol } => Answer::Diffs(
            client
                .diffs(node, vol, None, None, None)
                .await
                .map_err(ask_error)?,
        ),
        Ask::Restorable { vol } => Answer::Snaps(
            client
                .restorable(node, vol, false)
                .await
                .map_err(ask_error)?,
        ),
        Ask::Base { vol } => Answer::Base(client.base(node, vol).await.map_err(ask_error)?),
        Ask::Restored { vol } => {
            Answer::Restored(client.restored(node, vol).await.map_err(ask_error)?)
        }
        Ask::Retention { vol } => Answer::Retention(Box::new(
            client.retention(node, vol).await.map_err(ask_error)?,
        )),
    };
    Ok(r)
}
