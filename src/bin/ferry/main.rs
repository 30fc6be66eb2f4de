//! The `ferry` command-line entry point: parse, run the command, exit with the documented code.

mod cli;
mod commands;
mod exit;
mod printer;

use clap::Parser;
use printer::Printer;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = exit::parse_error_code(&e);
            let json = std::env::args_os()
                .skip(1)
                .take_while(|a| a != "--")
                .any(|a| a == "--json");
            printer::parse_error(&e, json, code);
            return ExitCode::from(code);
        }
    };
    let mut printer = Printer::new(cli.json, cli.quiet);
    let result = commands::run(&cli, &mut printer).and_then(|outcome| {
        printer.finish()?;
        Ok(outcome)
    });
    let code = exit::code(&result);
    match &result {
        Ok(exit::Outcome::Ok) => {}
        Ok(exit::Outcome::Finding(message)) => printer.finding(message),
        Err(e) if exit::is_closed_stdout(e) => return ExitCode::SUCCESS,
        Err(e) => printer.error(&render_error(e), code),
    }
    ExitCode::from(code)
}

/// The error and its causes on one line, each cause once: many messages already quote
/// their source.
fn render_error(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !out.contains(&c) {
            out.push_str(": ");
            out.push_str(&c);
        }
    }
    out
}
