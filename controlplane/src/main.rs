//! `ike-daemon --config ike.toml`: negotiates IKEv2 with the configured peers and installs the
//! resulting SAs in the dataplane over its control socket.

use clap::Parser;
use controlplane::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

#[derive(Parser)]
#[command(name = "ike-daemon", version, about = "IKEv2 daemon for the DPDK ESP gateway")]
struct Cli {
    #[arg(long, short)]
    config: PathBuf,
    /// Check the configuration and exit.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: {e}", cli.config.display());
            return ExitCode::from(2);
        }
    };
    if cli.check {
        println!("{}: {} connections: OK", cli.config.display(), cfg.connections.len());
        return ExitCode::SUCCESS;
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            eprintln!("cannot install a signal handler: {e}");
            return ExitCode::FAILURE;
        }
    }
    match controlplane::daemon::run(cfg, stop) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ike-daemon: {e}");
            ExitCode::FAILURE
        }
    }
}
