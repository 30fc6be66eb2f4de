//! The `ferry` command-line entry point: parse, dispatch, exit with the documented code.

mod cli;

use clap::Parser;

fn main() {
    // A closed stdout (`ferry inspect | head`) is not an error.
    std::panic::set_hook(Box::new(|info| {
        let msg = info.to_string();
        if msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        eprintln!("{msg}");
    }));
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    std::process::exit(cli::run(cli));
}
