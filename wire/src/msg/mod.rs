//! The protocol messages: what walb peers say to each other.
//!
//! Every control message is a [`Message`], encoded with postcard inside a frame (see
//! [`crate::frame`]); bulk data travels in chunk frames beside them. A conversation runs
//! on one QUIC bidirectional stream:
//!
//! 1. The first stream of a connection carries the negotiation: the client sends a
//!    [`Hello`] (in a `Hello` frame), the server answers with a [`Welcome`]. [`Hello`] and
//!    [`Welcome`] are frozen: their encoding never changes, so that any two versions can
//!    tell each other that they do not match.
//! 2. Every later stream starts with one [`Message::Request`]. Requests are grouped by the
//!    [`OpClass`] that authorizes them ([`Request::op_class`]), so the authorization table
//!    in [`crate::auth`] is one `match`.
//! 3. The server answers with [`Message::Reply`] or [`Message::Error`]. Multi-step
//!    protocols (full sync, replication, wlog and wdiff transfer) then exchange
//!    [`Message::Step`]s and bulk chunks on the same stream, in the order each protocol
//!    fixes (see the doc of each request).
//! 4. [`Request::Subscribe`] turns the stream into an event feed: the server answers
//!    [`Reply::Accepted`] and then sends [`Message::Event`]s until either side closes it.
//!
//! The types here are wire DTOs: plain data, converted by hand from and to the daemons'
//! internal types at the boundary. When version N+1 changes a type, version N's types
//! move to `prev::vN` and are kept for decoding.

use serde::{Deserialize, Serialize};

pub use crate::auth::OpClass;

mod command;
mod dto;
mod error;
mod event;
mod query;
mod report;
mod retention;
mod state;
mod sync;
pub mod text;

pub use command::*;
pub use dto::*;
pub use error::*;
pub use event::*;
pub use query::*;
pub use report::*;
pub use retention::*;
pub use state::*;
pub use sync::*;

/// The protocol version this build speaks best. Version 3 added the queue for foreground
/// slots ([`Step::Queued`] before a reply and [`Event::Queue`]); version 4 the typed
/// answers (the [`Reply`] variants after [`Reply::Version`]: states, status, ts-delta, log
/// usage and the rest). Each is sent only on connections that speak its version, and
/// nothing an older peer sends or receives changed, so 2 and 3 are still spoken.
pub const PROTOCOL_VERSION: u16 = 4;
/// The first protocol version with [`Step::Queued`] and [`Event::Queue`].
pub const PROTOCOL_VERSION_QUEUE: u16 = 3;
/// The first protocol version with typed answers ([`Reply::for_version`]).
pub const PROTOCOL_VERSION_TYPED: u16 = 4;
/// The oldest protocol version this build still speaks (version 2 added peer bindings:
/// `Command::Bind`, `Query::Peers`, the destination's id in a `replicate`; a version-1 peer
/// is told to upgrade).
pub const PROTOCOL_VERSION_MIN: u16 = 2;
/// The magic at the start of every [`Hello`].
pub const MAGIC: [u8; 4] = *b"WALB";

/// A 16-byte volume or archive UUID.
pub type Uuid = [u8; 16];

/// The first message of a connection, from the client. Frozen: never changes encoding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Hello {
    /// Always [`MAGIC`].
    pub magic: [u8; 4],
    /// Oldest protocol version the client speaks.
    pub version_min: u16,
    /// Newest protocol version the client speaks.
    pub version_max: u16,
    /// Free-form software description, for logs (`walb-daemon 0.1.0`).
    pub software: String,
}

impl Hello {
    /// This build's hello.
    pub fn ours(software: &str) -> Self {
        Self {
            magic: MAGIC,
            version_min: PROTOCOL_VERSION_MIN,
            version_max: PROTOCOL_VERSION,
            software: software.to_owned(),
        }
    }
}

/// The server's answer to a [`Hello`]. Frozen: never changes encoding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Welcome {
    /// The connection will speak `version`.
    Accept {
        /// The chosen protocol version.
        version: u16,
        /// The server's software description.
        software: String,
    },
    /// The server cannot talk to this client.
    Reject(WireError),
}

