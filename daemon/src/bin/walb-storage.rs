//! `walb-storage`: the storage daemon (see `walb-storage --help`).

fn main() -> std::process::ExitCode {
    walb_daemon::server::main_for(walb_wire::Role::Storage)
}
