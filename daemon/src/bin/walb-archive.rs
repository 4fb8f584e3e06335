//! `walb-archive`: the archive daemon (see `walb-archive --help`).

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    walb_daemon::server::main_for(walb_wire::Role::Archive)
}
