//! The command line: clap definitions, turned into library options, and the output policy.
//! Only this module knows clap and how results are printed.

use crate::archive::Limits;
use crate::build::{self, BuildOptions};
use crate::extract::{self, ExtractOptions};
use crate::inspect::{self, Summary};
use crate::progress::Progress;
use crate::verify::{self, VerifyOptions};
use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;

/// Carry software across an air gap: build, verify, extract and load signed bundles.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, about, max_term_width = 100)]
pub struct Cli {
    /// Print results (and errors) as one JSON document on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bars and no informational output.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a bundle from a ferry.yaml.
    Build {
        /// The bundle spec.
        #[arg(short = 'f', long = "file", default_value = "ferry.yaml")]
        spec: PathBuf,
        /// The bundle to write; default NAME-VERSION.tar.gz in the current folder.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Show a bundle's manifest (reads only its first entry).
    Inspect {
        /// A bundle file or an extracted bundle folder.
        bundle: PathBuf,
    },
    /// Check every byte of a bundle against its manifest, offline.
    Verify {
        /// A bundle file or an extracted bundle folder.
        bundle: PathBuf,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Verify and extract a bundle; nothing is written unless everything checks out.
    Extract {
        bundle: PathBuf,
        /// The folder that receives NAME-VERSION/ (created when missing).
        #[arg(short = 'C', long = "directory", default_value = ".")]
        dir: PathBuf,
        #[command(flatten)]
        limits: LimitArgs,
    },
}

/// Limits against hostile archives.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Largest number of entries accepted.
    #[arg(long, default_value_t = Limits::default().max_entries)]
    pub max_entries: u64,
    /// Largest single file accepted, in bytes.
    #[arg(long, default_value_t = Limits::default().max_entry_size)]
    pub max_file_size: u64,
    /// Largest total of file sizes accepted, in bytes.
    #[arg(long, default_value_t = Limits::default().max_total_size)]
    pub max_total_size: u64,
    /// Largest decompression ratio accepted (decompressed:compressed).
    #[arg(long, default_value_t = Limits::default().max_ratio)]
    pub max_ratio: u64,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits {
            max_entries: self.max_entries,
            max_entry_size: self.max_file_size,
            max_total_size: self.max_total_size,
            max_ratio: self.max_ratio,
            ..Limits::default()
        }
    }
}

/// A failed command: the exit code and the error chain.
pub struct Failure {
    pub code: i32,
    pub error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure {
            code: 2,
            error: e.into(),
        }
    }
}

fn finding(e: verify::VerifyError) -> Failure {
    Failure {
        code: e.exit_code(),
        error: e.into(),
    }
}

/// Runs a parsed command line; returns the exit code.
pub fn run(cli: Cli) -> i32 {
    let json = cli.json;
    match dispatch(cli) {
        Ok(()) => 0,
        Err(f) => {
            if json {
                let doc = serde_json::json!({ "ok": false, "exitCode": f.code, "error": format!("{:#}", f.error) });
                println!("{}", serde_json::to_string_pretty(&doc).expect("json"));
            } else {
                eprintln!("error: {:#}", f.error);
            }
            f.code
        }
    }
}

fn progress(cli: &Cli) -> Progress {
    if cli.quiet || cli.json {
        Progress::Hidden
    } else {
        Progress::Auto
    }
}

fn print_json(value: &impl serde::Serialize) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

