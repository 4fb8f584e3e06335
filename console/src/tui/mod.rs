//! The terminal UI: live views of the cluster from the daemons' event streams.
//!
//! Elm-style: a pure [`model::Model`], a pure [`update::update`] (`Msg` in, model
//! changed, [`update::Effect`]s out), pure views ([`view::draw`]), and an IO shell
//! ([`app`]) at the edge that turns effects into subscriptions, queries and commands and
//! their results back into messages.
//!
//! # Layout
//!
//! - [`model`]: the live model ([`crate::model::Live`]) under the screen's state.
//! - [`msg`]: messages and effects (the live model's, keys, commands).
//! - [`mod@update`]: the update function.
//! - [`input`]: what keys do in each mode (menus, prompts, palette, confirmations).
//! - [`keys`]: the key binding table (help and footer come from it).
//! - [`actions`]: the action table (each action an exec command line).
//! - [`mode`]: what has the keyboard besides the view (menus, prompts, palette).
//! - [`loss`]: what a destructive command loses (the confirmation's lines).
//! - [`palette`]: completion for the command palette.
//! - [`view`]: drawing, one module per view plus overlays.
//! - [`dump`]: the plain status dump printed when stdout is not a terminal.
//! - [`app`]: the IO shell, and the one-shot snapshot used by the dump.

pub mod actions;
pub mod app;
pub mod dump;
pub mod input;
pub mod keys;
pub mod loss;
pub mod mode;
pub mod model;
pub mod msg;
pub mod palette;
pub mod update;
pub mod view;

pub use model::Model;
pub use update::{update, Effect, Msg};
