//! `cargo xtask man`: a man page for ferry and for each of its commands, written from the
//! binary's own clap definition, which is compiled in here from `src/bin/ferry/cli.rs`.

#[path = "../../src/bin/ferry/cli.rs"]
#[allow(dead_code)] // the arguments are only read by the binary
mod cli;

use anyhow::{Context, Result};
use clap::CommandFactory;
use std::path::{Path, PathBuf};

/// Writes the pages into `dir` (created when missing; stale pages removed); returns their
/// paths, sorted.
pub fn write(dir: &Path) -> Result<Vec<PathBuf>> {
    if dir.exists() {
        for e in std::fs::read_dir(dir)? {
            let path = e?.path();
            if path.extension().is_some_and(|x| x == "1") {
                std::fs::remove_file(&path)?;
            }
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut cmd = cli::Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    pages(cmd, dir, &mut written)
        .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
    written.sort();
    Ok(written)
}

fn pages(cmd: clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        pages(sub.clone(), dir, written)?;
    }
    written.push(clap_mangen::Man::new(cmd).generate_to(dir)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_man_page_per_command() {
        let dir = tempfile::tempdir().unwrap();
        let pages = super::write(dir.path()).unwrap();
        let names: Vec<String> = pages
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for want in [
            "ferry.1",
            "ferry-verify.1",
            "ferry-egress-check.1",
            "ferry-completions.1",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
        }
        assert!(!names.iter().any(|n| n.contains("help")), "{names:?}");
        let top = std::fs::read_to_string(dir.path().join("ferry.1")).unwrap();
        assert!(top.contains(ferry::VERSION), "{top}");
        let check = std::fs::read_to_string(dir.path().join("ferry-egress-check.1")).unwrap();
        assert!(check.contains("in\\-cluster"), "{check}");
    }
}
