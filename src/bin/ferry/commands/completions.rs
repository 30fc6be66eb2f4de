//! `ferry completions SHELL`: a completion script from the same clap definition as the parser,
//! so it cannot drift from it. (The man pages come from that definition too: `cargo xtask man`.)

use crate::cli::Cli;
use crate::exit::Outcome;
use crate::printer::Printer;
use clap::CommandFactory;
use serde_json::json;

pub fn completions(shell: clap_complete::Shell, p: &mut Printer) -> anyhow::Result<Outcome> {
    let script = completion_script(shell);
    p.document(&json!({
        "ok": true,
        "shell": shell.to_string(),
        "script": String::from_utf8_lossy(&script),
    }))?;
    p.data(|out| out.write_all(&script))?;
    Ok(Outcome::Ok)
}

fn completion_script(shell: clap_complete::Shell) -> Vec<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "ferry", &mut script);
    script
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_know_every_command() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
            clap_complete::Shell::PowerShell,
        ] {
            let script = String::from_utf8(completion_script(shell)).unwrap();
            for word in ["verify", "egress", "fail-on"] {
                assert!(script.contains(word), "{shell}: no {word}");
            }
            // The values of --fail-on too, where the shell completes values.
            if shell != clap_complete::Shell::PowerShell {
                assert!(script.contains("in-cluster"), "{shell}: no in-cluster");
            }
        }
    }
}
