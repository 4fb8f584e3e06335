//! `walb-storage`: the storage daemon (see `walb-storage --help`).

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    walb_daemon::server::main_for(walb_wire::Role::Storage)
}