/// Picks the version to speak, the newest both sides know: a pure function of the
/// client's [`Hello`] and the server's range.
pub fn negotiate(hello: &Hello, ours_min: u16, ours_max: u16) -> Result<u16, WireError> {
    if hello.magic != MAGIC {
        return Err(WireError::new(
            ErrorCode::VersionMismatch,
            "not a walb peer (bad magic in hello)",
        ));
    }
    let lo = hello.version_min.max(ours_min);
    let hi = hello.version_max.min(ours_max);
    if lo > hi || hello.version_min > hello.version_max {
        return Err(WireError::new(
            ErrorCode::VersionMismatch,
            format!(
                "protocol version mismatch: peer ({}) speaks {}..={}, we speak {}..={}; \
                 upgrade the older side",
                hello.software, hello.version_min, hello.version_max, ours_min, ours_max
            ),
        ));
    }
    Ok(hi)
}

/// One control message on a stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Message {
    /// Opens a stream: what the client asks.
    Request(Request),
    /// The server's answer to a request.
    Reply(Reply),
    /// A step of a multi-step protocol, in either direction.
    Step(Step),
    /// An event of a subscription.
    Event(Event),
    /// A refusal or failure, in either direction; ends the conversation.
    Error(WireError),
}

// ----------------------------------------------------------------------------------------
// Requests

/// Everything a peer can ask, grouped by the operation class that authorizes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Request {
    /// A controller command that changes state (operator only).
    Command(Command),
    /// A read-only query (operator, viewer).
    Query(Query),
    /// Subscribe to the event stream (operator, viewer).
    Subscribe(Subscribe),
    /// Storage → proxy: ship a range of wlog packs. After [`Reply::Accepted`], the storage
    /// streams one bulk chunk per log pack (header block then data blocks, as on the log
    /// device) and ends the bulk, then sends [`Step::MetaDiff`]; the proxy answers
    /// [`Step::Ack`] once the diff is durable.
    WlogTransfer(WlogTransfer),
    /// Proxy → archive: ship a wdiff. After [`Reply::Accepted`], the proxy streams the
    /// diff's packs as bulk chunks and ends the bulk; the archive answers [`Step::Ack`].
    WdiffTransfer(WdiffTransfer),
    /// Storage → primary archive: full sync, hash sync, latest-snapshot gathering.
    BackupSync(BackupSync),
    /// Archive → archive: replication (full, resync, hash, diff; resumable).
    Replicate(ReplSync),
}

impl Request {
    /// The operation class that decides who may send this request.
    pub fn op_class(&self) -> OpClass {
        match self {
            Request::Command(_) => OpClass::Command,
            Request::Query(_) => OpClass::Query,
            Request::Subscribe(_) => OpClass::Subscribe,
            Request::WlogTransfer(_) => OpClass::WlogTransfer,
            Request::WdiffTransfer(_) => OpClass::WdiffTransfer,
            Request::BackupSync(_) => OpClass::BackupSync,
            Request::Replicate(_) => OpClass::Replication,
        }
    }
}

/// The server's answer to a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Reply {
    /// Asynchronous command accepted; work goes on, progress comes as events.
    Accepted,
    /// A yes/no answer.
    Bool(bool),
    /// Synchronous command done.
    Done,
    /// Diff descriptions.
    Diffs(Vec<MetaDiffDto>),
    /// A gid (e.g. of a new snapshot).
    Gid(u64),
    /// A 128-bit hash.
    Hash([u8; 16]),
    /// Lines of text (status, listings).
    Lines(Vec<String>),
    /// A meta state.
    MetaState(MetaStateDto),
    /// A number (sizes, counts, pids).
    Number(u64),
    /// The peers bound to a volume.
    Peers(VolPeers),
    /// Snapshots (latest-snap, restorable, gather-latest-snap).
    Snapshots(Vec<SnapshotInfo>),
    /// A string.
    Text(String),
    /// A uuid.
    Uuid(Uuid),
    /// Software and protocol version.
    Version {
        /// Software description.
        software: String,
        /// Protocol version in use.
        protocol: u16,
    },
    // Protocol 4: the typed answers. A peer that speaks less gets them as the
    // `Lines` or `Text` they render to ([`Reply::for_version`]).
    /// A volume's state (`get state`).
    State(VolumeState),
    /// `status` of a daemon or of one volume.
    Status(Box<Status>),
    /// `get ts-delta`.
    TsDelta(Vec<TsDeltaRow>),
    /// `get log-usage`.
    LogUsage(Vec<LogUsageRow>),
    /// `get all-actions`.
    Actions(Vec<VolActions>),
    /// `get base-all`.
    Bases(Vec<VolBase>),
    /// `get num-diff` / `total-diff-size`.
    DiffStats(DiffStats),
    /// `get restored`.
    Restored(Vec<RestoredImage>),
    /// `archive-info get`.
    ArchiveInfo(ArchiveDest),
    /// `get host-type`.
    HostType(crate::Role),
    /// Names: volumes, a proxy volume's archives, cold snapshots.
    Names(Vec<String>),
    /// A volume's retention policy and its next pass.
    Retention(RetentionReport),
}

