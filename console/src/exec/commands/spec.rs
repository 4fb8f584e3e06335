//! What the command table is made of: a row ([`CommandSpec`]: name, usage, help, options,
//! parse function), the `--options` ([`OptSpec`]), the arguments a parse function reads
//! ([`Args`]), the mistakes it reports ([`UsageError`]) and the number formats commands
//! share.

use std::collections::VecDeque;
use std::time::Duration;

use super::ExecCmd;
use crate::exec::output::Outcome;

/// A command-line mistake: what is wrong and the command's usage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}{}", .command.as_ref().map(|c| format!("{c}: ")).unwrap_or_default(), .usage.as_ref().map(|u| format!(" (usage: {u})")).unwrap_or_default())]
pub struct UsageError {
    /// The command, if known.
    pub command: Option<String>,
    /// What is wrong.
    pub message: String,
    /// `NAME ARGS...`, if the command is known.
    pub usage: Option<String>,
}

impl UsageError {
    pub(super) fn plain(message: impl Into<String>) -> Self {
        Self {
            command: None,
            message: message.into(),
            usage: None,
        }
    }
}

/// An `--option` a command accepts.
#[derive(Debug, Clone, Copy)]
pub struct OptSpec {
    /// `--name`.
    pub name: &'static str,
    /// The value's placeholder, or `None` for a flag.
    pub value: Option<&'static str>,
}

pub(super) const OPT_ZERO_CLEAR: OptSpec = OptSpec {
    name: "--zero-clear",
    value: None,
};
pub(super) const OPT_TIMEOUT: OptSpec = OptSpec {
    name: "--timeout",
    value: Some("S"),
};
pub(super) const OPT_NO_WAIT: OptSpec = OptSpec {
    name: "--no-wait",
    value: None,
};
pub(super) const OPT_BULK: OptSpec = OptSpec {
    name: "--bulk",
    value: Some("LB"),
};
pub(super) const OPT_OUT: OptSpec = OptSpec {
    name: "--out",
    value: Some("FILE"),
};
pub(super) const OPT_SAMPLE: OptSpec = OptSpec {
    name: "--sample",
    value: Some("S"),
};
pub(super) const OPT_GID: OptSpec = OptSpec {
    name: "--gid",
    value: Some("GID"),
};
pub(super) const OPT_RESYNC: OptSpec = OptSpec {
    name: "--resync",
    value: None,
};
pub(super) const OPT_DONT_MERGE: OptSpec = OptSpec {
    name: "--dont-merge",
    value: None,
};
pub(super) const OPT_SYNC: OptSpec = OptSpec {
    name: "--sync",
    value: None,
};
pub(super) const OPT_ADD: OptSpec = OptSpec {
    name: "--add",
    value: None,
};
pub(super) const OPT_REMOVE: OptSpec = OptSpec {
    name: "--remove",
    value: None,
};

// Options of the walblib procedures (go-standby, copy-archive-info, cluster resize, merge
// by size, replicate's compression and merge size, latest-clean).
pub(super) const OPT_MAX_MB: OptSpec = OptSpec {
    name: "--max-mb",
    value: Some("N"),
};
pub(super) const OPT_COMPRESS: OptSpec = OptSpec {
    name: "--compress",
    value: Some("CODEC:LEVEL"),
};
pub(super) const OPT_MAX_MERGE_MB: OptSpec = OptSpec {
    name: "--max-merge-mb",
    value: Some("N"),
};

type ParseFn = fn(&mut Args) -> Result<ExecCmd, String>;

/// One row of the command table.
#[derive(Clone, Copy)]
pub struct CommandSpec {
    /// The command's name.
    pub name: &'static str,
    /// Its arguments, after the name.
    pub args: &'static str,
    /// One line of help.
    pub about: &'static str,
    /// The `--options` it accepts.
    pub options: &'static [OptSpec],
    pub(super) parse: ParseFn,
}

impl CommandSpec {
    /// `NAME ARGS [--options]`.
    pub fn usage(&self) -> String {
        let mut u = self.name.to_owned();
        if !self.args.is_empty() {
            u.push(' ');
            u.push_str(self.args);
        }
        for o in self.options {
            match o.value {
                Some(v) => u.push_str(&format!(" [{} {v}]", o.name)),
                None => u.push_str(&format!(" [{}]", o.name)),
            }
        }
        u
    }
}

impl std::fmt::Debug for CommandSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandSpec")
            .field("name", &self.name)
            .finish()
    }
}

/// The arguments of one command: positionals in order, and its `--options`.
pub struct Args {
    pos: VecDeque<String>,
    opts: Vec<(&'static str, Option<String>)>,
}

impl Args {
    pub(super) fn new(spec: &CommandSpec, raw: &[String]) -> Result<Args, String> {
        let mut pos = VecDeque::new();
        let mut opts = Vec::new();
        let mut it = raw.iter();
        while let Some(a) = it.next() {
            if !(a.starts_with("--") && a.len() > 2) {
                pos.push_back(a.clone());
                continue;
            }
            let (name, inline) = match a.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (a.as_str(), None),
            };
            let o = spec
                .options
                .iter()
                .find(|o| o.name == name)
                .ok_or_else(|| {
                    let known: Vec<&str> = spec.options.iter().map(|o| o.name).collect();
                    format!(
                        "unknown option {name}{} (console options such as --json go before --exec)",
                        if known.is_empty() {
                            String::new()
                        } else {
                            format!("; it takes {}", known.join(", "))
                        }
                    )
                })?;
            let value = match (o.value, inline) {
                (None, None) => None,
                (None, Some(_)) => return Err(format!("{name} takes no value")),
                (Some(_), Some(v)) => Some(v),
                (Some(ph), None) => Some(
                    it.next()
                        .cloned()
                        .ok_or_else(|| format!("{name} needs a value {ph}"))?,
                ),
            };
            if opts.iter().any(|(n, _)| *n == o.name) {
                return Err(format!("{name} given twice"));
            }
            opts.push((o.name, value));
        }
        Ok(Args { pos, opts })
    }

