//! Events a daemon pushes to its subscribers.

use serde::{Deserialize, Serialize};

use super::{MetaDiffDto, VolumeState, PROTOCOL_VERSION_QUEUE, PROTOCOL_VERSION_TYPED};

/// An event on the subscription stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Event {
    /// A volume's diff list changed.
    DiffList {
        /// Volume.
        vol: String,
        /// The diffs now held.
        diffs: Vec<MetaDiffDto>,
    },
    /// The subscriber was too slow; this many events were dropped.
    Lagged {
        /// Dropped events.
        missed: u64,
    },
    /// Log usage of a storage volume.
    LogUsage {
        /// Volume.
        vol: String,
        /// Used, physical blocks.
        usage_pb: u64,
        /// Capacity, physical blocks.
        capacity_pb: u64,
    },
    /// Progress of a long operation.
    Progress {
        /// Volume.
        vol: String,
        /// The operation (`full-sync`, `replicate`, `apply`, ...).
        op: String,
        /// Logical blocks done.
        done_lb: u64,
        /// Logical blocks in all.
        total_lb: u64,
    },
    /// A volume changed state.
    State {
        /// Volume.
        vol: String,
        /// The new state's name.
        state: String,
        /// When, seconds since the epoch.
        at_s: u64,
    },
    /// A long operation that reported [`Event::Progress`] failed (one that succeeds ends
    /// with a last progress of `done_lb == total_lb`, or with a state change).
    Failed {
        /// Volume.
        vol: String,
        /// The operation, as in its progress events.
        op: String,
        /// What went wrong.
        error: String,
    },
    /// Protocol 3: an operation waits for a foreground slot (`ahead: Some`), or got one
    /// and runs (`ahead: None`). One that gives up waiting ends with [`Event::Failed`].
    Queue {
        /// Volume.
        vol: String,
        /// The operation, as in its progress events.
        op: String,
        /// Operations ahead of it in the queue; `None`: it left the queue with a slot.
        ahead: Option<u32>,
        /// Foreground tasks running.
        running: u32,
        /// Foreground slots (`--fg`).
        slots: u32,
    },
    /// Protocol 4: a volume changed state, typed (a subscriber speaking 2 or 3 gets it as
    /// [`Event::State`] with the state's name).
    VolState {
        /// Volume.
        vol: String,
        /// The new state.
        state: VolumeState,
        /// When, seconds since the epoch.
        at_s: u64,
    },
    /// A retention pass began a step (sent on connections that speak
    /// [`super::PROTOCOL_VERSION_RETENTION`]).
    Retention(super::RetentionPass),
}

impl Event {
    /// This event in the form a subscriber speaking `version` knows, or `None` when it
    /// has none: a typed state change becomes [`Event::State`] with the name below
    /// protocol 4; a queue note is not sent below protocol 3.
    pub fn for_version(self, version: u16) -> Option<Event> {
        match self {
            Event::Queue { .. } if version < PROTOCOL_VERSION_QUEUE => None,
            Event::VolState { vol, state, at_s } if version < PROTOCOL_VERSION_TYPED => {
                Some(Event::State {
                    vol,
                    state: state.name().to_owned(),
                    at_s,
                })
            }
            Event::Retention(_) if version < super::PROTOCOL_VERSION_RETENTION => None,
            other => Some(other),
        }
    }

    /// The volume this event is about, if any.
    pub fn vol(&self) -> Option<&str> {
        match self {
            Event::DiffList { vol, .. }
            | Event::LogUsage { vol, .. }
            | Event::Progress { vol, .. }
            | Event::State { vol, .. }
            | Event::Failed { vol, .. }
            | Event::Queue { vol, .. }
            | Event::VolState { vol, .. } => Some(vol),
            Event::Retention(p) => Some(&p.vol),
            Event::Lagged { .. } => None,
        }
    }
}

// ----------------------------------------------------------------------------------------
// Snapshot model DTOs