impl Reply {
    /// This reply in the form a peer speaking `version` knows: the typed answers of
    /// protocol 4 become the lines (or the one line) they render to; everything else
    /// is unchanged. Called on every reply a daemon sends.
    pub fn for_version(self, version: u16) -> Reply {
        if version >= PROTOCOL_VERSION_TYPED {
            return self;
        }
        let lines = |v: Vec<String>| Reply::Lines(v);
        match self {
            Reply::State(s) => Reply::Text(s.name().to_owned()),
            Reply::Status(s) => lines(s.lines()),
            Reply::TsDelta(r) => lines(r.iter().map(TsDeltaRow::line).collect()),
            Reply::LogUsage(r) => lines(r.iter().map(LogUsageRow::line).collect()),
            Reply::Actions(r) => lines(r.iter().map(VolActions::line).collect()),
            Reply::Bases(r) => lines(r.iter().map(VolBase::line).collect()),
            Reply::DiffStats(d) => lines(d.lines()),
            Reply::Restored(r) => lines(r.iter().map(RestoredImage::line).collect()),
            Reply::ArchiveInfo(d) => Reply::Text(d.line()),
            Reply::HostType(r) => Reply::Text(r.as_str().to_owned()),
            Reply::Names(n) => lines(n),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Protocol 3 only appended variants: what a version-2 peer sends and receives keeps
    /// its encoding, and what it cannot decode is never sent to it.
    #[test]
    fn protocol_3_appends_only() {
        let first = |v: &dyn erased::Enc| v.first_byte();
        assert_eq!(first(&Step::Zero { len_lb: 1 }), 12);
        let note = QueueNote {
            queue: "archive a0".into(),
            ahead: 0,
            running: 2,
            slots: 2,
            wait_left_s: 5,
        };
        assert_eq!(first(&Step::Queued(note)), 13);
        let failed = Event::Failed {
            vol: "v".into(),
            op: "restore".into(),
            error: "e".into(),
        };
        assert_eq!(first(&failed), 5);
        let queue = Event::Queue {
            vol: "v".into(),
            op: "restore".into(),
            ahead: Some(1),
            running: 2,
            slots: 2,
        };
        assert_eq!(first(&queue), 6);
        assert_eq!(queue.clone().for_version(PROTOCOL_VERSION_MIN), None);
        assert_eq!(
            queue.clone().for_version(PROTOCOL_VERSION_QUEUE),
            Some(queue.clone())
        );
        assert_eq!(
            failed.clone().for_version(PROTOCOL_VERSION_MIN),
            Some(failed)
        );
        const { assert!(PROTOCOL_VERSION_MIN < PROTOCOL_VERSION_QUEUE) };
        assert_eq!(queue.vol(), Some("v"));
    }

    /// Protocol 4 only appended variants to [`Reply`]; a peer speaking 3 or less is never
    /// sent one of them (property: every reply, downgraded, encodes to a variant it knows),
    /// and what it gets are the lines the typed answer renders to.
    #[test]
    fn protocol_4_appends_typed_answers_and_downgrades_them() {
        let first = |v: &dyn erased::Enc| v.first_byte();
        let version = Reply::Version {
            software: "x".into(),
            protocol: 4,
        };
        assert_eq!(first(&version), 13);
        let state = Reply::State(VolumeState::Archive(ArchiveState::Archived));
        assert_eq!(first(&state), 14);
        assert_eq!(state.clone().for_version(3), Reply::Text("Archived".into()));
        assert_eq!(state.clone().for_version(4), state);
        let changed = Event::VolState {
            vol: "v".into(),
            state: VolumeState::Storage(StorageState::Target),
            at_s: 7,
        };
        assert_eq!(first(&changed), 7);
        assert_eq!(
            changed.clone().for_version(PROTOCOL_VERSION_QUEUE),
            Some(Event::State {
                vol: "v".into(),
                state: "Target".into(),
                at_s: 7
            })
        );
        assert_eq!(changed.clone().for_version(4), Some(changed));
        let stats = Reply::DiffStats(DiffStats {
            num: 3,
            total_size: 99,
        });
        assert_eq!(
            stats.for_version(2),
            Reply::Lines(vec!["num_diff:3".into(), "total_diff_size:99".into()])
        );
        std::thread::Builder::new()
            .stack_size(256 << 20)
            .spawn(move || {
                let mut runner =
                    proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(256));
                runner
                    .run(&any::<Reply>(), |r| {
                        // The retention report answers `Query::Retention`, which a peer
                        // speaking 3 or less cannot send: its decoder has no such query.
                        if matches!(r, Reply::Retention(_)) {
                            return Ok(());
                        }
                        for v in [PROTOCOL_VERSION_MIN, PROTOCOL_VERSION_QUEUE] {
                            let old = r.clone().for_version(v);
                            prop_assert!(first(&old) <= 13, "{old:?} sent to a v{v} peer");
                        }
                        prop_assert_eq!(r.clone().for_version(PROTOCOL_VERSION), r);
                        Ok(())
                    })
                    .unwrap();
            })
            .unwrap()
            .join()
            .unwrap();
    }

    mod erased {
        pub(super) trait Enc {
            fn first_byte(&self) -> u8;
        }
        impl<T: serde::Serialize> Enc for T {
            fn first_byte(&self) -> u8 {
                postcard::to_stdvec(self).unwrap()[0]
            }
        }
    }

    fn round_trip<T>(v: &T)
    where
        T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
    {
        let bytes = postcard::to_stdvec(v).unwrap();
        let back: T = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(&back, v);
    }

    /// Round-trips `cases` arbitrary values of `T`. The derived strategies of the big
    /// nested enums recurse deeply in debug builds, so this runs on a thread with a large
    /// stack.
    fn check_round_trips<T>(cases: u32)
    where
        T: Arbitrary + Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
    {
        std::thread::Builder::new()
            .stack_size(256 << 20)
            .spawn(move || {
                let mut runner =
                    proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(cases));
                runner
                    .run(&any::<T>(), |v| {
                        round_trip(&v);
                        Ok(())
                    })
                    .unwrap();
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn every_message_type_round_trips() {
        check_round_trips::<Message>(512);
        check_round_trips::<Hello>(64);
        check_round_trips::<Welcome>(64);
        check_round_trips::<Request>(256);
        check_round_trips::<Command>(256);
        check_round_trips::<Query>(256);
        check_round_trips::<Reply>(256);
        check_round_trips::<Step>(256);
        check_round_trips::<Event>(256);
        check_round_trips::<WireError>(64);
        check_round_trips::<OpClass>(16);
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = postcard::from_bytes::<Message>(&bytes);
            let _ = postcard::from_bytes::<Hello>(&bytes);
        }
        #[test]
        fn negotiation_picks_a_common_version(lo in 0u16..5, hi in 0u16..5) {
            let hello = Hello { magic: MAGIC, version_min: lo, version_max: hi, software: "t".into() };
            match negotiate(&hello, 1, 3) {
                Ok(v) => prop_assert!(lo <= v && v <= hi && (1..=3).contains(&v)),
                Err(e) => {
                    prop_assert_eq!(e.code, ErrorCode::VersionMismatch);
                    prop_assert!(lo > hi || hi < 1 || lo > 3);
                }
            }
        }
    }

    #[test]
    fn hello_encoding_is_frozen() {
        let h = Hello::ours("x");
        let bytes = postcard::to_stdvec(&h).unwrap();
        // Versions 2..=4, then the software string.
        assert_eq!(bytes, [b'W', b'A', b'L', b'B', 2, 4, 1, b'x']);
    }

    #[test]
    fn mismatch_message_names_both_ranges() {
        let hello = Hello {
            magic: MAGIC,
            version_min: 7,
            version_max: 9,
            software: "walb 9".into(),
        };
        let e = negotiate(&hello, 1, 1).unwrap_err();
        assert!(
            e.message.contains("7..=9") && e.message.contains("1..=1"),
            "{e}"
        );
    }
}