    /// The next positional argument, required.
    pub fn req(&mut self, what: &str) -> Result<String, String> {
        self.pos
            .pop_front()
            .ok_or_else(|| format!("missing {what}"))
    }

    /// The next positional argument, if any.
    pub fn opt(&mut self) -> Option<String> {
        self.pos.pop_front()
    }

    /// Every remaining positional argument.
    pub fn rest(&mut self) -> Vec<String> {
        self.pos.drain(..).collect()
    }

    /// The next positional argument as a number, required.
    pub fn req_num(&mut self, what: &str) -> Result<u64, String> {
        let s = self.req(what)?;
        number(&s, what)
    }

    /// The next positional argument as a number, if any.
    pub fn opt_num(&mut self, what: &str) -> Result<Option<u64>, String> {
        self.opt().map(|s| number(&s, what)).transpose()
    }

    /// An optional keyword (`all`): true if present.
    pub fn keyword(&mut self, word: &str) -> Result<bool, String> {
        match self.pos.front() {
            Some(w) if w == word => {
                self.pos.pop_front();
                Ok(true)
            }
            Some(w) if w == "0" || w == "1" => {
                let yes = w == "1";
                self.pos.pop_front();
                Ok(yes)
            }
            _ => Ok(false),
        }
    }

    /// Whether flag `name` was given.
    pub fn flag(&mut self, name: &str) -> bool {
        self.opts.iter().any(|(n, _)| *n == name)
    }

    /// The value of option `name`, as a number.
    pub fn value_num(&mut self, name: &str) -> Result<Option<u64>, String> {
        self.opts
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.as_deref())
            .map(|v| number(v, name))
            .transpose()
    }

    /// `--timeout S` (whole or fractional seconds), else `default`.
    pub fn timeout(&mut self, default: Duration) -> Result<Duration, String> {
        self.seconds("--timeout", default)
    }

    /// Option `name` as whole or fractional seconds, else `default`.
    pub fn seconds(&mut self, name: &str, default: Duration) -> Result<Duration, String> {
        match self.value_str(name) {
            None => Ok(default),
            Some(v) => v
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e9)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| format!("{name} wants seconds, got {v:?}")),
        }
    }

    /// The value of option `name`, as given.
    pub fn value_str(&mut self, name: &str) -> Option<String> {
        self.opts
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.clone())
    }

    pub(super) fn finish(self) -> Result<(), String> {
        match self.pos.front() {
            None => Ok(()),
            Some(x) => Err(format!("unexpected argument {x:?}")),
        }
    }
}

/// A number, or what is wrong with it.
pub(super) fn number(s: &str, what: &str) -> Result<u64, String> {
    s.parse()
        .map_err(|_| format!("{what} must be a number, got {s:?}"))
}

/// A rate in bytes per second: a number with an optional k, m or g suffix (powers of
/// 1024).
pub(super) fn bytes_per_second(s: &str) -> Result<u64, String> {
    let (num, shift) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_lowercase() {
                'k' => 10,
                'm' => 20,
                'g' => 30,
                _ => return Err(format!("BPS {s:?}: the suffix is k, m or g")),
            };
            (&s[..i], shift)
        }
        _ => (s, 0),
    };
    number(num, "BPS")?
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("BPS {s:?} is too large"))
}

/// A size in bytes (`k`, `m`, `g`, `t` suffixes, powers of 1024) as logical blocks; it
/// must be a positive multiple of 512.
pub(super) fn size_lb(s: &str) -> Result<u64, String> {
    let bad = || format!("SIZE must be bytes with an optional k/m/g/t suffix, got {s:?}");
    let t = s.trim().to_ascii_lowercase();
    let (digits, shift) = match t.char_indices().last() {
        Some((i, 'k')) => (&t[..i], 10),
        Some((i, 'm')) => (&t[..i], 20),
        Some((i, 'g')) => (&t[..i], 30),
        Some((i, 't')) => (&t[..i], 40),
        _ => (&t[..], 0),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let bytes = n.checked_mul(1u64 << shift).ok_or_else(bad)?;
    if bytes == 0 || bytes % 512 != 0 {
        return Err(format!("SIZE {s} is not a positive multiple of 512 bytes"));
    }
    Ok(bytes / 512)
}

/// `NODE VOL` done, in state `state`.
pub(super) fn done(node: &str, vol: &str, state: walb_wire::msg::VolumeState) -> Outcome {
    Outcome::Done {
        node: node.to_owned(),
        vol: Some(vol.to_owned()),
        state: Some(state),
    }
}

/// `NODE [VOL]` changed; no state to report.
pub(super) fn changed(node: &str, vol: Option<&str>) -> Outcome {
    Outcome::Done {
        node: node.to_owned(),
        vol: vol.map(str::to_owned),
        state: None,
    }
}
