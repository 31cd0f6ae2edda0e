//! `hull`: a daemonless high-level container CLI. The binary is a thin shim;
//! each command lives in its own module under `cli/`.

mod cli;
mod progress;

fn main() -> std::process::ExitCode {
    cli::main()
}
