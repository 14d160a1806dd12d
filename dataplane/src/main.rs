//! `dataplane`: the DPDK ESP tunnel gateway.
//!
//! ```text
//! dataplane run   --config gw.toml [--run-for SECS] [--control-socket PATH] [-- EAL args...]
//! dataplane check --config gw.toml
//! dataplane stats --socket PATH [--json]
//! dataplane sas   --socket PATH [--json]
//! dataplane ctl   --socket PATH '{"command":"del_sa","name":"to-branch1"}'
//! ```

use clap::{Parser, Subcommand};
use dataplane::config::Config;
use dataplane::control::{self, Command};
use dataplane::gateway::{self, RunOptions};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "dataplane", version, about = "DPDK IPsec ESP tunnel gateway")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the gateway until SIGINT/SIGTERM (or --run-for), then print the counters.
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// Stop after this many seconds (tests and benchmarks).
        #[arg(long)]
        run_for: Option<f64>,
        /// Unix socket for `dataplane stats` (overrides dataplane.control_socket).
        #[arg(long)]
        control_socket: Option<PathBuf>,
        /// Print the final counters as JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Extra DPDK EAL arguments, after those in the configuration.
        #[arg(last = true)]
        eal: Vec<String>,
    },
    /// Check a configuration file and exit.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Read the counters of a running gateway.
    Stats {
        #[arg(long, short)]
        socket: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// List the SAs of a running gateway with their traffic.
    Sas {
        #[arg(long, short)]
        socket: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Send one control command (JSON, as in dataplane::control::Command) and print the answer:
    /// add_sa, del_sa, set_policy, del_policy, list_sas, poll_events, stats.
    Ctl {
        #[arg(long, short)]
        socket: PathBuf,
        /// The command, e.g. '{"command":"del_policy","name":"branch1"}'.
        command: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.cmd, Cmd::Run { .. }) {
        dataplane::heap::reexec_with_huge_pages();
    }
    match cli.cmd {
        Cmd::Check { config } => match Config::load(&config) {
            Ok(c) => {
                println!(
                    "{}: {} ports, {} routes, {} SAs, {} policies: OK",
                    config.display(),
                    c.ports.len(),
                    c.routes.len(),
                    c.sas.len(),
                    c.policies.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", config.display());
                ExitCode::from(2)
            }
        },
        Cmd::Stats { socket, json } => match control::request(&socket, Command::Stats) {
            Ok(r) => {
                let s = r.stats.unwrap_or_default();
                if json {
                    println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
                } else {
                    print!("{}", s.render());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("dataplane stats: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Sas { socket, json } => match control::request(&socket, Command::ListSas) {
            Ok(r) => {
                let sas = r.sas.unwrap_or_default();
                if json {
                    println!("{}", serde_json::to_string_pretty(&sas).unwrap_or_default());
                } else {
                    println!(
                        "{:<20} {:>10} {:>4} {:>16} {:>16} {:>12} {:>14} {:>8}",
                        "SA", "SPI", "dir", "local", "remote", "packets", "bytes", "age s"
                    );
                    for s in sas {
                        println!(
                            "{:<20} {:>#10x} {:>4} {:>16} {:>16} {:>12} {:>14} {:>8}",
                            s.name, s.spi, s.direction, s.local, s.remote, s.packets, s.bytes, s.age_secs
                        );
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("dataplane sas: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Ctl { socket, command } => {
            let cmd: Command = match serde_json::from_str(&command) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("dataplane ctl: not a command: {e}");
                    return ExitCode::from(2);
                }
            };
            match control::request(&socket, cmd) {
                Ok(r) => {
                    println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("dataplane ctl: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Run { config, run_for, control_socket, json, eal } => {
            let cfg = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{}: {e}", config.display());
                    return ExitCode::from(2);
                }
            };
            let stop = Arc::new(AtomicBool::new(false));
            for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
                    eprintln!("cannot install a signal handler: {e}");
                    return ExitCode::FAILURE;
                }
            }
            let opts =
                RunOptions { extra_eal_args: eal, run_for: run_for.map(Duration::from_secs_f64), control_socket, stop };
            match gateway::run(&cfg, &opts) {
                Ok(snap) => {
                    if json {
                        println!("{}", serde_json::to_string_pretty(&snap).unwrap_or_default());
                    } else {
                        print!("{}", snap.render());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("dataplane: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
