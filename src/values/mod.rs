//! Values rewriting: redirects image references in Helm values files to the customer's registry
//! by editing the text in place, and checks that every image the values name is in the bundle.
//!
//! The rules are specified in `bundle-spec/rewrite.md`. In short: a values file is parsed only to
//! find where image references and registries are; each such scalar is then located byte for byte
//! in the text and replaced in its own quoting style, so comments, key order, quoting,
//! indentation, line endings and every other byte stay as they were. Whatever cannot be edited
//! with certainty (an alias or anchor on an image, a block scalar, a multi-line scalar, a key to
//! insert into a flow mapping) is refused with its line and column.

mod chart;
mod coverage;
mod sites;
pub mod tree;
mod yaml;

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use granit_parser::ScalarStyle;
use serde::{Deserialize, Serialize};

pub use chart::{app_version, locate, ChartValues};
pub use coverage::{
    check_coverage, find_chart_images, find_images, Coverage, Covered, ImageUse, Missing,
    MissingReason,
};

use crate::bundle::manifest::ImageEntry;
use crate::oci::reference::{
    name_part, normalise_path, ImageRef, RegistryPrefix, Target, PLACEHOLDER,
};
use sites::{Field, MapSite, NullMapSite, RefSite, RegistrySite};
use tree::{Kind, Lines, NodeId, Tree};
use yaml::{encode, scalar_token, Token, TokenProblem};

/// The normalised `(registry, repository)` of each bundle image, in order; `None` for an image
/// whose reference does not parse (loading refuses such a bundle, and nothing matches it).
pub(crate) fn normalised(images: &[ImageEntry]) -> Vec<Option<(String, String)>> {
    images
        .iter()
        .map(|e| {
            let r = e.image_ref().ok()?;
            Some((r.host().to_string(), r.repository))
        })
        .collect()
}

/// What to rewrite to, and with which knowledge.
#[derive(Clone, Debug)]
pub struct RewriteOptions {
    /// The customer's registry.
    pub target: Target,
    /// The bundle's images (as its manifest lists them); empty when no bundle is given.
    pub images: Vec<ImageEntry>,
    /// Add the bundle's digest to every image it knows.
    pub pin_digests: bool,
}

/// One change made to a values file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edit {
    /// 1-based line in the input.
    pub line: usize,
    /// 1-based column (in characters) in the input.
    pub column: usize,
    /// Where in the document, e.g. `gateway.image.repository` or `images[2]`.
    pub path: String,
    /// The scalar's value before (empty for an inserted key).
    pub before: String,
    /// The scalar's value after (for an inserted key, the whole `digest: …` entry).
    pub after: String,
    /// Why the edit was made, when it is not an image or registry being redirected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The rewritten text and the changes made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rewritten {
    /// The new file contents.
    pub text: String,
    /// Every change, in file order.
    pub edits: Vec<Edit>,
    /// Image maps left as they were although their image may not come from the mirror, in
    /// file order.
    pub unmoved: Vec<Unmoved>,
}

/// An image map the rewrite could not point at the mirror, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unmoved {
    /// 1-based line of the map's `registry` key.
    pub line: usize,
    /// 1-based column of that key.
    pub column: usize,
    /// The map, e.g. `image` or `hub.image`.
    pub path: String,
    /// Why it was left, and what to do.
    pub reason: String,
}

/// An image map whose `registry` and name (`repository` or `image`) are null or empty, so that
/// the chart's templates choose the image (Traefik's `image:` map).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NullMap {
    /// The map, as edits name it (`image`, `hub.image`, `items[0].image`).
    pub path: String,
    /// The keys from the document root to the map; `None` inside a sequence, which a values
    /// overlay cannot address.
    pub keys: Option<Vec<String>>,
    /// The key the chart joins with `registry`: `repository` or `image`.
    pub name_key: &'static str,
    /// Whether the map has a `digest` key.
    pub has_digest: bool,
}

/// The image a chart renders from its template defaults for a [`NullMap`], as found by
/// rendering the chart (`images::template_defaults`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefaultImage {
    /// The normalised reference the chart renders with the map empty.
    pub image: ImageRef,
    /// The template line that renders it (`chart/templates/x.yaml:12`).
    pub location: String,
    /// Whether a `digest` written in the map is rendered after the tag.
    pub digest_rendered: bool,
}

/// What rendering the chart found for one [`NullMap`]: its default image, or why none can be
/// used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateDefault {
    /// [`NullMap::path`].
    pub path: String,
    /// The default image, or why the map cannot be filled.
    pub found: Result<DefaultImage, String>,
}

