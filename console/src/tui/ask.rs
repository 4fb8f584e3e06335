//! The questions the console asks a daemon ([`Ask`]) and their answers ([`Answer`]):
//! the update function asks them, the IO shell ([`super::app`]) carries them out.

use walb_wire::msg::{MetaDiffDto, MetaStateDto, SnapshotInfo};
use walb_wire::ErrorCode;

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
        /// Summary status lines.
        status: Vec<String>,
    },
    /// Names (volumes, archives).
    Names(Vec<String>),
    /// A state name.
    State(String),
    /// Lines (log usage).
    Lines(Vec<String>),
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
    Restored(Vec<(u64, String)>),
}

/// Why an [`Ask`] failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AskError {
    /// The daemon's code, if it refused.
    pub code: Option<ErrorCode>,
    /// The message.
    pub message: String,
}
