//! Developer chores for the ferry workspace: `cargo xtask <chore>`.

// A console program whose output is its product; unwrap() is acceptable in chores.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

mod bench;
mod chores;
mod demo_serve;
mod man;
mod testdata;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Developer chores for the ferry workspace"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what the tests need (when missing), then run fmt, clippy, the drift checks
    /// and every test.
    Test,
    /// Build, inspect, verify and extract the fixture bundle, load it into a throwaway registry
    /// and serve it, showing each step.
    Demo,
    /// Write a man page for ferry and for each of its commands (from its clap definition).
    Man {
        /// The folder for the `.1` pages (default: target/man).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Regenerate bundle-spec/manifest.schema.json from the Rust types.
    Codegen {
        /// Fail when the committed schema differs from what the types give.
        #[arg(long)]
        check: bool,
    },
    /// Generate the testdata/agent-security fixture (chart, values, scripts, images).
    Testdata {
        /// Regenerate into a temporary folder and fail, listing the differing files, when the
        /// committed fixture is not what the generator makes.
        #[arg(long)]
        check: bool,
        /// Fixture folder (default: testdata/agent-security in the workspace).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Time ferry against tar, gzip and openssl on a generated image set; writes BENCHMARKS.md.
    Bench {
        /// Run only one part: `core` (build/verify/extract), `sign`, `load`, `egress`, `pull`,
        /// `serve` or `delta` (default: all of them, side by side in one run). `pull`, `serve`
        /// or `delta` alone updates only its section and target rows of BENCHMARKS.md.
        #[arg(value_name = "PART", value_parser = ["core", "sign", "load", "egress", "pull", "serve", "delta"])]
        part: Option<String>,
        /// Total size of the large (incompressible) layers, in MiB.
        #[arg(long, value_name = "N", default_value_t = 1024)]
        size_mib: u64,
        /// How many times each command runs (the median is reported).
        #[arg(long, value_name = "N", default_value_t = 3)]
        runs: u32,
        /// Also run ferry on a 4 GiB set, to show that peak RSS does not grow with size.
        #[arg(long)]
        also_4g: bool,
        /// Keep the scratch folder ($FERRY_BENCH_DIR, default /tmp/ferry-bench).
        #[arg(long)]
        keep: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Testdata { check, dir } => run_testdata(check, dir),
        Command::Test => chores::test(),
        Command::Demo => chores::demo(),
        Command::Man { out } => chores::man(out),
        Command::Codegen { check } => chores::codegen(check),
        Command::Bench {
            part,
            size_mib,
            runs,
            also_4g,
            keep,
        } => bench::run(&bench::Options {
            size_mib,
            runs,
            also_4g,
            keep,
            parts: bench::Parts::only(part.as_deref()),
        }),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run_testdata(check: bool, dir: Option<PathBuf>) -> Result<ExitCode> {
    let dir = dir.unwrap_or_else(testdata::fixture_dir);
    if check {
        let diffs = testdata::check(&dir)?;
        if diffs.is_empty() {
            println!("{} is up to date", dir.display());
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!(
            "{} differs from what the generator makes ({} files):",
            dir.display(),
            diffs.len()
        );
        for d in &diffs {
            eprintln!("  {d}");
        }
        eprintln!("run `cargo xtask testdata` and commit the result");
        return Ok(ExitCode::from(1));
    }
    let fixture = testdata::write(&dir)?;
    let bytes: usize = fixture.files.iter().map(|f| f.data.len()).sum();
    println!(
        "wrote {} files, {} bytes, to {}",
        fixture.files.len(),
        bytes,
        dir.display()
    );
    for i in &fixture.images {
        println!(
            "  {}\n    in {} (from: {})\n    {} {}",
            i.reference,
            i.file,
            i.from,
            match &i.manifest_digest {
                Some(_) if i.platforms.len() > 1 => "index",
                Some(_) => "manifest",
                None => "image ID",
            },
            i.manifest_digest.as_deref().unwrap_or(&i.config_digest)
        );
    }
    Ok(ExitCode::SUCCESS)
}
