//! `pilot-rendezvous`: the registry and the beacon in one process. See `docs/OPERATIONS.md`.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match pilot_bins::rendezvous::parse(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(message) => {
            eprint!("{message}");
            return ExitCode::from(2);
        }
    };
    match pilot_bins::rendezvous::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            if let Some(hint) = failure.hint {
                eprintln!("hint:  {hint}");
            }
            ExitCode::FAILURE
        }
    }
}
