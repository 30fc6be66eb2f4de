//! `ferry completions SHELL` and the man pages (`ferry __man DIR`, run by `cargo xtask man`).
//! Both come from the same clap definition as the parser, so they cannot drift from it.

use crate::cli::Cli;
use crate::exit::Outcome;
use crate::printer::Printer;
use anyhow::Context;
use clap::CommandFactory;
use serde_json::json;
use std::path::{Path, PathBuf};

pub fn completions(shell: clap_complete::Shell, p: &mut Printer) -> anyhow::Result<Outcome> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "ferry", &mut script);
    p.document(&json!({
        "ok": true,
        "shell": shell.to_string(),
        "script": String::from_utf8_lossy(&script),
    }))?;
    p.data(|out| out.write_all(&script))?;
    Ok(Outcome::Ok)
}

/// Writes `ferry.1` and one `ferry-COMMAND.1` per visible command into `dir`.
pub fn man(dir: &Path, p: &mut Printer) -> anyhow::Result<Outcome> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    write_pages(cmd, dir, &mut written)
        .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
    written.sort();
    p.document(&json!({ "ok": true, "pages": written }))?;
    for page in &written {
        p.line(format_args!("wrote {}", page.display()))?;
    }
    Ok(Outcome::Ok)
}

fn write_pages(cmd: clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub.clone(), dir, written)?;
    }
    written.push(clap_mangen::Man::new(cmd).generate_to(dir)?);
    Ok(())
}
