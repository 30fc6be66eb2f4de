//! The command line: clap definitions, turned into library options, and the output policy.
//! Only this module knows clap and how results are printed.

use clap::{Args, Parser, Subcommand};
use ferry::bundle::archive::Limits;
use ferry::bundle::build::{self, BuildOptions};
use ferry::bundle::extract::{self, ExtractOptions};
use ferry::bundle::inspect::{self, Summary};
use ferry::bundle::verify::{self, VerifyOptions};
use ferry::load;
use ferry::oci::reference::Target;
use ferry::progress::Progress;
use ferry::signing::{self, PasswordSource, SigningError, SigningKey, VerifyingKey};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

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
        /// Sign the manifest with this private key (cosign or PKCS#8 PEM; password from
        /// COSIGN_PASSWORD or the terminal).
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Write a cosign-compatible key pair: NAME.key (encrypted, 0600) and NAME.pub.
    Keygen {
        #[arg(long, default_value = "cosign")]
        output_key_prefix: PathBuf,
    },
    /// Sign (or re-sign) a bundle's manifest; the rest of the file is copied unchanged.
    Sign {
        bundle: PathBuf,
        /// The private key (cosign or PKCS#8 PEM).
        #[arg(long)]
        key: PathBuf,
        /// Also write BUNDLE.sig: a signature of the whole file (cosign sign-blob format).
        #[arg(long)]
        detached: bool,
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
        trust: TrustArgs,
        /// A detached signature of the whole bundle file (BUNDLE.sig) to check as well.
        #[arg(long, requires = "keys")]
        signature: Option<PathBuf>,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Push every image of a bundle (or extracted bundle, OCI layout, oci-archive or
    /// docker-archive) to a registry, digests unchanged; optionally rewrite values files.
    Load {
        input: PathBuf,
        #[command(flatten)]
        registry: RegistryArgs,
        /// Show the plan; push nothing.
        #[arg(long)]
        dry_run: bool,
        /// Values files to check against the bundle and rewrite for the registry.
        #[arg(long = "values", value_name = "FILE")]
        values: Vec<PathBuf>,
        /// Write the rewritten values here (one --values only); default: rewrite in place.
        #[arg(short, long, requires = "values")]
        output: Option<PathBuf>,
        /// Add image digests to the rewritten values.
        #[arg(long, requires = "values")]
        pin_digests: bool,
        #[command(flatten)]
        trust: TrustArgs,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Rewrite registry paths in Helm values files, editing only the image references.
    Rewrite {
        #[arg(required = true)]
        values: Vec<PathBuf>,
        /// The target: HOST[:PORT][/PREFIX].
        #[arg(long)]
        registry: String,
        /// The bundle whose images the values refer to (also checks they are all there).
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// Add the bundle's digests to image references.
        #[arg(long, requires = "bundle")]
        pin_digests: bool,
        /// Write the result here (one values file only).
        #[arg(short, long, conflicts_with_all = ["in_place", "diff"])]
        output: Option<PathBuf>,
        /// Rewrite the files in place.
        #[arg(long)]
        in_place: bool,
        /// Print a unified diff instead of the result.
        #[arg(long, conflicts_with = "in_place")]
        diff: bool,
    },
    /// Checks on the images that values files refer to.
    Images {
        #[command(subcommand)]
        command: ImagesCommand,
    },
    /// Audit where a bundle's software can connect, against an allow-list.
    Egress {
        #[command(subcommand)]
        command: EgressCommand,
    },
    /// Verify and extract a bundle; nothing is written unless everything checks out.
    Extract {
        bundle: PathBuf,
        /// The folder that receives NAME-VERSION/ (created when missing).
        #[arg(short = 'C', long = "directory", default_value = ".")]
        dir: PathBuf,
        #[command(flatten)]
        trust: TrustArgs,
        #[command(flatten)]
        limits: LimitArgs,
    },
}

/// How to reach the target registry.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// The target: HOST[:PORT][/PREFIX]. ORIG/PATH:TAG is pushed to HOST/PREFIX/PATH:TAG.
    #[arg(long)]
    pub registry: String,
    /// Blobs in flight at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// User name for basic auth or a token service; the password comes from --password-stdin.
    #[arg(long, requires = "password_stdin")]
    pub username: Option<String>,
    /// Read the password from standard input.
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
    /// A Docker config.json or containers auth.json (default: $DOCKER_CONFIG, ~/.docker, $REGISTRY_AUTH_FILE).
    #[arg(long)]
    pub authfile: Option<PathBuf>,
    /// A PEM file of extra CA certificates to trust.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Speak plain HTTP (only for registries that have no TLS).
    #[arg(long)]
    pub plain_http: bool,
}

impl RegistryArgs {
    /// The push options and the target, parsed once: the same target is used for pushing and
    /// for rewriting values, so a value it refuses fails before anything is sent.
    fn options(&self) -> Result<(ferry::registry::push::PushOptions, Target), Failure> {
        let target = parse_target(&self.registry)?;
        let mut r = ferry::registry::RegistryOptions::new(target.host.clone());
        r.plain_http = self.plain_http;
        r.ca_file = self.ca_file.clone();
        r.credentials = match (&self.username, &self.authfile) {
            (Some(user), _) => {
                let mut password = String::new();
                std::io::stdin().read_line(&mut password)?;
                let password = password.trim_end_matches(['\r', '\n']).to_string();
                ferry::registry::CredentialSource::Explicit {
                    username: user.clone(),
                    password,
                }
            }
            (None, Some(f)) => ferry::registry::CredentialSource::AuthFile(f.clone()),
            (None, None) => ferry::registry::CredentialSource::Default,
        };
        let mut opts = ferry::registry::push::PushOptions::new(r);
        opts.concurrency = self.concurrency.max(1);
        Ok((opts, target))
    }
}

fn parse_target(value: &str) -> Result<Target, Failure> {
    Target::parse(value).map_err(|e| Failure {
        code: 2,
        error: e.into(),
    })
}

/// Which keys are trusted.
#[derive(Debug, Args)]
pub struct TrustArgs {
    /// A trusted public key (PKIX PEM); repeat for several: the bundle is authentic if any
    /// of them verifies its manifest signature.
    #[arg(long = "key", value_name = "PUB")]
    pub keys: Vec<PathBuf>,
    /// Fail when the bundle is not signed.
    #[arg(long)]
    pub require_signature: bool,
}

impl TrustArgs {
    fn load(&self) -> Result<Vec<VerifyingKey>, Failure> {
        self.keys
            .iter()
            .map(|k| VerifyingKey::load(k).map_err(signing_failure))
            .collect()
    }
}

fn egress_failure(e: ferry::egress::EgressError) -> Failure {
    Failure {
        code: 2,
        error: e.into(),
    }
}

fn usage(message: String) -> Failure {
    Failure {
        code: 2,
        error: anyhow::Error::msg(message),
    }
}

fn egress_command(command: &EgressCommand, json: bool, progress: Progress) -> Result<(), Failure> {
    use ferry::egress::{self, AllowList, FailOn, Format};
    let format_of = |f: &str| -> Result<Format, Failure> {
        if json {
            Ok(Format::Json)
        } else {
            f.parse().map_err(usage)
        }
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    let code = match command {
        EgressCommand::Check {
            input,
            allow,
            values,
            format,
            fail_on,
            trust,
            limits,
        } => {
            let format = format_of(format)?;
            let fail_on: FailOn = fail_on.parse().map_err(usage)?;
            let allow = allow
                .as_deref()
                .map(AllowList::from_path)
                .transpose()
                .map_err(egress_failure)?;
            // A bundle file is verified and extracted to a private temporary folder first.
            let (_tmp, root, declared) = if input.is_file() {
                let keys = trust.load()?;
                let check = head_check(&keys, trust.require_signature);
                let tmp = tempfile::Builder::new().prefix("ferry-egress-").tempdir()?;
                let dir = tmp.path().join("x");
                let done = extract::extract(&ExtractOptions {
                    bundle: input.clone(),
                    dir,
                    limits: limits.limits(),
                    progress,
                    check_head: Some(&check),
                })
                .map_err(finding)?;
                let (m, _) = inspect::read_manifest(&done.path).map_err(finding)?;
                (Some(tmp), done.path, m.egress)
            } else {
                let declared = inspect::read_manifest(input)
                    .map(|(m, _)| m.egress)
                    .unwrap_or_default();
                (None, input.clone(), declared)
            };
            let report = egress::check(&egress::CheckOptions {
                root,
                allow,
                values: values.clone(),
                fail_on: fail_on.clone(),
                declared,
            })
            .map_err(egress_failure)?;
            egress::render(&report, format, &mut out)?;
            report.exit_code(&fail_on)
        }
        EgressCommand::Policy { allow, namespace } => {
            let allow = AllowList::from_path(allow).map_err(egress_failure)?;
            write!(out, "{}", egress::policy(&allow, namespace))?;
            0
        }
        EgressCommand::Observe {
            allow,
            logs,
            format,
            fail_on,
        } => {
            let format = format_of(format)?;
            let fail_on: FailOn = fail_on.parse().map_err(usage)?;
            let allow = AllowList::from_path(allow).map_err(egress_failure)?;
            let report = egress::observe(&allow, logs).map_err(egress_failure)?;
            egress::render(&report, format, &mut out)?;
            report.exit_code(&fail_on)
        }
    };
    out.flush()?;
    if code != 0 {
        return Err(Failure {
            code,
            error: anyhow::anyhow!(
                "egress findings fail the check (see above; --fail-on tunes which verdicts fail)"
            ),
        });
    }
    Ok(())
}

fn values_failure(e: load::ValuesError) -> Failure {
    Failure {
        code: e.exit_code(),
        error: e.into(),
    }
}

fn signing_failure(e: SigningError) -> Failure {
    Failure {
        code: e.exit_code(),
        error: e.into(),
    }
}

/// The head check that verifies the manifest signature with the trusted keys.
fn head_check(
    keys: &[VerifyingKey],
    require: bool,
) -> impl Fn(&[u8], Option<&[u8]>) -> Result<serde_json::Value, String> + Sync + '_ {
    move |manifest, signature| {
        signing::check_head_signature(keys, require, "ferry.json", manifest, signature)
            .map(|outcome| serde_json::to_value(outcome).expect("serialisable"))
            .map_err(|e| e.to_string())
    }
}

fn authenticity_line(evidence: &verify::Evidence) -> String {
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
fn authenticity_json(evidence: &verify::Evidence) -> String {
    match evidence.head_check.as_ref().and_then(|v| v.get("key")) {
        Some(_) => format!(
            "verified: {}",
            authenticity_line(evidence).trim_start_matches("AUTHENTIC: ")
        ),
        None => "not checked: no --key given; this proves integrity only, not who built the bundle"
            .into(),
    }
}

/// Loads a private key, asking for its password only when it is encrypted.
fn signing_key(path: &std::path::Path) -> Result<SigningKey, Failure> {
    SigningKey::load(path, || {
        PasswordSource::from_environment().password_for_signing(path)
    })
    .map_err(signing_failure)
}

#[derive(Debug, Subcommand)]
pub enum EgressCommand {
    /// Find every outbound destination in a bundle's values, templates, scripts and config.
    Check {
        /// A bundle file, an extracted bundle folder or a chart folder.
        input: PathBuf,
        /// The allow-list (YAML); without one nothing is allowed or denied.
        #[arg(long)]
        allow: Option<PathBuf>,
        /// User values files, overlaid in order the way Helm merges them.
        #[arg(long = "values", value_name = "FILE")]
        values: Vec<PathBuf>,
        /// table, json, sarif or markdown.
        #[arg(long, default_value = "table")]
        format: String,
        /// Which verdicts fail the check: e.g. `denied,unknown,unresolved` (the default), `none`.
        #[arg(long, default_value = "default")]
        fail_on: String,
        #[command(flatten)]
        trust: TrustArgs,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Write a Kubernetes NetworkPolicy and a CiliumNetworkPolicy for an allow-list.
    Policy {
        #[arg(long)]
        allow: PathBuf,
        #[arg(long, default_value = "default")]
        namespace: String,
    },
    /// Check connections that really happened (Hubble flow JSON, `host port` lines).
    Observe {
        #[arg(long)]
        allow: PathBuf,
        #[arg(required = true)]
        logs: Vec<PathBuf>,
        #[arg(long, default_value = "table")]
        format: String,
        #[arg(long, default_value = "default")]
        fail_on: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// List every image the values refer to; fail when one is not in the bundle.
    Check {
        #[arg(required = true)]
        values: Vec<PathBuf>,
        #[arg(long)]
        bundle: PathBuf,
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
            let message = render_error(&f.error);
            if json {
                let doc = serde_json::json!({ "ok": false, "exitCode": f.code, "error": message });
                println!("{}", serde_json::to_string_pretty(&doc).expect("json"));
            } else {
                eprintln!("error: {message}");
            }
            f.code
        }
    }
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
        Command::Build { spec, output, key } => {
            let epoch = build::source_date_epoch_from_env().map_err(anyhow::Error::msg)?;
            let output = match output {
                Some(o) => o.clone(),
                None => {
                    let s = ferry::bundle::spec::Spec::load(spec)?;
                    PathBuf::from(format!("{}-{}.tar.gz", s.name.value, s.version.value))
                }
            };
            let key = key.as_deref().map(signing_key).transpose()?;
            let signer = |m: &[u8]| -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
                Ok(key.as_ref().expect("signer used only with a key").sign(m)?)
            };
            let report = build::build(
                &BuildOptions {
                    spec: spec.clone(),
                    output,
                    source_date_epoch: epoch,
                    progress,
                },
                key.as_ref().map(|_| &signer as build::ManifestSigner),
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
        Command::Verify {
            bundle,
            trust,
            signature,
            limits,
        } => {
            let keys = trust.load()?;
            let check = head_check(&keys, trust.require_signature);
            let detached = match signature {
                Some(sig) => {
                    if bundle.is_dir() {
                        return Err(anyhow::anyhow!(
                            "--signature checks a whole bundle file, but {} is a folder; pass the .tar.gz",
                            bundle.display()
                        )
                        .into());
                    }
                    let text = std::fs::read(sig).map_err(|e| {
                        anyhow::anyhow!("cannot read the detached signature {}: {e}", sig.display())
                    })?;
                    let key =
                        signing::verify_file(&keys, bundle, &text).map_err(signing_failure)?;
                    Some(serde_json::json!({ "signature": sig, "key": key }))
                }
                None => None,
            };
            let opts = VerifyOptions {
                input: bundle.clone(),
                limits: limits.limits(),
                progress,
                check_head: Some(&check),
            };
            let evidence = verify::verify(&opts).map_err(finding)?;
            if cli.json {
                print_json(
                    &serde_json::json!({ "ok": true, "evidence": evidence, "authenticity": authenticity_json(&evidence), "detachedSignature": detached }),
                )?;
            } else if !cli.quiet {
                println!(
                    "OK {} {}: {} files and {} bytes match ferry.json; {} images, {} manifests and {} blobs resolve",
                    evidence.name, evidence.version, evidence.files_checked, evidence.bytes_checked, evidence.layout.images, evidence.layout.manifests, evidence.blobs_checked
                );
                println!("{}", authenticity_line(&evidence));
                if let Some(sig) = signature {
                    println!(
                        "AUTHENTIC: the whole file matches the detached signature {}",
                        sig.display()
                    );
                }
            }
        }
        Command::Extract {
            bundle,
            dir,
            trust,
            limits,
        } => {
            let keys = trust.load()?;
            let check = head_check(&keys, trust.require_signature);
            let opts = ExtractOptions {
                bundle: bundle.clone(),
                dir: dir.clone(),
                limits: limits.limits(),
                progress,
                check_head: Some(&check),
            };
            let done = extract::extract(&opts).map_err(finding)?;
            if cli.json {
                print_json(
                    &serde_json::json!({ "ok": true, "path": done.path, "evidence": done.evidence, "authenticity": authenticity_json(&done.evidence) }),
                )?;
            } else if !cli.quiet {
                println!(
                    "extracted {} ({} files verified)",
                    done.path.display(),
                    done.evidence.files_checked
                );
                println!("{}", authenticity_line(&done.evidence));
            }
        }
        Command::Load {
            input,
            registry,
            dry_run,
            values,
            output,
            pin_digests,
            trust,
            limits,
        } => {
            if output.is_some() && values.len() != 1 {
                return Err(Failure {
                    code: 2,
                    error: anyhow::anyhow!("-o/--output takes exactly one --values file"),
                });
            }
            let (mut push_opts, target) = registry.options()?;
            push_opts.dry_run = *dry_run;
            let keys = trust.load()?;
            let check = head_check(&keys, trust.require_signature);
            let input_spec = load::LoadInput {
                input: input.clone(),
                target: target.clone(),
                limits: limits.limits(),
                progress,
                check_head: Some(&check),
            };
            // A re-run against a registry that already has everything reads only the head.
            let warm = if *dry_run {
                None
            } else {
                load::already_loaded(&input_spec, &push_opts).map_err(|e| Failure {
                    code: e.exit_code(),
                    error: e.into(),
                })?
            };
            let (manifest, evidence, report) = match warm {
                Some(done) => {
                    let pushed = done
                        .images
                        .iter()
                        .map(|i| ferry::registry::push::Pushed {
                            reference: if i.tag.is_empty() {
                                format!(
                                    "{}/{}@{}",
                                    push_opts.registry.registry, i.target_repo, i.digest
                                )
                            } else {
                                format!(
                                    "{}/{}:{}",
                                    push_opts.registry.registry, i.target_repo, i.tag
                                )
                            },
                            digest: i.digest.clone(),
                        })
                        .collect();
                    let report = ferry::registry::push::PushReport {
                        pushed,
                        ..Default::default()
                    };
                    (
                        Some(done.manifest),
                        serde_json::json!({ "alreadyLoaded": true, "headCheck": done.head_check }),
                        report,
                    )
                }
                None => {
                    let prepared = load::prepare(&input_spec).map_err(|e| Failure {
                        code: e.exit_code(),
                        error: e.into(),
                    })?;
                    // Values are checked before anything is pushed: a missing image fails fast.
                    if !values.is_empty() {
                        if let Some(m) = &prepared.manifest {
                            load::check_images(values, &m.images).map_err(values_failure)?;
                        }
                    }
                    let bars = Arc::new(ferry::progress::PushBars::new(progress));
                    let report = ferry::registry::push::push(
                        &push_opts,
                        prepared.source.clone(),
                        &prepared.images,
                        bars.clone(),
                    )
                    .map_err(|e| Failure {
                        code: e.exit_code(),
                        error: e.into(),
                    })?;
                    bars.finish();
                    (
                        prepared.manifest,
                        serde_json::to_value(&prepared.evidence).unwrap_or_default(),
                        report,
                    )
                }
            };
            let rewritten = if values.is_empty() {
                Vec::new()
            } else {
                let images = manifest
                    .as_ref()
                    .map(|m| m.images.clone())
                    .unwrap_or_default();
                if manifest.is_some() {
                    load::check_images(values, &images).map_err(values_failure)?;
                }
                load::rewrite_values(
                    values,
                    &ferry::values::RewriteOptions {
                        target,
                        images,
                        pin_digests: *pin_digests,
                    },
                )
                .map_err(values_failure)?
            };
            if !dry_run {
                for v in &rewritten {
                    let dest = output.clone().unwrap_or_else(|| v.file.clone());
                    load::write_atomically(&dest, &v.after)?;
                }
            }
            if cli.json {
                print_json(
                    &serde_json::json!({ "ok": true, "dryRun": dry_run, "report": report, "values": rewritten, "evidence": evidence }),
                )?;
            } else if !cli.quiet {
                if *dry_run {
                    for img in &report.plan.images {
                        println!(
                            "would push {}",
                            serde_json::to_string(img).unwrap_or_default()
                        );
                    }
                } else {
                    let warm = evidence.get("alreadyLoaded").is_some();
                    for p in &report.pushed {
                        println!(
                            "{} {}@{}",
                            if warm { "present" } else { "pushed" },
                            p.reference,
                            p.digest
                        );
                    }
                    if warm {
                        println!("every image is already in the registry with the bundle's digests: nothing sent, only the bundle's head was read");
                    } else {
                        println!(
                        "{} blobs uploaded ({} bytes), {} already present, {} mounted, {} retries",
                        report.blobs_uploaded,
                        report.bytes_uploaded,
                        report.blobs_skipped,
                        report.blobs_mounted,
                        report.retries
                    );
                    }
                    for v in &rewritten {
                        let dest = output.clone().unwrap_or_else(|| v.file.clone());
                        println!(
                            "rewrote {} image references into {}",
                            v.edits.len(),
                            dest.display()
                        );
                        print_notes(&v.file, &v.edits);
                    }
                }
            }
        }
        Command::Rewrite {
            values,
            registry,
            bundle,
            pin_digests,
            output,
            in_place,
            diff,
        } => {
            if values.len() > 1 && !in_place && !diff {
                return Err(Failure {
                    code: 2,
                    error: anyhow::anyhow!("several values files need --in-place or --diff"),
                });
            }
            if output.is_some() && values.len() != 1 {
                return Err(Failure {
                    code: 2,
                    error: anyhow::anyhow!("-o/--output takes exactly one values file"),
                });
            }
            let target = parse_target(registry)?;
            let images = match bundle {
                Some(b) => {
                    let (m, _) = inspect::read_manifest(b).map_err(finding)?;
                    load::check_images(values, &m.images).map_err(values_failure)?;
                    m.images
                }
                None => Vec::new(),
            };
            let outcomes = load::rewrite_values(
                values,
                &ferry::values::RewriteOptions {
                    target,
                    images,
                    pin_digests: *pin_digests,
                },
            )
            .map_err(values_failure)?;
            for o in &outcomes {
                if *diff {
                    print!(
                        "{}",
                        ferry::values::unified_diff(&o.file, &o.before, &o.after)
                    );
                } else if *in_place {
                    load::write_atomically(&o.file, &o.after)?;
                } else if let Some(out) = output {
                    load::write_atomically(out, &o.after)?;
                } else if !cli.json {
                    print!("{}", o.after);
                }
                if !cli.quiet && !cli.json && (*in_place || output.is_some()) {
                    eprintln!(
                        "{}: {} image references rewritten",
                        o.file.display(),
                        o.edits.len()
                    );
                }
                if !cli.quiet && !cli.json {
                    print_notes(&o.file, &o.edits);
                }
            }
            if cli.json {
                print_json(&serde_json::json!({ "ok": true, "files": outcomes }))?;
            }
        }
        Command::Images {
            command: ImagesCommand::Check { values, bundle },
        } => {
            let (m, _) = inspect::read_manifest(bundle).map_err(finding)?;
            let coverage = load::check_images(values, &m.images).map_err(values_failure)?;
            if cli.json {
                print_json(&serde_json::json!({ "ok": true, "coverage": coverage }))?;
            } else if !cli.quiet {
                for c in &coverage.found {
                    println!(
                        "ok  {}:{}  {}  ->  {}",
                        c.image_use.file.display(),
                        c.image_use.line,
                        c.image_use.raw,
                        c.image.reference
                    );
                }
                println!(
                    "{} image references, all in the bundle",
                    coverage.found.len()
                );
            }
        }
        Command::Egress { command } => return egress_command(command, cli.json, progress),
        Command::Keygen { output_key_prefix } => {
            let (key_path, _) =
                signing::keygen_paths(output_key_prefix).map_err(signing_failure)?;
            let password = PasswordSource::from_environment()
                .password_for_keygen(&key_path)
                .map_err(signing_failure)?;
            let (key, public) =
                signing::keygen(output_key_prefix, &password).map_err(signing_failure)?;
            if cli.json {
                print_json(
                    &serde_json::json!({ "ok": true, "privateKey": key, "publicKey": public }),
                )?;
            } else if !cli.quiet {
                println!("Private key written to {}", key.display());
                println!("Public key written to {}", public.display());
            }
        }
        Command::Sign {
            bundle,
            key,
            detached,
        } => {
            if bundle.is_dir() {
                return Err(anyhow::anyhow!(
                    "{} is a folder; `ferry sign` signs a bundle file: sign the .tar.gz, then extract it again",
                    bundle.display()
                )
                .into());
            }
            let key = signing_key(key)?;
            let head =
                ferry::bundle::head::resign(bundle, &|m| key.sign(m).map_err(|e| e.to_string()))
                    .map_err(|e| match e {
                        ferry::bundle::head::ResignError::Head(v) => finding(v),
                        other => Failure {
                            code: 2,
                            error: other.into(),
                        },
                    })?;
            let sig_path = if *detached {
                let mut p = bundle.as_os_str().to_owned();
                p.push(".sig");
                let p = PathBuf::from(p);
                let sig = key.sign_file(bundle).map_err(signing_failure)?;
                std::fs::write(&p, sig)?;
                Some(p)
            } else {
                None
            };
            if cli.json {
                print_json(
                    &serde_json::json!({ "ok": true, "bundle": bundle, "key": key.verifying_key(), "detachedSignature": sig_path }),
                )?;
            } else if !cli.quiet {
                println!(
                    "signed {} {} in {} with key sha256:{}",
                    head.manifest.name,
                    head.manifest.version,
                    bundle.display(),
                    key.fingerprint()
                );
                if let Some(p) = sig_path {
                    println!("detached signature of the whole file: {}", p.display());
                }
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

/// The edits a values rewrite made for another reason than redirecting an image, on stderr.
fn print_notes(file: &std::path::Path, edits: &[ferry::values::Edit]) {
    for e in edits {
        if let Some(note) = &e.note {
            eprintln!("{}:{}: {}: {note}", file.display(), e.line, e.path);
        }
    }
}
