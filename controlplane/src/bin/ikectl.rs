//! `ikectl`: the operator's view of the IKE daemon (and, through it, of the dataplane).
//!
//! ```text
//! ikectl --socket /run/ike.sock list [--json]
//! ikectl --socket /run/ike.sock initiate branch1
//! ikectl --socket /run/ike.sock terminate branch1
//! ikectl stats --dataplane /run/gw.sock
//! ```

use clap::{Parser, Subcommand};
use controlplane::ctl::{IkeCommand, render, request};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "ikectl", version, about = "Operator CLI for the IKE daemon")]
struct Cli {
    /// The IKE daemon's control socket.
    #[arg(long, short, default_value = "/run/ike-daemon.sock")]
    socket: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// IKE and Child SAs with algorithms, ages and traffic.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Start a connection.
    Initiate { connection: String },
    /// Delete a connection's IKE SAs (and their Child SAs) with the peer.
    Terminate { connection: String },
    /// The dataplane's counters (per core, per SA, per drop reason).
    Stats {
        #[arg(long, default_value = "/run/gw.sock")]
        dataplane: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::List { json } => request(&cli.socket, IkeCommand::List).map(|r| {
            let sas = r.ike_sas.unwrap_or_default();
            if json { serde_json::to_string_pretty(&sas).unwrap_or_default() + "\n" } else { render(&sas) }
        }),
        Cmd::Initiate { connection } => {
            request(&cli.socket, IkeCommand::Initiate { connection }).map(|r| r.message.unwrap_or_default() + "\n")
        }
        Cmd::Terminate { connection } => {
            request(&cli.socket, IkeCommand::Terminate { connection }).map(|r| r.message.unwrap_or_default() + "\n")
        }
        Cmd::Stats { dataplane } => {
            ctlproto::request(&dataplane, ctlproto::Command::Stats).map(|r| r.stats.unwrap_or_default().render())
        }
    };
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ikectl: {e}");
            ExitCode::FAILURE
        }
    }
}
