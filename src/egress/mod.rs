//! Egress audit: find every outbound destination a bundle's software could reach and judge it
//! against a customer's allow-list (`ferry egress check`, `policy` and `observe`).
//!
//! The normative description of the allow-list, the verdicts and how findings are found lives
//! in `bundle-spec/egress.md`; this module is its implementation.

pub mod allowlist;
pub mod classify;
pub mod fields;
pub mod finder;
pub mod observe;
pub mod phonehomes;
pub mod policy;
pub mod report;
pub mod scan;
mod sprig;
pub mod template;
pub mod values;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use allowlist::{AllowList, HostPattern, Rule};
pub use observe::observe;
pub use policy::policy;
pub use report::render;
pub use scan::check;

/// Everything that can go wrong while auditing egress. Findings are not errors: a denied
/// destination is part of a [`Report`]; these are the cases where no report can be made.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The allow-list is not valid YAML or does not follow the schema in `bundle-spec/egress.md`.
    #[error("{path}:{line}:{column}: invalid allow-list: {message} (see bundle-spec/egress.md for the schema)")]
    AllowList {
        /// The allow-list file.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// 1-based column.
        column: u64,
        /// What is wrong.
        message: String,
    },
    /// The folder to check does not exist or is not a folder.
    #[error("{path} is not a folder; extract the bundle first (`ferry extract BUNDLE -C DIR`) and check the folder")]
    NotAFolder {
        /// The path given.
        path: PathBuf,
    },
    /// A user values file is not valid YAML.
    #[error("{path}:{line}:{column}: values file is not valid YAML: {message}")]
    Values {
        /// The values file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// A packaged chart (`.tgz`) could not be unpacked.
    #[error("cannot unpack packaged chart {path}: {source}")]
    Unpack {
        /// The packaged chart.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// The judgement on one destination. The order of the variants is the order of the
/// classification (first match wins) as documented in `bundle-spec/egress.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Never leaves the pod: `localhost`, `127.0.0.0/8`, `::1`, and the unspecified addresses.
    Loopback,
    /// Matches a deny rule of the allow-list.
    Denied,
    /// Matches an allow rule of the allow-list.
    Allowed,
    /// A name clients use to reach the chart's own workloads (an Ingress or Gateway API host):
    /// inbound traffic, not egress.
    Inbound,
    /// A Kubernetes service address or a service the chart defines itself.
    InCluster,
    /// A value the customer is expected to replace (`*.yourcompany.com`, `example.com`, `<...>`).
    Placeholder,
    /// A destination that no rule covers.
    Unknown,
    /// A destination whose host could not be computed (unresolvable template or variable).
    Unresolved,
}

impl Verdict {
    /// Every verdict, in classification order.
    pub const ALL: [Verdict; 8] = [
        Verdict::Loopback,
        Verdict::Denied,
        Verdict::Allowed,
        Verdict::Inbound,
        Verdict::InCluster,
        Verdict::Placeholder,
        Verdict::Unknown,
        Verdict::Unresolved,
    ];

    /// The kebab-case name used in every output format.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Loopback => "loopback",
            Verdict::Denied => "denied",
            Verdict::Allowed => "allowed",
            Verdict::InCluster => "in-cluster",
            Verdict::Inbound => "inbound",
            Verdict::Placeholder => "placeholder",
            Verdict::Unknown => "unknown",
            Verdict::Unresolved => "unresolved",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Verdict {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Verdict::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| format!("unknown verdict `{s}`"))
    }
}

/// What shape the destination had where it was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A URL with a scheme (`https://host:port/path`).
    Url,
    /// A `host:port` pair.
    HostPort,
    /// A host name or IP address on its own.
    Host,
    /// The registry part of a container image reference.
    Registry,
    /// A connection seen at run time (Hubble flow or `host port` list).
    Flow,
    /// A connection the software makes by default with no URL in the chart (an update check,
    /// usage statistics, a receiver's built-in endpoint); the evidence is the setting that
    /// controls it (`src/egress/phonehomes.yaml`).
    PhoneHome,
}

/// What sort of file the evidence is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// A Helm values file (the chart's, the bundle's, or a user overlay).
    Values,
    /// A Helm chart template, rendered against the merged values.
    Template,
    /// A script (`scripts/`, `*.sh`, ...).
    Script,
    /// Any other text file: configuration, manifests, ConfigMap payloads.
    Config,
    /// Documentation (README, NOTES.txt, Chart.yaml metadata): informational only.
    Doc,
    /// A runtime log given to `observe`.
    Log,
}

/// One piece of evidence: a destination, where it was found, and the verdict on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Host name or IP address (IPv6 without brackets), lower-cased; unresolved parts are
    /// shown as `{{?}}`.
    pub host: String,
    /// The port, explicit or implied by the URL scheme; `None` when unknown.
    pub port: Option<u16>,
    /// The verdict.
    pub verdict: Verdict,
    /// The allow-list rule (or built-in class) that decided the verdict.
    pub rule: Option<String>,
    /// The file, relative to the checked folder, `/`-separated.
    pub file: String,
    /// 1-based line in `file`.
    pub line: usize,
    /// The line's text, trimmed, with credentials redacted.
    pub text: String,
    /// For values and templates, the `.Values` path the destination came from.
    pub value_path: Option<String>,
    /// What shape the destination had.
    pub kind: Kind,
    /// What sort of file it was found in.
    pub source: Source,
    /// True when the destination is on a commented-out line.
    pub commented: bool,
}

