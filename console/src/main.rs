//! The `walb-console` binary.

use anyhow::Result;
use clap::Parser;
use walb_console::ca;
use walb_console::cli::{CaCommand, Cli, Command};

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Ca(CaCommand::Init {
            ca_dir,
            name,
            days,
            force,
        }) => {
            let dir = ca::ca_dir(ca_dir)?;
            let cert = ca::init(&dir, &name, days, force)?;
            println!("CA certificate: {}", cert.display());
            println!(
                "CA key:         {}",
                dir.join(walb_wire::certs::CA_KEY_FILE).display()
            );
        }
        Command::Ca(CaCommand::Issue {
            role,
            id,
            hosts,
            ca_dir,
            out,
            days,
            force,
        }) => {
            let dir = ca::ca_dir(ca_dir)?;
            let out = out.unwrap_or_else(|| dir.clone());
            let req = ca::IssueRequest {
                role,
                id,
                hosts,
                days,
                force,
            };
            let files = ca::issue(&dir, &out, &req)?;
            println!("certificate: {}", files.cert.display());
            println!("key:         {}", files.key.display());
            println!("CA:          {}", files.ca_cert.display());
        }
    }
    Ok(())
}
