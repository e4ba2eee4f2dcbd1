//! The `oneiric` binary: parse arguments, run one command, turn its result into an exit code.

#[global_allocator]
static ALLOCATOR: oneiric::alloc::Allocator = oneiric::alloc::Allocator;

fn main() -> std::process::ExitCode {
    oneiric::cli::main()
}