fn dispatch(cli: Cli) -> Result<(), Failure> {
    let progress = progress(&cli);
    match &cli.command {
        Command::Build { spec, output } => {
            let epoch = build::source_date_epoch_from_env().map_err(anyhow::Error::msg)?;
            let output = match output {
                Some(o) => o.clone(),
                None => {
                    let s = crate::spec::Spec::load(spec)?;
                    PathBuf::from(format!("{}-{}.tar.gz", s.name.value, s.version.value))
                }
            };
            let report = build::build(
                &BuildOptions {
                    spec: spec.clone(),
                    output,
                    source_date_epoch: epoch,
                    progress,
                },
                None,
            )?;
            if cli.json {
                print_json(&serde_json::json!({
                    "ok": true,
                    "bundle": report.output,
                    "bytes": report.bundle_bytes,
                    "manifestDigest": report.manifest_digest,
                    "signed": report.signed,
                    "files": report.manifest.files.len(),
                    "images": report.manifest.images.iter().map(|i| serde_json::json!({"reference": i.reference, "digest": i.digest})).collect::<Vec<_>>(),
                }))?;
            } else if !cli.quiet {
                let m = &report.manifest;
                println!(
                    "built {} ({} bytes)",
                    report.output.display(),
                    report.bundle_bytes
                );
                println!(
                    "  {} {}: {} files, {} bytes of content, {} images, {} charts",
                    m.name,
                    m.version,
                    m.files.len(),
                    m.total_size(),
                    m.images.len(),
                    m.charts.len()
                );
                println!(
                    "  manifest {}{}",
                    report.manifest_digest,
                    if report.signed { " (signed)" } else { "" }
                );
            }
        }
        Command::Inspect { bundle } => {
            let (m, _) = inspect::read_manifest(bundle).map_err(finding)?;
            let summary = Summary::of(&m);
            if cli.json {
                print_json(&summary)?;
            } else {
                print_summary(&summary);
            }
        }
        Command::Verify { bundle, limits } => {
            let opts = VerifyOptions {
                input: bundle.clone(),
                limits: limits.limits(),
                progress,
                check_head: None,
            };
            let evidence = verify::verify(&opts).map_err(finding)?;
            if cli.json {
                print_json(
                    &serde_json::json!({ "ok": true, "evidence": evidence, "authenticity": "not checked: no --key given" }),
                )?;
            } else if !cli.quiet {
                println!(
                    "OK {} {}: {} files and {} bytes match ferry.json; {} images, {} manifests and {} blobs resolve",
                    evidence.name, evidence.version, evidence.files_checked, evidence.bytes_checked, evidence.layout.images, evidence.layout.manifests, evidence.blobs_checked
                );
                println!("WARNING: authenticity NOT checked: no --key was given, so this proves integrity only, not who built the bundle.");
            }
        }
        Command::Extract {
            bundle,
            dir,
            limits,
        } => {
            let opts = ExtractOptions {
                bundle: bundle.clone(),
                dir: dir.clone(),
                limits: limits.limits(),
                progress,
                check_head: None,
            };
            let done = extract::extract(&opts).map_err(finding)?;
            if cli.json {
                print_json(
                    &serde_json::json!({ "ok": true, "path": done.path, "evidence": done.evidence }),
                )?;
            } else if !cli.quiet {
                println!(
                    "extracted {} ({} files verified)",
                    done.path.display(),
                    done.evidence.files_checked
                );
                println!("WARNING: authenticity NOT checked: no --key was given.");
            }
        }
    }
    Ok(())
}

fn print_summary(s: &Summary) {
    println!("{} {}", s.name, s.version);
    println!("  created        {}", s.created);
    println!("  built by       ferry {}", s.ferry_version);
    println!("  files          {} ({} bytes)", s.file_count, s.total_size);
    println!("  charts         {}", s.charts.len());
    for c in s.charts {
        println!("    {} {} ({})", c.name, c.version, c.path);
    }
    println!("  images         {}", s.images.len());
    for i in s.images {
        println!("    {}", i.reference);
        println!(
            "      {}  {}  {} bytes",
            i.digest,
            i.platforms.join(","),
            i.size
        );
    }
    if !s.egress.is_empty() {
        println!("  egress declared by the vendor");
        for d in s.egress {
            let ports = d
                .ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(",");
            println!(
                "    {} {}{}{}",
                d.name,
                d.hosts.join(","),
                if ports.is_empty() {
                    String::new()
                } else {
                    format!(":{ports}")
                },
                if d.required { " (required)" } else { "" }
            );
        }
    }
}
