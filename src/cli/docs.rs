//! Completions and man pages, generated from the same clap definition as the parser.

use std::path::Path;

use clap::CommandFactory;

use super::{Cli, CliError, CliResult, Exit};

pub fn completions(shell: clap_complete::Shell) -> CliResult {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "oneiric", &mut std::io::stdout());
    Ok(Exit::Ok)
}

pub fn man(out_dir: &Path) -> CliResult {
    let fail =
        |e: std::io::Error| CliError::new(Exit::Failure, format!("{}: {e}", out_dir.display()));
    std::fs::create_dir_all(out_dir).map_err(fail)?;
    let cmd = Cli::command();
    clap_mangen::generate_to(cmd, out_dir).map_err(fail)?;
    Ok(Exit::Ok)
}
