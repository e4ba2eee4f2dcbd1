//! The `oneiric` binary: parse arguments, run one command, turn its result into an exit code.

fn main() -> std::process::ExitCode {
    oneiric::cli::main()
}
