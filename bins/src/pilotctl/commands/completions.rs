//! `completions <bash|zsh|fish>`: a shell completion script generated from the same clap
//! definition that parses the command line.

use crate::pilotctl::args::Args;
use crate::pilotctl::output::{CliError, Success};
use clap_complete::Shell;

/// `completions <bash|zsh|fish>`: writes the script to stdout.
pub fn completions(args: &Args) -> Result<Success, CliError> {
    args.expect_positional(1, 1)?;
    let shell = match args.arg(0).unwrap_or_default() {
        "bash" => Shell::Bash,
        "zsh" => Shell::Zsh,
        "fish" => Shell::Fish,
        other => {
            return Err(CliError::usage(
                "completions",
                format!("no completions for shell {other:?}"),
            )
            .hint("pilotctl completions bash|zsh|fish"))
        }
    };
    let mut script = Vec::new();
    clap_complete::generate(
        shell,
        &mut crate::pilotctl::parser::command(),
        "pilotctl",
        &mut script,
    );
    // Scripts are printed as they are: an envelope would make them unusable.
    Ok(Success::raw(String::from_utf8_lossy(&script).into_owned()))
}
