//! `pilotctl`: the command-line client of the pilot daemon. See `docs/PILOTCTL.md`.

fn main() {
    pilot_bins::pipe::exit_quietly_on_closed_pipe();
    let args = std::env::args().skip(1).collect();
    std::process::exit(pilot_bins::pilotctl::run(args));
}
