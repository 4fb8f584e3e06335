//! `walb-proxy`: the proxy daemon (see `walb-proxy --help`).

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    walb_daemon::server::main_for(walb_wire::Role::Proxy)
}