impl Finding {
    /// True when this finding makes the check fail under `fail_on`.
    pub fn fails(&self, fail_on: &FailOn) -> bool {
        fail_on.verdicts.contains(&self.verdict)
            && (!self.commented || fail_on.commented)
            && (self.source != Source::Doc || fail_on.docs)
    }
}

/// A file that could not be understood; the rest of the bundle is still checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    /// The file, relative to the checked folder.
    pub file: String,
    /// 1-based line where the problem starts.
    pub line: usize,
    /// What is wrong and what was done about it.
    pub message: String,
}

/// A destination the vendor declared in `ferry.yaml` (recorded in the bundle manifest).
pub use crate::bundle::manifest::Destination;

/// Counts per verdict and totals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of findings.
    pub findings: usize,
    /// Findings per verdict (every verdict present, zero included).
    pub verdicts: BTreeMap<String, usize>,
    /// Findings that make the check fail under the options it was run with.
    pub failing: usize,
    /// Files read.
    pub files_scanned: usize,
    /// Files (or parts) that could not be understood.
    pub diagnostics: usize,
}

/// The result of `check` or `observe`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Every piece of evidence, sorted by file, line, host, port.
    pub findings: Vec<Finding>,
    /// Files that could not be understood.
    pub diagnostics: Vec<Diagnostic>,
    /// Counts.
    pub summary: Summary,
    /// The vendor's declared destinations, when given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub declared: Vec<Destination>,
    /// The allow-list the findings were judged against (used by the Markdown table).
    #[serde(skip)]
    pub allow: Option<AllowList>,
}

impl Report {
    /// The process exit code: 1 when a finding fails under `fail_on` (or, when `unresolved`
    /// is in `fail_on`, when a file could not be understood), 0 otherwise.
    pub fn exit_code(&self, fail_on: &FailOn) -> i32 {
        let failing = self.findings.iter().any(|f| f.fails(fail_on));
        let broken =
            !self.diagnostics.is_empty() && fail_on.verdicts.contains(&Verdict::Unresolved);
        i32::from(failing || broken)
    }

    /// Recompute the summary from the findings.
    pub fn summarize(&mut self, fail_on: &FailOn, files_scanned: usize) {
        let mut verdicts: BTreeMap<String, usize> = Verdict::ALL
            .iter()
            .map(|v| (v.as_str().to_string(), 0))
            .collect();
        for f in &self.findings {
            *verdicts.entry(f.verdict.as_str().to_string()).or_default() += 1;
        }
        self.summary = Summary {
            findings: self.findings.len(),
            verdicts,
            failing: self.findings.iter().filter(|f| f.fails(fail_on)).count(),
            files_scanned,
            diagnostics: self.diagnostics.len(),
        };
    }
}

/// Which findings make the check exit 1. Parsed from a comma-separated list of verdict names
/// plus the words `commented` (also count commented-out lines), `docs` (also count
/// documentation), `none` (never fail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailOn {
    /// Verdicts that fail.
    pub verdicts: Vec<Verdict>,
    /// Also fail on commented-out lines.
    pub commented: bool,
    /// Also fail on documentation.
    pub docs: bool,
}

impl Default for FailOn {
    /// `denied,unknown,unresolved`.
    fn default() -> Self {
        FailOn {
            verdicts: vec![Verdict::Denied, Verdict::Unknown, Verdict::Unresolved],
            commented: false,
            docs: false,
        }
    }
}

impl FromStr for FailOn {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = FailOn {
            verdicts: Vec::new(),
            commented: false,
            docs: false,
        };
        for word in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word {
                "commented" => out.commented = true,
                "docs" => out.docs = true,
                "none" => {}
                "default" => {
                    for v in FailOn::default().verdicts {
                        if !out.verdicts.contains(&v) {
                            out.verdicts.push(v);
                        }
                    }
                }
                w => {
                    let v: Verdict = w.parse().map_err(|e| {
                        format!("{e}; expected a comma-separated list of: loopback, denied, allowed, inbound, in-cluster, placeholder, unknown, unresolved, commented, docs, none, default")
                    })?;
                    if !out.verdicts.contains(&v) {
                        out.verdicts.push(v);
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Output format of [`render`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// An aligned, readable table.
    Table,
    /// One JSON object: `findings`, `diagnostics`, `summary`.
    Json,
    /// SARIF 2.1.0 for code-scanning tools.
    Sarif,
    /// A Markdown egress table for an install guide.
    Markdown,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "table" => Ok(Format::Table),
            "json" => Ok(Format::Json),
            "sarif" => Ok(Format::Sarif),
            "markdown" | "md" => Ok(Format::Markdown),
            other => Err(format!(
                "unknown format `{other}`; expected table, json, sarif or markdown"
            )),
        }
    }
}

/// Options of [`check`].
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// An extracted bundle folder (holds `charts/`, values files, `scripts/`, ...), or a chart
    /// folder (holds `Chart.yaml`).
    pub root: PathBuf,
    /// The allow-list; without one, nothing is `allowed` or `denied`.
    pub allow: Option<AllowList>,
    /// User values overlays, applied in order after the chart's and the bundle's values.
    pub values: Vec<PathBuf>,
    /// Which findings fail the check (used for the summary).
    pub fail_on: FailOn,
    /// The vendor's declared destinations from the bundle manifest, for the Markdown table.
    pub declared: Vec<Destination>,
}
