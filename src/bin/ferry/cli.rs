//! The command line as clap sees it: every command, argument and default, and nothing else.
//! The commands themselves live in `commands/`; what they print goes through `printer`.
//!
//! `cargo xtask man` compiles this file into xtask as well (through `#[path]`) to write the man
//! pages, so it names only clap, clap_complete and the `ferry` library, never `crate::`.

use clap::{Args, Parser, Subcommand, ValueEnum};
use ferry::bundle::archive::Limits;
use std::path::PathBuf;

/// Carry software across an air gap: build, sign, verify, extract and load bundles, and audit
/// where their software connects.
#[derive(Debug, Parser)]
#[command(name = "ferry", version = ferry::VERSION, max_term_width = 100)]
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
        #[command(flatten)]
        pull: PullArgs,
        #[command(flatten)]
        pieces: PieceArgs,
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
        /// `summary`, or an SBOM of the bundle: `cyclonedx` (CycloneDX 1.6 JSON) or `spdx`
        /// (SPDX 2.3 JSON).
        #[arg(long, value_enum, default_value_t = InspectFormat::Summary)]
        format: InspectFormat,
    },
    /// Check every byte of a bundle against its manifest, offline.
    Verify {
        /// A bundle file or an extracted bundle folder.
        bundle: PathBuf,
        #[command(flatten)]
        trust: TrustArgs,
        #[command(flatten)]
        image_trust: ImageTrustArgs,
        /// A detached signature of the whole bundle file (BUNDLE.sig) to check as well.
        #[arg(long, requires = "keys")]
        signature: Option<PathBuf>,
        /// For a delta bundle: the bundle it was built against, to check the blobs it omits.
        #[arg(long, value_name = "OLD")]
        base: Option<PathBuf>,
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
        /// After loading, write the blobs the registry now holds for the bundle's images (a
        /// have-list the vendor builds the next delta against: `ferry build --base`); with
        /// --dry-run, ask the registry which it holds and push nothing.
        #[arg(long, value_name = "OUT.json")]
        have_list: Option<PathBuf>,
        /// Push the images only, not the signatures, attestations and SBOMs attached to them.
        #[arg(long)]
        no_referrers: bool,
        #[command(flatten)]
        trust: TrustArgs,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Rebuild a release from its delta and the bundle the delta was built against, byte
    /// for byte the bundle a full build gives, signature intact.
    Merge {
        /// The bundle the delta was built against.
        old: PathBuf,
        /// The delta bundle.
        delta: PathBuf,
        /// The bundle to write.
        #[arg(short, long)]
        output: PathBuf,
        #[command(flatten)]
        trust: TrustArgs,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Cut a bundle into parts of at most SIZE bytes (NAME-VERSION.partK-of-N.tar.gz), each
    /// a bundle that verifies on its own.
    Split {
        bundle: PathBuf,
        /// Largest part, in bytes or with a unit: 300MiB, 4G, 700MB.
        #[arg(long, value_parser = parse_size, value_name = "SIZE")]
        max_part_size: u64,
        /// The folder that receives the parts; default: the bundle's folder.
        #[arg(short = 'C', long = "directory")]
        dir: Option<PathBuf>,
        #[command(flatten)]
        trust: TrustArgs,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Join every part of a split bundle, in any order, back into the bundle, byte for byte.
    Join {
        #[arg(required = true)]
        parts: Vec<PathBuf>,
        /// The bundle to write.
        #[arg(short, long)]
        output: PathBuf,
        #[command(flatten)]
        trust: TrustArgs,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// What changed between two releases, for the people who approve them: images, charts,
    /// values keys, egress destinations, scripts and signers.
    Diff {
        old: PathBuf,
        new: PathBuf,
        /// The report's format (`--json` implies json).
        #[arg(long, value_enum, default_value_t = DiffFormat::Table)]
        format: DiffFormat,
        #[command(flatten)]
        trust: TrustArgs,
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
    /// The images charts deploy, and checks on the images values files refer to.
    Images {
        #[command(subcommand)]
        command: ImagesCommand,
    },
    /// Audit where a bundle's software can connect, against an allow-list.
    Egress {
        #[command(subcommand)]
        command: EgressCommand,
    },
    /// Serve the images of bundles as a read-only OCI registry, straight from the verified
    /// bundle files (or extracted bundle folders); nothing is extracted.
    Serve(ServeArgs),
    /// Write a completion script for a shell to standard output.
    Completions {
        /// The shell the script is for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
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

/// What `ferry build` writes instead of one complete bundle.
#[derive(Debug, Args)]
pub struct PieceArgs {
    /// Write a delta against this base: a previous bundle, its ferry.json, or a have-list
    /// (`ferry load --have-list`). Blobs the base holds are listed, not carried.
    #[arg(long, value_name = "BASE", conflicts_with = "max_part_size")]
    pub base: Option<PathBuf>,
    /// Write the bundle as parts of at most SIZE bytes (NAME-VERSION.partK-of-N.tar.gz) in
    /// the output's folder.
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub max_part_size: Option<u64>,
}

/// A size in bytes: a number with an optional unit (K, M, G, T decimal or KiB, MiB, GiB, TiB).
fn parse_size(s: &str) -> Result<u64, String> {
    ferry::bundle::split::parse_size(s)
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

/// How `ferry build` pulls images and charts from registries.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// Fail unless every registry input resolves to what ferry.lock (beside the spec) pins.
    #[arg(long)]
    pub locked: bool,
    /// Keep fetched blobs in this content-addressed folder, so a rebuild fetches nothing twice.
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Blobs fetched at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Also carry non-distributable (foreign) layers; without it they are left out and the
    /// build names the images that will not pull inside an air gap.
    #[arg(long)]
    pub include_non_distributable: bool,
    /// A Docker config.json or containers auth.json (default: $DOCKER_CONFIG, ~/.docker, $REGISTRY_AUTH_FILE).
    #[arg(long)]
    pub authfile: Option<PathBuf>,
    /// A PEM file of extra CA certificates to trust: FILE for every registry, HOST[:PORT]=FILE
    /// for one. Repeatable.
    #[arg(long = "ca-file", value_name = "[HOST=]FILE")]
    pub ca_files: Vec<String>,
    /// Speak plain HTTP to every registry (only for registries that have no TLS).
    #[arg(long)]
    pub plain_http: bool,
    /// Speak plain HTTP to this registry only (HOST[:PORT]). Repeatable.
    #[arg(long = "plain-http-host", value_name = "HOST")]
    pub plain_http_hosts: Vec<String>,
    /// Build even when the charts deploy images the spec does not carry (they are listed).
    #[arg(long)]
    pub allow_missing_images: bool,
    /// Leave out the signatures, attestations and SBOMs attached to the images.
    #[arg(long)]
    pub no_referrers: bool,
}

/// What `ferry inspect` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InspectFormat {
    /// The manifest's summary (or the manifest with --json).
    Summary,
    /// A CycloneDX 1.6 JSON SBOM of the bundle.
    Cyclonedx,
    /// An SPDX 2.3 JSON document of the bundle.
    Spdx,
}

/// Which keys image signatures must verify under.
#[derive(Debug, Args)]
pub struct ImageTrustArgs {
    /// A trusted cosign public key (PKIX PEM) for image signatures; repeat for several. Every
    /// image that carries signatures must have one that verifies under one of them.
    #[arg(long = "image-key", value_name = "PUB")]
    pub image_keys: Vec<PathBuf>,
    /// Fail on any image that carries no signature.
    #[arg(long, requires = "image_keys")]
    pub require_image_signatures: bool,
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
        /// The report's format (`--json` implies json).
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Which verdicts fail the check, comma-separated: e.g. `denied,unknown,unresolved`
        /// (the default), `none`.
        #[arg(long, value_enum, value_delimiter = ',', default_value = "default")]
        fail_on: Vec<FailOn>,
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
        /// The report's format (`--json` implies json).
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Which verdicts fail the check, comma-separated (as for `egress check`).
        #[arg(long, value_enum, value_delimiter = ',', default_value = "default")]
        fail_on: Vec<FailOn>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// List every image the charts would deploy, as Helm renders it: required with the values
    /// given, or only in branches they switch off (conditional).
    List {
        /// A chart folder (with Chart.yaml) or a packaged chart (.tgz); its subcharts too.
        #[arg(required = true)]
        charts: Vec<PathBuf>,
        /// A values file layered on each chart, in order, as `helm template -f` does
        /// (repeat the flag for several).
        #[arg(short = 'f', long = "values")]
        values: Vec<PathBuf>,
        /// The output: a table, one JSON document, or an `images:` block for ferry.yaml.
        #[arg(long, value_enum, default_value_t = ListFormat::Text)]
        format: ListFormat,
    },
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

/// The formats of `ferry diff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiffFormat {
    /// Aligned sections for a terminal.
    Table,
    /// One JSON document.
    Json,
    /// Markdown for a review or a change ticket.
    #[value(alias = "md")]
    Markdown,
}

/// The formats of `ferry images list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    /// One image a line: need, reference, template line.
    Text,
    /// One JSON document.
    Json,
    /// A ready `images:` block for ferry.yaml.
    Spec,
}

/// The formats of an egress report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// An aligned, readable table.
    Table,
    /// One JSON object: findings, diagnostics, summary.
    Json,
    /// SARIF 2.1.0 for code-scanning tools.
    Sarif,
    /// A Markdown egress table for an install guide.
    #[value(alias = "md")]
    Markdown,
}

/// One word of `--fail-on`: a verdict that fails the check, or a modifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// A loopback address.
    Loopback,
    /// A destination the allow-list denies.
    Denied,
    /// A destination the allow-list allows.
    Allowed,
    /// An Ingress or Gateway API host of the chart (inbound, not egress).
    Inbound,
    /// An in-cluster service.
    InCluster,
    /// A placeholder the customer fills in.
    Placeholder,
    /// A destination the allow-list does not mention.
    Unknown,
    /// A destination that could not be worked out.
    Unresolved,
    /// Also fail on commented-out lines.
    Commented,
    /// Also fail on documentation.
    Docs,
    /// Nothing fails.
    None,
    /// `denied,unknown,unresolved`.
    Default,
}

/// The arguments of `ferry serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Bundle files or extracted bundle folders; several merge (a tag they disagree on is
    /// refused).
    #[arg(required = true, value_name = "BUNDLE|DIR")]
    pub inputs: Vec<PathBuf>,
    /// The address to listen on. Beyond loopback, give --tls-cert/--tls-key.
    #[arg(long, default_value = "127.0.0.1:5000", value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
    /// Also answer under PREFIX/PATH, as `ferry rewrite --registry HOST:PORT/PREFIX` writes.
    #[arg(long)]
    pub prefix: Option<String>,
    /// Serve HTTPS with this certificate chain (PEM).
    #[arg(long, requires = "tls_key", value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, requires = "tls_cert", value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// Require basic auth from the users of this htpasswd file (bcrypt: `htpasswd -B`).
    #[arg(long, value_name = "FILE")]
    pub htpasswd: Option<PathBuf>,
    /// Listen beyond loopback without TLS (images and passwords cross the network in clear).
    #[arg(long)]
    pub allow_insecure_listen: bool,
    /// Log one line per request on stderr.
    #[arg(long)]
    pub access_log: bool,
    /// Seconds a client has for its TLS handshake and for each request's headers.
    #[arg(long, default_value_t = 10, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout: u64,
    /// Print the node configuration that pulls every original registry of the bundles
    /// through this server, and exit.
    #[arg(long, value_enum, value_name = "KIND")]
    pub mirror_config: Option<MirrorConfig>,
    /// HOST:PORT at which nodes reach this server (default: --listen).
    #[arg(long, requires = "mirror_config", value_name = "HOST:PORT")]
    pub mirror_endpoint: Option<String>,
    /// The CA certificate nodes are to trust (default: the last certificate of --tls-cert).
    #[arg(long, requires = "mirror_config", value_name = "PEM")]
    pub mirror_ca: Option<PathBuf>,
    /// Write the configuration files into this folder instead of printing them.
    #[arg(long, requires = "mirror_config", value_name = "DIR")]
    pub mirror_dir: Option<PathBuf>,
    #[command(flatten)]
    pub trust: TrustArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// The node software `--mirror-config` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MirrorConfig {
    /// containerd `hosts.toml` folders (`config_path`, `ctr --hosts-dir`).
    Containerd,
    /// k3s and rke2 `registries.yaml`.
    K3s,
    /// A `registries.conf.d` drop-in for CRI-O, podman and skopeo.
    #[value(name = "cri-o")]
    CriO,
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
