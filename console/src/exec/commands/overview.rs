//! `help`, `state-all` and `status`: the command list and the cluster at a glance.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinSet;

use super::help_lines;
use super::spec::*;
use super::ExecCmd;
use crate::client::{Client, ClientError};
use crate::cluster::NodeEntry;
use crate::exec::output::{Outcome, RowError, StateRow, StatusBlock};

/// A parsed command of this family (help, state-all or status).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OverviewCmd {
    /// `help [COMMAND]`.
    Help {
        /// One command's usage, or all.
        command: Option<String>,
    },
    /// `state-all VOL`.
    StateAll {
        /// Volume.
        vol: String,
    },
    /// `status [NODE] [VOL]`: a known node name first is the node, else the volume.
    Status {
        /// Node or volume.
        first: Option<String>,
        /// Volume.
        second: Option<String>,
    },
}

/// This family's rows of the command table, in help order.
pub(super) const ROWS: &[CommandSpec] = &[
    CommandSpec {
        name: "help",
        args: "[COMMAND]",
        about: "list the commands, or show one's usage",
        options: &[],
        parse: |a| Ok(ExecCmd::Overview(OverviewCmd::Help { command: a.opt() })),
    },
    CommandSpec {
        name: "state-all",
        args: "VOL",
        about: "the volume's state on every node of the cluster file",
        options: &[],
        parse: |a| {
            Ok(ExecCmd::Overview(OverviewCmd::StateAll {
                vol: a.req("VOL")?,
            }))
        },
    },
    CommandSpec {
        name: "status",
        args: "[NODE] [VOL]",
        about: "status lines of one node, or of every node (of one volume)",
        options: &[],
        parse: |a| {
            let first = a.opt();
            let second = a.opt();
            Ok(ExecCmd::Overview(OverviewCmd::Status { first, second }))
        },
    },
];

fn row_error(e: ClientError) -> RowError {
    if e.is_unreachable() {
        match e {
            ClientError::Unreachable { message, .. } | ClientError::Resolve { message, .. } => {
                RowError::Unreachable(message)
            }
            other => RowError::Unreachable(other.to_string()),
        }
    } else {
        RowError::Failed(e.to_string())
    }
}

/// Asks every node of the cluster file at once (`ask(client, node)`), answers in the
/// cluster file's order; a failed question (or a task that died) is the row's error.
async fn ask_every_node<T, F, Fut>(
    client: &Client,
    ask: F,
) -> Vec<(&NodeEntry, Result<T, RowError>)>
where
    T: Send + 'static,
    F: Fn(Client, String) -> Fut,
    Fut: Future<Output = Result<T, ClientError>> + Send + 'static,
{
    let mut set = JoinSet::new();
    for (i, n) in client.cluster().nodes.iter().enumerate() {
        let asked = ask(client.clone(), n.name.clone());
        set.spawn(async move { (i, asked.await) });
    }
    let mut results: Vec<Option<Result<T, ClientError>>> =
        client.cluster().nodes.iter().map(|_| None).collect();
    while let Some(r) = set.join_next().await {
        if let Ok((i, r)) = r {
            if let Some(slot) = results.get_mut(i) {
                *slot = Some(r);
            }
        }
    }
    client
        .cluster()
        .nodes
        .iter()
        .zip(results)
        .map(|(n, r)| {
            let r = match r {
                Some(Ok(v)) => Ok(v),
                Some(Err(e)) => Err(row_error(e)),
                None => Err(RowError::Failed("the query task failed".into())),
            };
            (n, r)
        })
        .collect()
}

/// `state-all`: every node's state of `vol`, asked at once.
pub async fn state_all(client: &Client, vol: &str) -> Vec<StateRow> {
    let vol = vol.to_owned();
    ask_every_node(client, |c, name| {
        let vol = vol.clone();
        async move { c.state(&name, &vol).await }
    })
    .await
    .into_iter()
    .map(|(n, state)| StateRow {
        node: n.name.clone(),
        addr: n.addr.clone(),
        role: n.role,
        state,
    })
    .collect()
}

/// `status` of every node (of one volume).
pub async fn status_all(client: &Client, vol: Option<&str>) -> Vec<StatusBlock> {
    let vol = vol.map(str::to_owned);
    ask_every_node(client, |c, name| {
        let vol = vol.clone();
        async move { c.status(&name, vol.as_deref()).await }
    })
    .await
    .into_iter()
    .map(|(n, status)| StatusBlock {
        node: n.name.clone(),
        addr: n.addr.clone(),
        role: n.role,
        status,
    })
    .collect()
}

impl OverviewCmd {
    /// The command's name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Help { .. } => "help",
            Self::StateAll { .. } => "state-all",
            Self::Status { .. } => "status",
        }
    }

    /// Whether the command only reads.
    pub fn is_read_only(&self) -> bool {
        true
    }

    /// The node and volume the command is about, if it names them.
    pub fn target(&self) -> (Option<&str>, Option<&str>) {
        match self {
            Self::Help { .. } => (None, None),
            Self::StateAll { vol } => (None, Some(vol)),
            Self::Status { first, second } => (first.as_deref(), second.as_deref()),
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
            Self::Help { command } => help_lines(command.as_deref())
                .map(Outcome::Lines)
                .map_err(|e| ClientError::State(e.to_string())),
            Self::StateAll { vol } => Ok(Outcome::StateAll(state_all(client, vol).await)),
            Self::Status { first, second } => {
                if let Some(f) = first {
                    if second.is_some() || cl.node(f).is_ok() {
                        cl.node(f)?;
                        let s = client.status(f, second.as_deref()).await?;
                        return Ok(Outcome::typed(&s, s.lines()));
                    }
                }
                Ok(Outcome::Status(status_all(client, first.as_deref()).await))
            }
        }
    }
}
