//! The commands: each turns its clap arguments into library options, runs, and hands what it
//! found to the printer. Errors carry their kind to `exit`, which picks the code.

mod bundle;
mod completions;
mod diff;
mod egress;
mod images;
mod load;
mod pieces;
mod serve;
mod sign;
mod values;

use crate::cli::{Cli, Command, LimitArgs, TrustArgs};
use crate::exit::{Outcome, Usage};
use crate::printer::Printer;
use ferry::bundle::archive::Limits;
use ferry::bundle::verify::{Evidence, HeadCheck, VerifyOptions};
use ferry::signing::{self, PasswordSource, SigningKey, VerifyingKey};
use std::path::Path;

/// Runs the parsed command line.
pub fn run(cli: &Cli, p: &mut Printer) -> anyhow::Result<Outcome> {
    match &cli.command {
        Command::Build {
            spec,
            output,
            key,
            pull,
            pieces,
        } => bundle::build(spec, output.as_deref(), key.as_deref(), pull, pieces, p),
        Command::Inspect { bundle, format } => bundle::inspect(bundle, *format, p),
        Command::Verify {
            bundle,
            trust,
            image_trust,
            signature,
            base,
            limits,
        } => bundle::verify(
            bundle,
            trust,
            image_trust,
            signature.as_deref(),
            base.as_deref(),
            limits,
            p,
        ),
        Command::Extract {
            bundle,
            dir,
            trust,
            limits,
        } => bundle::extract(bundle, dir, trust, limits, p),
        Command::Keygen { output_key_prefix } => sign::keygen(output_key_prefix, p),
        Command::Sign {
            bundle,
            key,
            detached,
        } => sign::sign(bundle, key, *detached, p),
        Command::Load {
            input,
            registry,
            dry_run,
            values,
            output,
            pin_digests,
            have_list,
            no_referrers,
            trust,
            limits,
        } => load::load(
            &load::Args {
                input,
                registry,
                dry_run: *dry_run,
                values,
                output: output.as_deref(),
                pin_digests: *pin_digests,
                have_list: have_list.as_deref(),
                referrers: !*no_referrers,
                trust,
                limits,
            },
            p,
        ),
        Command::Merge { .. }
        | Command::Split { .. }
        | Command::Join { .. }
        | Command::Diff { .. } => releases(&cli.command, p),
        Command::Rewrite {
            values,
            registry,
            bundle,
            pin_digests,
            output,
            in_place,
            diff,
        } => values::rewrite(
            &values::RewriteArgs {
                values,
                registry,
                bundle: bundle.as_deref(),
                pin_digests: *pin_digests,
                output: output.as_deref(),
                in_place: *in_place,
                diff: *diff,
            },
            p,
        ),
        Command::Images {
            command: crate::cli::ImagesCommand::Check { values, bundle },
        } => values::images_check(values, bundle, p),
        Command::Images {
            command:
                crate::cli::ImagesCommand::List {
                    charts,
                    values,
                    format,
                },
        } => images::list(charts, values, *format, p),
        Command::Egress { command } => egress::run(command, p),
        Command::Serve(args) => serve::serve(args, p),
        Command::Completions { shell } => completions::completions(*shell, p),
    }
}

/// The commands about releases as a whole: merge, split, join and diff.
fn releases(command: &Command, p: &mut Printer) -> anyhow::Result<Outcome> {
    match command {
        Command::Merge {
            old,
            delta,
            output,
            trust,
            limits,
        } => pieces::merge(old, delta, output, trust, limits, p),
        Command::Split {
            bundle,
            max_part_size,
            dir,
            trust,
            limits,
        } => pieces::split(bundle, *max_part_size, dir.as_deref(), trust, limits, p),
        Command::Join {
            parts,
            output,
            trust,
            limits,
        } => pieces::join(parts, output, trust, limits, p),
        Command::Diff {
            old,
            new,
            format,
            trust,
        } => diff::diff(old, new, *format, trust, p),
        _ => unreachable!("only release commands are routed here"),
    }
}

fn usage(message: impl Into<String>) -> anyhow::Error {
    Usage(message.into()).into()
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

impl TrustArgs {
    fn load(&self) -> anyhow::Result<Vec<VerifyingKey>> {
        Ok(self
            .keys
            .iter()
            .map(|k| VerifyingKey::load(k))
            .collect::<Result<_, _>>()?)
    }
}

/// How a command verifies `bundle`: within the command line's limits, with the printer's
/// progress bars and the given head check.
fn verify_options<'a>(
    bundle: &Path,
    limits: &LimitArgs,
    p: &Printer,
    check: &'a HeadCheck<'a>,
) -> VerifyOptions<'a> {
    VerifyOptions {
        input: bundle.to_path_buf(),
        limits: limits.limits(),
        progress: p.progress(),
        check_head: Some(check),
    }
}

/// The head check that verifies the manifest signature with the trusted keys.
fn head_check(
    keys: &[VerifyingKey],
    require: bool,
) -> impl Fn(&[u8], Option<&[u8]>) -> Result<serde_json::Value, String> + Sync + '_ {
    move |manifest, signature| {
        let outcome =
            signing::check_head_signature(keys, require, "ferry.json", manifest, signature)
                .map_err(|e| e.to_string())?;
        serde_json::to_value(outcome).map_err(|e| e.to_string())
    }
}

/// Loads a private key, asking for its password only when it is encrypted.
fn signing_key(path: &Path) -> anyhow::Result<SigningKey> {
    Ok(SigningKey::load(path, || {
        PasswordSource::from_environment().password_for_signing(path)
    })?)
}

fn authenticity_line(evidence: &Evidence) -> String {
    match evidence.head_check.as_ref().and_then(|v| v.get("key")) {
        Some(key) => format!(
            "AUTHENTIC: ferry.json is signed by the key {} ({})",
            key.get("path").and_then(|p| p.as_str()).unwrap_or("?"),
            key.get("fingerprint").and_then(|p| p.as_str()).unwrap_or("?")
        ),
        None => "WARNING: authenticity NOT checked: no --key was given, so this proves integrity only, not who built the bundle.".into(),
    }
}

/// The `authenticity` field of `--json` reports: the same verdict in plain words.
fn authenticity_json(evidence: &Evidence) -> String {
    match evidence.head_check.as_ref().and_then(|v| v.get("key")) {
        Some(_) => format!(
            "verified: {}",
            authenticity_line(evidence).trim_start_matches("AUTHENTIC: ")
        ),
        None => "not checked: no --key given; this proves integrity only, not who built the bundle"
            .into(),
    }
}