/// What is known of the chart a values file belongs to.
#[derive(Clone, Copy, Debug, Default)]
pub struct ChartFacts<'a> {
    /// `Chart.yaml`'s `appVersion`: the tag of an image map that gives none.
    pub app_version: Option<&'a str>,
    /// The template defaults of the file's [`NullMap`]s; `None` when no chart was rendered.
    pub defaults: Option<&'a [TemplateDefault]>,
}

/// The image maps of a values file whose `registry` and name are null or empty.
///
/// # Errors
/// As [`rewrite`] for a file it refuses.
pub fn null_maps(text: &str, file: &Path) -> Result<Vec<NullMap>, RewriteError> {
    let src = Source::new(text, file);
    let tree = src.parse()?;
    let sites = sites::find(text, &tree).map_err(|r| src.ambiguous(r.offset, r.reason))?;
    Ok(sites
        .null_maps
        .into_iter()
        .map(|m| NullMap {
            path: m.path,
            keys: m.keys,
            name_key: m.name_key,
            has_digest: m.digest.is_some(),
        })
        .collect())
}

/// Why a place in a values file cannot be edited with certainty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ambiguity {
    /// An alias (`*name`) where an image or registry is expected.
    Alias,
    /// An anchor (`&name`) on an image, image map or registry value.
    Anchor,
    /// A merge key (`<<: *name`) inside an image map.
    Merge,
    /// A block scalar (`|` or `>`) holding an image or registry.
    BlockScalar,
    /// A plain or quoted scalar that spans lines.
    MultiLine,
    /// A double-quoted scalar with backslash escapes.
    Escapes,
    /// A `digest:` key would have to be inserted into a flow mapping (`{…}`).
    FlowInsert,
    /// The indentation of an image map could not be determined for inserting a key.
    Indentation,
    /// The scalar could not be found in the text where the parser put it.
    Unlocated,
    /// `global.security.allowInsecureImages` is not true and cannot be set with certainty (an
    /// alias, an anchor, a collection, a block or multi-line scalar).
    InsecureImagesFlag,
    /// Several bundle images with different digests match a reference whose registry is the
    /// `REGISTRY` placeholder.
    BundleConflict {
        /// The reference as written.
        reference: String,
        /// The digests that match.
        digests: Vec<String>,
    },
}

impl fmt::Display for Ambiguity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ambiguity::Alias => f.write_str(
                "an alias (`*name`) stands where an image or registry is expected; write the value out here instead of aliasing it",
            ),
            Ambiguity::Anchor => f.write_str(
                "an anchor (`&name`) is set on an image or registry value, so other places may share it; remove the anchor and write the value out where it is used",
            ),
            Ambiguity::Merge => f.write_str(
                "a merge key (`<<`) inside an image map hides part of the image; write the registry, repository and tag out in the map",
            ),
            Ambiguity::BlockScalar => f.write_str(
                "an image or registry is written as a block scalar (`|` or `>`); write it as a one-line plain or quoted scalar",
            ),
            Ambiguity::MultiLine => f.write_str("an image or registry scalar spans several lines; write it on one line"),
            Ambiguity::Escapes => f.write_str(
                "an image or registry is double-quoted with backslash escapes; write it without escapes",
            ),
            Ambiguity::FlowInsert => f.write_str(
                "a `digest` key would have to be inserted into a flow mapping (`{…}`); add `digest: \"\"` to the map or write it in block style",
            ),
            Ambiguity::Indentation => f.write_str(
                "the image map's indentation could not be determined to insert a `digest` key; add `digest: \"\"` to the map",
            ),
            Ambiguity::InsecureImagesFlag => f.write_str(
                "the images now name the mirror, and the chart refuses to render images other than those it was released with unless `global.security.allowInsecureImages` is true; that value cannot be set with certainty here: write `allowInsecureImages: true` as a plain scalar under `global.security`",
            ),
            Ambiguity::Unlocated => f.write_str("the scalar could not be located in the text; please report this file"),
            Ambiguity::BundleConflict { reference, digests } => write!(
                f,
                "`{reference}` matches bundle images with different digests ({}); write the original registry instead of REGISTRY",
                digests.join(", ")
            ),
        }
    }
}

/// Why a values file was not rewritten.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    /// The file is not valid YAML.
    #[error("{}:{line}:{column}: not valid YAML: {message}", file.display())]
    Parse {
        /// The values file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// A place the rewriter cannot edit with certainty.
    #[error("{}:{line}:{column}: refusing to rewrite: {reason}", file.display())]
    Ambiguous {
        /// The values file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is ambiguous, and what to change.
        reason: Ambiguity,
    },
    /// The values pin a digest that differs from the bundle's image.
    #[error(
        "{}:{line}:{column}: `{reference}` is pinned to {values_digest} but the bundle has {bundle_digest}; \
         fix the digest in the values or use the bundle that has that image",
        file.display()
    )]
    DigestConflict {
        /// The values file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The reference as written.
        reference: String,
        /// The digest in the values.
        values_digest: String,
        /// The digest in the bundle.
        bundle_digest: String,
    },
}

