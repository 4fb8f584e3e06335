//! What has the keyboard besides the view ([`Mode`]): the palette, a confirmation, an
//! action menu, a prompt for an action's last arguments, a command's output. Plain data
//! that [`super::input`] changes on keys and the overlays draw.

use crate::exec::ExecCmd;

/// The command palette.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Palette {
    /// What is typed.
    pub input: String,
    /// The last parse or refusal message.
    pub error: Option<String>,
    /// Completion candidates for the word being typed.
    pub candidates: Vec<String>,
    /// Which candidate Tab put in last (cycling).
    pub cycle: Option<usize>,
    /// Position in the history while browsing it.
    pub history_pos: Option<usize>,
}

/// A destructive command waiting for `y`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confirm {
    /// The command line.
    pub line: String,
    /// The parsed command.
    pub cmd: ExecCmd,
    /// What will be lost, one point per line.
    pub loss: Vec<String>,
}

/// An action menu: the commands that apply to the selection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Menu {
    /// What the actions apply to.
    pub title: String,
    /// The actions.
    pub items: Vec<MenuItem>,
    /// The highlighted item.
    pub sel: usize,
}

/// One item of a [`Menu`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MenuItem {
    /// Its key.
    pub key: char,
    /// What it is called.
    pub label: String,
    /// The command line (without the words [`Then`] asks for).
    pub line: String,
    /// What choosing it does.
    pub then: Then,
}

/// What choosing a [`MenuItem`] does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Then {
    /// Runs the line (destructive commands ask first).
    Run,
    /// Asks for the last arguments in a [`Prompt`].
    Prompt {
        /// Their names (`SIZE`).
        args: String,
        /// What to type.
        hint: String,
    },
    /// Offers a menu of the line completed with each value.
    Choose {
        /// The argument's name (`DST`).
        args: String,
        /// The values.
        values: Vec<String>,
    },
}

impl MenuItem {
    /// The line as the menu shows it: with the names of the arguments still to give.
    pub fn shown(&self) -> String {
        match &self.then {
            Then::Run => self.line.clone(),
            Then::Prompt { args, .. } | Then::Choose { args, .. } => {
                format!("{} {args}", self.line)
            }
        }
    }
}

/// A prompt for an action's last arguments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Prompt {
    /// The command line they complete.
    pub line: String,
    /// Their names (`SIZE`).
    pub args: String,
    /// What to type.
    pub hint: String,
    /// What is typed so far.
    pub input: String,
    /// Why the last attempt did not parse.
    pub error: Option<String>,
}

/// A command's output, shown until `esc`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// The command line.
    pub title: String,
    /// Its lines.
    pub lines: Vec<String>,
    /// First line shown.
    pub scroll: usize,
}

/// What has the keyboard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// The view.
    #[default]
    Normal,
    /// The help overlay.
    Help,
    /// Typing a filter.
    Filter,
    /// The command palette.
    Palette(Palette),
    /// A confirmation.
    Confirm(Confirm),
    /// An action menu.
    Menu(Menu),
    /// The last arguments of an action.
    Prompt(Prompt),
    /// A command's output.
    Output(Output),
}