/// The text being worked on, with its position tables.
pub(crate) struct Source<'a> {
    pub text: &'a str,
    pub file: &'a Path,
    pub lines: Lines,
}

impl<'a> Source<'a> {
    pub fn new(text: &'a str, file: &'a Path) -> Self {
        Source {
            text,
            file,
            lines: Lines::new(text),
        }
    }

    pub fn parse(&self) -> Result<Tree<'a>, RewriteError> {
        Tree::parse(self.text).map_err(|e| {
            let (line, column) = self.lines.position(self.text, e.offset);
            RewriteError::Parse {
                file: self.file.to_path_buf(),
                line,
                column,
                message: e.message,
            }
        })
    }

    pub fn ambiguous(&self, offset: usize, reason: Ambiguity) -> RewriteError {
        let (line, column) = self.lines.position(self.text, offset);
        RewriteError::Ambiguous {
            file: self.file.to_path_buf(),
            line,
            column,
            reason,
        }
    }
}

/// One planned change: replace `range` of the input by `with`.
struct Planned {
    start: usize,
    end: usize,
    with: String,
    edit: Edit,
}

/// Whether and how a registry is redirected.
enum Decision<'p> {
    /// Not a registry to redirect (not the bundle's).
    Leave,
    /// Redirect to the target.
    Rewrite,
    /// Already points into the target; the path below the prefix.
    AlreadyTarget(&'p str),
}

struct Plan<'s, 'a> {
    src: &'s Source<'a>,
    tree: &'s Tree<'a>,
    opts: &'s RewriteOptions,
    /// What is known of the values' chart.
    chart: ChartFacts<'s>,
    /// Normalised registries of the bundle's images.
    hosts: BTreeSet<String>,
    /// Normalised `(registry, repository)` of each bundle image, in `opts.images` order.
    norm: Vec<Option<(String, String)>>,
    planned: Vec<Planned>,
    unmoved: Vec<Unmoved>,
    /// Whether some image or registry now points (or already pointed) into the target.
    redirected: std::cell::Cell<bool>,
}

/// Rewrites the registry paths of one values file.
///
/// `file` is used only in error messages. See `bundle-spec/rewrite.md` for what is rewritten.
///
/// # Errors
/// [`RewriteError::Parse`] for invalid YAML, [`RewriteError::Ambiguous`] where an edit would be a
/// guess, [`RewriteError::DigestConflict`] when pinning finds a different digest already written.
pub fn rewrite(text: &str, file: &Path, opts: &RewriteOptions) -> Result<Rewritten, RewriteError> {
    rewrite_chart(text, file, ChartFacts::default(), opts)
}

/// [`rewrite`] for the values of a chart. With its `appVersion` and `pin_digests`, an image map
/// that gives neither a tag nor a digest is pinned to the bundle image tagged with the
/// `appVersion` (or with it `v`-prefixed, or unprefixed), the tag the chart's templates fall
/// back to, as [`find_chart_images`] checks it. With its template defaults, each [`NullMap`]
/// gets the mirror as `registry` and the default image's path as its name, so that the chart
/// composes the mirror's image with the tag it chose; a map without a usable default is listed
/// in [`Rewritten::unmoved`].
///
/// # Errors
/// As [`rewrite`].
pub fn rewrite_chart(
    text: &str,
    file: &Path,
    chart: ChartFacts<'_>,
    opts: &RewriteOptions,
) -> Result<Rewritten, RewriteError> {
    let src = Source::new(text, file);
    let tree = src.parse()?;
    let sites = sites::find(text, &tree).map_err(|r| src.ambiguous(r.offset, r.reason))?;
    let norm = normalised(&opts.images);
    let mut plan = Plan {
        src: &src,
        tree: &tree,
        opts,
        chart,
        hosts: norm.iter().flatten().map(|(h, _)| h.clone()).collect(),
        norm,
        planned: Vec::new(),
        unmoved: Vec::new(),
        redirected: std::cell::Cell::new(false),
    };
    for site in &sites.refs {
        plan.reference(site)?;
    }
    for site in &sites.registries {
        plan.registry(site)?;
    }
    for site in &sites.maps {
        plan.map(site)?;
    }
    for site in &sites.null_maps {
        plan.null_map(site)?;
    }
    if plan.redirected.get() {
        for &root in &tree.roots {
            plan.allow_mirror_images(root)?;
        }
    }
    Ok(plan.apply())
}

/// Whether Helm's templates read a scalar as false: null, empty, a YAML 1.1 false word or zero
/// (go-yaml reads values as YAML 1.1; an empty string is false in a template condition).
fn helm_falsy(value: &str, style: ScalarStyle) -> bool {
    match style {
        ScalarStyle::Plain => matches!(
            value,
            "" | "~"
                | "null"
                | "Null"
                | "NULL"
                | "false"
                | "False"
                | "FALSE"
                | "no"
                | "No"
                | "NO"
                | "off"
                | "Off"
                | "OFF"
                | "n"
                | "N"
                | "0"
        ),
        _ => value.is_empty(),
    }
}

/// A unified diff (3 lines of context) between two versions of `path`, for `--diff`. Empty when
/// they are equal.
pub fn unified_diff(path: &Path, before: &str, after: &str) -> String {
    if before == after {
        return String::new();
    }
    let name = path.display().to_string();
    similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(3)
        .header(&name, &name)
        .to_string()
}

impl Plan<'_, '_> {
    fn decide<'p>(&self, host: Option<&str>, path: &'p str) -> Decision<'p> {
        let Some(host) = host else {
            self.redirected.set(true);
            return Decision::Rewrite;
        };
        if let Some(rest) = self.opts.target.strip(host, path) {
            self.redirected.set(true);
            return Decision::AlreadyTarget(rest);
        }
        if self.opts.images.is_empty() || self.hosts.contains(host) {
            self.redirected.set(true);
            Decision::Rewrite
        } else {
            Decision::Leave
        }
    }

    /// The bundle image with this repository and tag; `host` `None` matches any registry.
    fn known(
        &self,
        offset: usize,
        host: Option<&str>,
        path: &str,
        tag: &str,
    ) -> Result<Option<&ImageEntry>, RewriteError> {
        let mut found: Option<&ImageEntry> = None;
        let mut digests: Vec<String> = Vec::new();
        for (k, norm) in self.opts.images.iter().zip(&self.norm) {
            let Some((k_host, k_path)) = norm else {
                continue;
            };
            if k.tag.as_deref() != Some(tag) || k_path != path || host.is_some_and(|h| k_host != h)
            {
                continue;
            }
            let digest = k.digest.to_string();
            if !digests.contains(&digest) {
                digests.push(digest);
            }
            found.get_or_insert(k);
        }
        if digests.len() > 1 {
            let reference = format!("{}/{path}:{tag}", host.unwrap_or(PLACEHOLDER));
            return Err(self
                .src
                .ambiguous(offset, Ambiguity::BundleConflict { reference, digests }));
        }
        Ok(found)
    }

    /// The bundle image of an image map without a tag or digest: the one tagged with the
    /// chart's `appVersion`, else with it `v`-prefixed (or unprefixed), as templates write it.
    fn known_app_version(
        &self,
        offset: usize,
        host: Option<&str>,
        path: &str,
    ) -> Result<Option<&ImageEntry>, RewriteError> {
        let Some(version) = self.chart.app_version else {
            return Ok(None);
        };
        if let Some(k) = self.known(offset, host, path, version)? {
            return Ok(Some(k));
        }
        let variant = match version.strip_prefix('v') {
            Some(bare) => bare.to_string(),
            None => format!("v{version}"),
        };
        self.known(offset, host, path, &variant)
    }

    fn token(&self, id: NodeId) -> Result<Token, RewriteError> {
        let node = &self.tree.nodes[id];
        scalar_token(self.src.text, node).map_err(|p| {
            let reason = match p {
                TokenProblem::BlockScalar => Ambiguity::BlockScalar,
                TokenProblem::MultiLine => Ambiguity::MultiLine,
                TokenProblem::Escapes => Ambiguity::Escapes,
                TokenProblem::NotFound => Ambiguity::Unlocated,
            };
            self.src.ambiguous(node.start, reason)
        })
    }

    fn edit(&self, offset: usize, path: &str, before: &str, after: &str) -> Edit {
        let (line, column) = self.src.lines.position(self.src.text, offset);
        Edit {
            line,
            column,
            path: path.to_string(),
            before: before.to_string(),
            after: after.to_string(),
            note: None,
        }
    }

    /// Replaces a scalar's value, keeping its quoting style.
    fn replace(&mut self, id: NodeId, path: &str, new: &str) -> Result<(), RewriteError> {
        let (old, _) = self.tree.scalar(id).expect("sites are scalars");
        if old == new {
            return Ok(());
        }
        let token = self.token(id)?;
        let in_flow = self.tree.nodes[id].in_flow;
        let (with, requoted) = encode(new, token.style, in_flow);
        let range = if requoted {
            token.whole.clone()
        } else {
            token.content.clone()
        };
        let edit = self.edit(token.whole.start, path, old, new);
        self.planned.push(Planned {
            start: range.start,
            end: range.end,
            with,
            edit,
        });
        Ok(())
    }

    fn conflict(
        &self,
        id: NodeId,
        reference: String,
        values_digest: &str,
        bundle_digest: &str,
    ) -> RewriteError {
        let (line, column) = self
            .src
            .lines
            .position(self.src.text, self.tree.nodes[id].start);
        RewriteError::DigestConflict {
            file: self.src.file.to_path_buf(),
            line,
            column,
            reference,
            values_digest: values_digest.to_string(),
            bundle_digest: bundle_digest.to_string(),
        }
    }

    fn reference(&mut self, site: &RefSite) -> Result<(), RewriteError> {
        let img = &site.image;
        let (value, _) = self.tree.scalar(site.node).expect("sites are scalars");
        let (name, lookup_host, lookup_path) =
            match self.decide(img.registry.as_deref(), &img.repository) {
                Decision::Leave => return Ok(()),
                Decision::Rewrite => (
                    self.opts.target.join(&img.repository),
                    img.registry.as_deref(),
                    img.repository.as_str(),
                ),
                Decision::AlreadyTarget(rest) => (name_part(value).to_string(), None, rest),
            };
        let mut digest = img.digest.clone();
        if self.opts.pin_digests {
            if let Some(tag) = &img.tag {
                if let Some(k) = self.known(
                    self.tree.nodes[site.node].start,
                    lookup_host,
                    lookup_path,
                    tag,
                )? {
                    let known = k.digest.to_string();
                    match &digest {
                        None => digest = Some(known),
                        Some(d) if *d != known => {
                            return Err(self.conflict(site.node, value.to_string(), d, &known))
                        }
                        Some(_) => {}
                    }
                }
            }
        }
        let mut new = name;
        if let Some(tag) = &img.tag {
            new.push(':');
            new.push_str(tag);
        }
        if let Some(d) = &digest {
            new.push('@');
            new.push_str(d);
        }
        self.replace(site.node, &site.path, &new)
    }

    fn registry(&mut self, site: &RegistrySite) -> Result<(), RewriteError> {
        match self.decide(site.prefix.host.as_deref(), &site.prefix.path) {
            Decision::Rewrite => {
                let new = self.opts.target.join(&site.prefix.path);
                self.replace(site.node, &site.path, &new)
            }
            Decision::Leave | Decision::AlreadyTarget(_) => Ok(()),
        }
    }

    /// The non-empty, non-null value of a map field.
    fn field_value(&self, field: Option<Field>) -> Option<&str> {
        let (v, style) = self.tree.scalar(field?.value)?;
        if v.is_empty()
            || (style == ScalarStyle::Plain && matches!(v, "~" | "null" | "Null" | "NULL"))
        {
            None
        } else {
            Some(v)
        }
    }

    fn map(&mut self, site: &MapSite) -> Result<(), RewriteError> {
        // A map with a registry, its own or the document's `global.imageRegistry`, is joined.
        let mut lookup = if self.field_value(site.registry).is_some() || site.global.is_some() {
            self.map_registry(site)?
        } else {
            self.map_reference(site.repository, &site.repo, &site.path_of(site.name_key))?
        };
        // `{registry, image}` with a non-empty `repository`: the chart uses that reference.
        let effective = match &site.full {
            Some((field, image)) => {
                lookup = self.map_reference(*field, image, &site.path_of("repository"))?;
                image
            }
            None => &site.repo,
        };
        let Some((lookup_host, lookup_path)) = lookup else {
            return Ok(());
        };
        if !self.opts.pin_digests {
            return Ok(());
        }
        let tag = self
            .field_value(site.tag)
            .map(str::to_string)
            .or_else(|| effective.tag.clone());
        let offset = self.tree.nodes[site.repository.value].start;
        let known = match &tag {
            Some(tag) => self.known(offset, lookup_host.as_deref(), &lookup_path, tag)?,
            None if self.field_value(site.digest).is_none() && effective.digest.is_none() => {
                self.known_app_version(offset, lookup_host.as_deref(), &lookup_path)?
            }
            None => None,
        };
        let Some(known) = known.map(|k| k.digest.to_string()) else {
            return Ok(());
        };
        let tag = tag
            .as_deref()
            .or(self.chart.app_version)
            .unwrap_or_default()
            .to_string();
        let (written, written_at) = match &site.full {
            Some((field, _)) => (self.scalar_value(field.value), field.value),
            None => (
                self.scalar_value(site.repository.value),
                site.repository.value,
            ),
        };
        let reference = format!("{}:{tag}", name_part(written));
        if let Some(field) = site.digest {
            match self.field_value(Some(field)) {
                Some(d) if d == known => Ok(()),
                Some(d) => Err(self.conflict(field.value, reference, d, &known)),
                None => self.set_empty(field, &site.path_of("digest"), &known),
            }
        } else if let Some(d) = &effective.digest {
            if *d == known {
                Ok(())
            } else {
                Err(self.conflict(written_at, reference, d, &known))
            }
        } else {
            self.insert_digest(site, &known)
        }
    }

    fn scalar_value(&self, id: NodeId) -> &str {
        self.tree.scalar(id).map_or("", |(v, _)| v)
    }

    /// An image map joined with a registry (its own non-empty `registry`, or else the document's
    /// `global.imageRegistry`, which is rewritten where it is written): its own registry is
    /// rewritten as a registry value, and a one-component name below Docker Hub gets its
    /// `library/`. Returns the registry and path to look the image up with in the bundle, `None`
    /// when the map is left alone.
    fn map_registry(
        &mut self,
        site: &MapSite,
    ) -> Result<Option<(Option<String>, String)>, RewriteError> {
        let own = self.field_value(site.registry);
        let prefix = match own {
            Some(reg) => RegistryPrefix::parse(reg),
            None => site.global.clone(),
        };
        let Some(prefix) = prefix else {
            return Ok(None);
        };
        let repo_value = self.scalar_value(site.repository.value).to_string();
        let raw_name = name_part(&repo_value);
        let joined = prefix.join(raw_name);
        // A document-level `global.imageRegistry` replaces the map's registry in the chart; the
        // name must then also be right below that registry.
        let effective = site.global.as_ref().unwrap_or(&prefix);
        let full = normalise_path(prefix.host.as_deref(), &joined);
        let library = effective.path.is_empty()
            && normalise_path(effective.host.as_deref(), raw_name) != raw_name;
        match self.decide(prefix.host.as_deref(), &full) {
            Decision::Leave => Ok(None),
            Decision::Rewrite => {
                if let (Some(_), Some(field)) = (own, site.registry) {
                    let new = self.opts.target.join(&prefix.path);
                    self.replace(field.value, &site.path_of("registry"), &new)?;
                }
                if library {
                    // `registry: docker.io` with `repository: nginx` means `library/nginx`.
                    let new_repo = format!("library/{repo_value}");
                    self.replace(
                        site.repository.value,
                        &site.path_of(site.name_key),
                        &new_repo,
                    )?;
                }
                Ok(Some((prefix.host.clone(), full)))
            }
            Decision::AlreadyTarget(rest) => Ok(Some((None, rest.to_string()))),
        }
    }

    /// A map field holding a whole reference (a `repository` without `registry`): rewritten as
    /// an image scalar, any tag or digest written in it kept.
    fn map_reference(
        &mut self,
        field: Field,
        img: &ImageRef,
        path: &str,
    ) -> Result<Option<(Option<String>, String)>, RewriteError> {
        let value = self.scalar_value(field.value).to_string();
        match self.decide(img.registry.as_deref(), &img.repository) {
            Decision::Leave => Ok(None),
            Decision::Rewrite => {
                let mut new = self.opts.target.join(&img.repository);
                new.push_str(&value[name_part(&value).len()..]);
                self.replace(field.value, path, &new)?;
                Ok(Some((img.registry.clone(), img.repository.clone())))
            }
            Decision::AlreadyTarget(rest) => Ok(Some((None, rest.to_string()))),
        }
    }

    /// Sets an empty or null `digest:` value.
    fn set_empty(&mut self, field: Field, path: &str, digest: &str) -> Result<(), RewriteError> {
        self.fill(field, path, digest, None)
    }

    /// Sets an empty or null map value: a null word or a quoted empty string is replaced in its
    /// style; after an empty plain value (`registry:  # comment`) the value is written after
    /// the `:` and a space, so a trailing comment stays.
    fn fill(
        &mut self,
        field: Field,
        path: &str,
        value: &str,
        note: Option<String>,
    ) -> Result<(), RewriteError> {
        let (old, style) = self.tree.scalar(field.value).expect("fields are scalars");
        if !(old.is_empty() && style == ScalarStyle::Plain) {
            let before = self.planned.len();
            self.replace(field.value, path, value)?;
            if self.planned.len() > before {
                if let Some(p) = self.planned.last_mut() {
                    p.edit.note = note;
                }
            }
            return Ok(());
        }
        let in_flow = self.tree.nodes[field.value].in_flow;
        let (with, _) = encode(value, ScalarStyle::Plain, in_flow);
        let mut edit = self.edit(self.tree.nodes[field.key].start, path, "", value);
        edit.note = note;
        self.write_after_key(field, &with, edit)
    }

    /// An image map whose `registry` and name are empty: filled from the chart's template
    /// default (the mirror as `registry`, the default's normalised path as the name; the tag
    /// left as it is, so the chart keeps its default tag), or listed as unmoved with why.
    fn null_map(&mut self, site: &NullMapSite) -> Result<(), RewriteError> {
        let found = match self.chart.defaults {
            None => Err(format!(
                "its `registry` and `{}` are empty, so the chart's templates choose the image, \
                 and no chart was found to render them (a Chart.yaml beside the values file); \
                 rewrite the values file in its chart folder, or write the image's registry and \
                 {} in the map",
                site.name_key, site.name_key
            )),
            Some(defaults) => defaults.iter().find(|d| d.path == site.path).map_or_else(
                || Err("the chart was not rendered for it".into()),
                |d| d.found.clone(),
            ),
        };
        let d = match found {
            Ok(d) => d,
            Err(reason) => {
                let (line, column) = self
                    .src
                    .lines
                    .position(self.src.text, self.tree.nodes[site.registry.key].start);
                self.unmoved.push(Unmoved {
                    line,
                    column,
                    path: site.path.clone(),
                    reason,
                });
                return Ok(());
            }
        };
        let (host, path) = (d.image.host(), d.image.repository.as_str());
        if !matches!(self.decide(Some(host), path), Decision::Rewrite) {
            return Ok(());
        }
        let offset = self.tree.nodes[site.registry.key].start;
        let pin = match (&d.image.tag, &d.image.digest, site.digest) {
            (Some(tag), None, Some(field)) if self.opts.pin_digests && d.digest_rendered => self
                .known(offset, Some(host), path, tag)?
                .map(|k| (field, k.digest.to_string())),
            _ => None,
        };
        let note = format!(
            "filled from the chart's template default: with this map empty the chart renders \
             {} ({}); `{}` and `{}` now name that image at the mirror, and the tag is left as it \
             is, so the chart keeps rendering {}{}",
            d.image,
            d.location,
            site.path_of("registry"),
            site.path_of(site.name_key),
            d.image
                .tag
                .as_deref()
                .map_or("no tag".to_string(), |t| format!("tag {t}")),
            if pin.is_some() {
                ", pinned by digest"
            } else {
                ""
            },
        );
        let registry = self.opts.target.base();
        self.fill(
            site.registry,
            &site.path_of("registry"),
            &registry,
            Some(note),
        )?;
        self.fill(site.name, &site.path_of(site.name_key), path, None)?;
        if let Some((field, digest)) = pin {
            self.fill(field, &site.path_of("digest"), &digest, None)?;
        }
        Ok(())
    }

    /// Writes ` TEXT` after the `:` of an entry whose value is empty (an empty plain value has
    /// no token).
    fn write_after_key(
        &mut self,
        field: Field,
        with: &str,
        edit: Edit,
    ) -> Result<(), RewriteError> {
        let key = self.token(field.key)?;
        let b = self.src.text.as_bytes();
        let mut i = key.whole.end;
        while i < b.len() && matches!(b[i], b' ' | b'\t') {
            i += 1;
        }
        if b.get(i) != Some(&b':') {
            return Err(self.src.ambiguous(key.whole.start, Ambiguity::Unlocated));
        }
        self.planned.push(Planned {
            start: i + 1,
            end: i + 1,
            with: format!(" {with}"),
            edit,
        });
        Ok(())
    }

    /// Sets `global.security.allowInsecureImages` to `true` where the document has the key and
    /// Helm reads it as false: charts that check their own images (Bitnami's) refuse to render
    /// the mirror's names otherwise. The images are the same: same repositories, tags and
    /// digests.
    fn allow_mirror_images(&mut self, root: NodeId) -> Result<(), RewriteError> {
        const PATH: &str = "global.security.allowInsecureImages";
        let tree = self.tree;
        let Some(security) = tree
            .get(root, "global")
            .and_then(|g| tree.get(g, "security"))
        else {
            return Ok(());
        };
        let (Some(i), Kind::Map { entries }) = (
            tree.entry(security, "allowInsecureImages"),
            &tree.nodes[security].kind,
        ) else {
            return Ok(());
        };
        let (key, value) = entries[i];
        let node = &tree.nodes[value];
        let refuse = || {
            self.src
                .ambiguous(node.start, Ambiguity::InsecureImagesFlag)
        };
        let Some((v, style)) = tree.scalar(value) else {
            return Err(refuse());
        };
        if !helm_falsy(v, style) {
            return Ok(());
        }
        if node.anchored {
            return Err(refuse());
        }
        let mut edit = self.edit(node.start, PATH, v, "true");
        edit.note = Some(format!(
            "set to true: the chart refuses to render images other than those it was released with \
             unless {PATH} is true; the mirror serves the same images (same repositories, tags and \
             digests{}) under its own name",
            if self.opts.pin_digests {
                ", pinned in these values"
            } else {
                "; `--pin-digests --bundle` writes them into the values"
            }
        ));
        if v.is_empty() && style == ScalarStyle::Plain {
            return self.write_after_key(Field { key, value }, "true", edit);
        }
        let token = self.token(value).map_err(|_| refuse())?;
        edit.line = self.src.lines.line(token.whole.start);
        self.planned.push(Planned {
            start: token.whole.start,
            end: token.whole.end,
            with: "true".to_string(),
            edit,
        });
        Ok(())
    }

    /// Inserts `digest: …` on a new line after the `tag` entry (or the `repository` entry).
    fn insert_digest(&mut self, site: &MapSite, digest: &str) -> Result<(), RewriteError> {
        let text = self.src.text;
        let b = text.as_bytes();
        let after = site.tag.unwrap_or(site.repository);
        if self.tree.nodes[site.map].in_flow {
            return Err(self
                .src
                .ambiguous(self.tree.nodes[after.key].start, Ambiguity::FlowInsert));
        }
        let key = self.token(after.key)?;
        let value = self.token(after.value)?;
        let line_start = text[..key.whole.start].rfind('\n').map_or(0, |i| i + 1);
        let lead = &text[line_start..key.whole.start];
        // The key is either indented or follows a sequence dash: `  - repository: x`.
        if !lead.bytes().all(|c| matches!(c, b' ' | b'-')) {
            return Err(self.src.ambiguous(key.whole.start, Ambiguity::Indentation));
        }
        let indent = " ".repeat(lead.len());
        let (quoted, _) = encode(digest, value.style, false);
        let entry = match value.style {
            ScalarStyle::SingleQuoted => format!("digest: '{quoted}'"),
            ScalarStyle::DoubleQuoted => format!("digest: \"{quoted}\""),
            _ => format!("digest: {quoted}"),
        };
        let (at, with) = match text[value.whole.end..].find('\n') {
            Some(i) => {
                let nl = value.whole.end + i;
                let eol = if nl > 0 && b[nl - 1] == b'\r' {
                    "\r\n"
                } else {
                    "\n"
                };
                (nl + 1, format!("{indent}{entry}{eol}"))
            }
            None => {
                let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
                (text.len(), format!("{eol}{indent}{entry}"))
            }
        };
        let (line, _) = self.src.lines.position(text, value.whole.start);
        self.planned.push(Planned {
            start: at,
            end: at,
            with,
            edit: Edit {
                line: line + 1,
                column: indent.len() + 1,
                path: site.path_of("digest"),
                before: String::new(),
                after: entry,
                note: None,
            },
        });
        Ok(())
    }

    fn apply(mut self) -> Rewritten {
        self.planned.sort_by_key(|p| (p.start, p.end));
        let text = self.src.text;
        let extra: usize = self.planned.iter().map(|p| p.with.len()).sum();
        let mut out = String::with_capacity(text.len() + extra);
        let mut pos = 0;
        let mut edits = Vec::with_capacity(self.planned.len());
        for p in self.planned {
            // Sites are distinct scalars and insertions go between lines, so edits never overlap;
            // a bug that made them overlap must not produce a corrupt file.
            assert!(p.start >= pos, "overlapping edits at byte {}", p.start);
            out.push_str(&text[pos..p.start]);
            out.push_str(&p.with);
            pos = p.end;
            edits.push(p.edit);
        }
        out.push_str(&text[pos..]);
        Rewritten {
            text: out,
            edits,
            unmoved: self.unmoved,
        }
    }
}

fn path_of(map: &str, field: &str) -> String {
    if map.is_empty() {
        field.to_string()
    } else {
        format!("{map}.{field}")
    }
}

impl MapSite {
    fn path_of(&self, field: &str) -> String {
        path_of(&self.path, field)
    }
}

impl NullMapSite {
    fn path_of(&self, field: &str) -> String {
        path_of(&self.path, field)
    }
}
