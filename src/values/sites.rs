//! Finds where a values file names images and registries: the sites that rewriting edits and
//! the coverage check reads.

use granit_parser::ScalarStyle;

use super::tree::{Kind, NodeId, Tree};
use super::yaml::{plain_is_not_string, scalar_token, TokenProblem};
use super::Ambiguity;
use crate::oci::reference::{parse_reference, ImageRef, RegistryPrefix, PLACEHOLDER};

/// A scalar holding a whole image reference.
pub(crate) struct RefSite {
    pub node: NodeId,
    pub image: ImageRef,
    pub path: String,
}

/// A scalar holding a registry (`host[:port][/path]`) or the `REGISTRY` placeholder.
pub(crate) struct RegistrySite {
    pub node: NodeId,
    pub prefix: RegistryPrefix,
    pub path: String,
}

/// A key and its scalar value inside an image map.
#[derive(Clone, Copy)]
pub(crate) struct Field {
    pub key: NodeId,
    pub value: NodeId,
}

/// An image map: `{registry, repository, tag, digest}` (Bitnami, Traefik) or
/// `{registry, image, repository, tag, digest}` (ingress-nginx), whose template joins
/// `REGISTRY/NAME` and uses a non-empty `repository` instead of both.
pub(crate) struct MapSite {
    pub map: NodeId,
    pub registry: Option<Field>,
    /// The name joined with `registry`: the `repository` field, or the `image` field of a
    /// `{registry, image}` map.
    pub repository: Field,
    /// `repository` or `image`: the key of [`MapSite::repository`].
    pub name_key: &'static str,
    pub tag: Option<Field>,
    pub digest: Option<Field>,
    /// The name parsed as a reference (a registry host in it is honoured only when the map has
    /// no `registry`).
    pub repo: ImageRef,
    /// In a `{registry, image}` map, a non-empty `repository` holding the whole reference, which
    /// the chart uses instead of `registry/image`.
    pub full: Option<(Field, ImageRef)>,
    /// The document-level `global.imageRegistry` when it is non-empty and replaces this map's
    /// registry (maps with `registry` and `repository`, as Bitnami's helper joins them).
    pub global: Option<RegistryPrefix>,
    pub path: String,
}

/// An image map whose `registry` and name (`repository`, or `image`) are both null or empty:
/// the image is the one the chart's templates choose by default (Traefik's `image:` map).
pub(crate) struct NullMapSite {
    pub registry: Field,
    /// The `repository` field, or the `image` field of a `{registry, image}` map.
    pub name: Field,
    /// `repository` or `image`: the key of [`NullMapSite::name`].
    pub name_key: &'static str,
    pub digest: Option<Field>,
    /// The keys from the document root to the map; `None` when the map is inside a sequence
    /// (a values overlay cannot address it).
    pub keys: Option<Vec<String>>,
    pub path: String,
}

/// Everything found in one document.
#[derive(Default)]
pub(crate) struct Sites {
    pub refs: Vec<RefSite>,
    pub registries: Vec<RegistrySite>,
    pub maps: Vec<MapSite>,
    pub null_maps: Vec<NullMapSite>,
}

/// A refusal at a byte offset.
pub(crate) struct Refusal {
    pub offset: usize,
    pub reason: Ambiguity,
}

#[derive(Clone, Copy, Default)]
struct Ctx {
    /// The node is where an image is expected (value of an `…image` key, item of `…images`).
    image: bool,
    /// The node is a registry value (`imageRegistry`, `global.registry`).
    registry: bool,
    /// The node's children are images (value of an `…images` key).
    images: bool,
    /// The node is the top-level `global` map.
    global: bool,
    /// The node is `global.image`, whose `registry` is the chart-wide registry
    /// (ingress-nginx's `global.image.registry`).
    global_image: bool,
    /// The node is the value of a `repository`, `tag` or `digest` key, never a registry.
    image_part: bool,
}

/// What a registry or image value was recognised as.
enum Found {
    Registry(RegistryPrefix),
    Image(ImageRef),
}

enum Seg<'t> {
    Key(&'t str),
    Index(usize),
}

struct Walker<'t, 'a> {
    text: &'t str,
    tree: &'t Tree<'a>,
    path: Vec<Seg<'t>>,
    sites: Sites,
    /// `global.imageRegistry` of the document being walked.
    global: Option<RegistryPrefix>,
}

/// Walks every document of the tree.
pub(crate) fn find(text: &str, tree: &Tree<'_>) -> Result<Sites, Refusal> {
    let mut w = Walker {
        text,
        tree,
        path: Vec::new(),
        sites: Sites::default(),
        global: None,
    };
    for &root in &tree.roots {
        w.global = global_registry(tree, root);
        w.walk(root, Ctx::default(), true)?;
    }
    Ok(w.sites)
}

/// `global.imageRegistry` of a document, when it is a non-empty registry value.
fn global_registry(tree: &Tree<'_>, root: NodeId) -> Option<RegistryPrefix> {
    let global = tree.get(root, "global")?;
    let Kind::Map { entries } = &tree.nodes[global].kind else {
        return None;
    };
    let value = entries
        .iter()
        .rev()
        .find(|(k, _)| {
            tree.scalar(*k)
                .is_some_and(|(v, _)| v.eq_ignore_ascii_case("imageRegistry"))
        })?
        .1;
    let (v, _) = tree.scalar(value)?;
    RegistryPrefix::parse(v)
}

/// A plain scalar YAML reads as null.
pub(crate) fn plain_null(value: &str, style: ScalarStyle) -> bool {
    style == ScalarStyle::Plain && matches!(value, "~" | "null" | "Null" | "NULL")
}

fn ends_with_ci(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len()
        && s.is_char_boundary(s.len() - suffix.len())
        && s[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}

impl<'t> Walker<'t, '_> {
    fn render_path(&self) -> String {
        let mut out = String::new();
        for seg in &self.path {
            match seg {
                Seg::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
                Seg::Index(i) => {
                    out.push('[');
                    out.push_str(&i.to_string());
                    out.push(']');
                }
            }
        }
        out
    }

    /// The path of a scalar to edit; refused when it is a block scalar or carries an anchor.
    fn editable(&self, id: NodeId, block: bool) -> Result<String, Refusal> {
        if block {
            return self.refuse(id, Ambiguity::BlockScalar);
        }
        if self.tree.nodes[id].anchored {
            return self.refuse(id, Ambiguity::Anchor);
        }
        Ok(self.render_path())
    }

    fn refuse<T>(&self, id: NodeId, reason: Ambiguity) -> Result<T, Refusal> {
        Err(Refusal {
            offset: self.tree.nodes[id].start,
            reason,
        })
    }

    fn walk(&mut self, id: NodeId, ctx: Ctx, root: bool) -> Result<(), Refusal> {
        let tree = self.tree;
        let node = &tree.nodes[id];
        match &node.kind {
            Kind::Alias => {
                if ctx.image || ctx.registry {
                    return self.refuse(id, Ambiguity::Alias);
                }
                Ok(())
            }
            Kind::Scalar { value, style } => self.scalar(id, value, *style, ctx),
            Kind::Seq { items } => {
                if node.anchored && (ctx.image || ctx.images) {
                    return self.refuse(id, Ambiguity::Anchor);
                }
                for (i, &item) in items.iter().enumerate() {
                    self.path.push(Seg::Index(i));
                    let child = Ctx {
                        image: ctx.images,
                        ..Ctx::default()
                    };
                    self.walk(item, child, false)?;
                    self.path.pop();
                }
                Ok(())
            }
            Kind::Map { entries } => {
                if node.anchored && (ctx.image || ctx.images) {
                    return self.refuse(id, Ambiguity::Anchor);
                }
                let handled = self.image_map(id, entries, ctx)?;
                let names_only = self.has_tag_field(entries);
                for &(k, v) in entries {
                    if handled.contains(&k) {
                        continue;
                    }
                    let key = tree.scalar(k).map(|(s, _)| s);
                    let mut child = Ctx {
                        image: ctx.images,
                        ..Ctx::default()
                    };
                    if let Some(key) = key {
                        if key == "<<" && ctx.image {
                            return self.refuse(v, Ambiguity::Merge);
                        }
                        // In a map with a `tag` or `digest`, `image: NAME` (no registry of its
                        // own) is the repository part that the chart's template joins to a
                        // registry given elsewhere: not a Docker Hub reference.
                        let name_part = names_only && key == "image" && self.bare_name(v);
                        child.image |= ends_with_ci(key, "image") && !name_part;
                        child.images = ends_with_ci(key, "images");
                        child.registry = key.eq_ignore_ascii_case("imageRegistry")
                            || ((ctx.global || ctx.global_image) && key == "registry");
                        child.global = root && key == "global";
                        child.global_image = ctx.global && key == "image";
                        child.image_part = matches!(key, "repository" | "tag" | "digest");
                    }
                    self.path.push(Seg::Key(key.unwrap_or("?")));
                    self.walk(v, child, false)?;
                    self.path.pop();
                }
                Ok(())
            }
        }
    }

    fn scalar(
        &mut self,
        id: NodeId,
        value: &str,
        style: ScalarStyle,
        ctx: Ctx,
    ) -> Result<(), Refusal> {
        let node = &self.tree.nodes[id];
        let block = matches!(style, ScalarStyle::Literal | ScalarStyle::Folded);
        let plain_non_string = style == ScalarStyle::Plain && plain_is_not_string(value);
        if value == PLACEHOLDER && !ctx.registry && !block && !ctx.image_part {
            let path = self.editable(id, false)?;
            self.sites.registries.push(RegistrySite {
                node: id,
                prefix: RegistryPrefix {
                    host: None,
                    path: String::new(),
                },
                path,
            });
            return Ok(());
        }
        if ctx.registry || ctx.image {
            if value.is_empty() || plain_non_string {
                return Ok(());
            }
            let found = if ctx.registry {
                RegistryPrefix::parse(value).map(Found::Registry)
            } else {
                parse_reference(value.trim_end_matches('\n'), true).map(Found::Image)
            };
            let Some(found) = found else {
                return self.folded(id, value);
            };
            let path = self.editable(id, block)?;
            match found {
                Found::Registry(prefix) => self.sites.registries.push(RegistrySite {
                    node: id,
                    prefix,
                    path,
                }),
                Found::Image(image) => self.sites.refs.push(RefSite {
                    node: id,
                    image,
                    path,
                }),
            }
            return Ok(());
        }
        if block {
            return Ok(());
        }
        // Elsewhere, only a reference that names its registry (or the placeholder) and carries a
        // tag or digest counts: `registry.example.com/team/app:1.0`.
        if let Some(image) = parse_reference(value, false) {
            if image.registry.is_some() && image.tag.is_none() && image.digest.is_none() {
                return Ok(());
            }
            if node.anchored {
                return self.refuse(id, Ambiguity::Anchor);
            }
            let path = self.render_path();
            self.sites.refs.push(RefSite {
                node: id,
                image,
                path,
            });
        }
        Ok(())
    }

    /// Whether a mapping has a scalar `tag` or `digest` entry, as an image map does.
    fn has_tag_field(&self, entries: &[(NodeId, NodeId)]) -> bool {
        entries.iter().any(|&(k, v)| {
            self.tree
                .scalar(k)
                .is_some_and(|(key, _)| key == "tag" || key == "digest")
                && matches!(self.tree.nodes[v].kind, Kind::Scalar { .. })
        })
    }

    /// Whether a node is a plain image name: a scalar reference with no registry host, tag or
    /// digest written (`ingress-nginx/controller`, `traefik`).
    fn bare_name(&self, id: NodeId) -> bool {
        self.tree.scalar(id).is_some_and(|(v, _)| {
            parse_reference(v, false).is_none()
                && parse_reference(v, true).is_some_and(|r| r.tag.is_none() && r.digest.is_none())
        })
    }

    /// Refuses a reference folded over several lines: YAML reads the line breaks as spaces, so
    /// the value is no reference, but it was clearly meant as one.
    fn folded(&self, id: NodeId, value: &str) -> Result<(), Refusal> {
        if value.contains(' ')
            && parse_reference(&value.replace(' ', ""), true).is_some()
            && matches!(
                scalar_token(self.text, &self.tree.nodes[id]),
                Err(TokenProblem::MultiLine)
            )
        {
            return self.refuse(id, Ambiguity::MultiLine);
        }
        Ok(())
    }

    /// Refuses an image map field that is an alias, carries an anchor or is a block scalar.
    fn plain_fields(&self, fields: [Option<Field>; 5]) -> Result<(), Refusal> {
        for f in fields.into_iter().flatten() {
            let n = &self.tree.nodes[f.value];
            match &n.kind {
                Kind::Alias => return self.refuse(f.value, Ambiguity::Alias),
                _ if n.anchored => return self.refuse(f.value, Ambiguity::Anchor),
                Kind::Scalar {
                    style: ScalarStyle::Literal | ScalarStyle::Folded,
                    ..
                } => return self.refuse(f.value, Ambiguity::BlockScalar),
                _ => {}
            }
        }
        Ok(())
    }

    /// Recognises an image map whose `registry` and name are both null or empty plain or quoted
    /// one-line scalars, with no anchor on the map or its fields; returns the keys it consumed.
    fn null_map(
        &mut self,
        id: NodeId,
        registry: Option<Field>,
        field: &dyn Fn(&str) -> Option<Field>,
        digest: Option<Field>,
    ) -> Result<Vec<NodeId>, Refusal> {
        let tree = self.tree;
        let empty = |f: Field| {
            !tree.nodes[f.value].anchored
                && tree.scalar(f.value).is_some_and(|(v, s)| {
                    (v.is_empty() || plain_null(v, s))
                        && !matches!(s, ScalarStyle::Literal | ScalarStyle::Folded)
                })
        };
        let (name, name_key) = match (field("image"), field("repository")) {
            (Some(image), _) => (image, "image"),
            (None, Some(repository)) => (repository, "repository"),
            (None, None) => return Ok(Vec::new()),
        };
        let Some(registry) = registry.filter(|&r| empty(r) && empty(name)) else {
            return Ok(Vec::new());
        };
        if tree.nodes[id].anchored || digest.is_some_and(|d| tree.nodes[d.value].anchored) {
            return Ok(Vec::new());
        }
        let keys = self
            .path
            .iter()
            .map(|seg| match seg {
                Seg::Key(k) => Some(k.to_string()),
                Seg::Index(_) => None,
            })
            .collect();
        self.sites.null_maps.push(NullMapSite {
            registry,
            name,
            name_key,
            digest,
            keys,
            path: self.render_path(),
        });
        Ok(vec![registry.key, name.key])
    }

    /// Recognises an image map; returns the keys it consumed.
    fn image_map(
        &mut self,
        id: NodeId,
        entries: &[(NodeId, NodeId)],
        ctx: Ctx,
    ) -> Result<Vec<NodeId>, Refusal> {
        let tree = self.tree;
        // The last entry with a key is the one Helm reads.
        let field = |name: &str| {
            entries
                .iter()
                .rev()
                .find(|(k, _)| tree.scalar(*k).is_some_and(|(v, _)| v == name))
                .map(|&(key, value)| Field { key, value })
        };
        let registry = field("registry");
        let tag = field("tag");
        let digest = field("digest");
        // `registry`, `tag` and `digest` hold scalars in an image map; with a nested collection
        // this is some other kind of mapping.
        if [registry, tag, digest].into_iter().flatten().any(|f| {
            matches!(
                tree.nodes[f.value].kind,
                Kind::Map { .. } | Kind::Seq { .. }
            )
        }) {
            return Ok(Vec::new());
        }
        let nonempty = |f: Option<Field>| {
            f.and_then(|f| tree.scalar(f.value))
                .is_some_and(|(v, s)| !v.is_empty() && !plain_null(v, s))
        };
        let registry_prefix = registry
            .and_then(|f| tree.scalar(f.value))
            .and_then(|(v, _)| RegistryPrefix::parse(v));
        // `{registry, image}`: the image field is a name without a registry, tag or digest of
        // its own, below a non-empty registry.
        let image = field("image").filter(|f| {
            nonempty(registry)
                && registry_prefix.is_some()
                && tree.scalar(f.value).is_some_and(|(v, _)| {
                    parse_reference(v, true).is_some_and(|r| r.tag.is_none() && r.digest.is_none())
                        && parse_reference(v, false).is_none()
                })
        });
        let (repository, name_key, full) = match image {
            Some(image) => {
                let full = field("repository");
                (image, "image", full)
            }
            None => {
                let Some(repository) = field("repository") else {
                    return self.null_map(id, registry, &field, digest);
                };
                (repository, "repository", None)
            }
        };
        if !(ctx.image || registry.is_some() || tag.is_some() || digest.is_some()) {
            return Ok(Vec::new());
        }
        let Some((repo_value, repo_style)) = tree.scalar(repository.value) else {
            if matches!(tree.nodes[repository.value].kind, Kind::Alias) {
                return self.refuse(repository.value, Ambiguity::Alias);
            }
            return Ok(Vec::new());
        };
        // `repository: null` is no image named `null`.
        let repo = (!plain_null(repo_value, repo_style))
            .then(|| parse_reference(repo_value, true))
            .flatten();
        let Some(repo) = repo else {
            return self.null_map(id, registry, &field, digest);
        };
        if matches!(repo_style, ScalarStyle::Literal | ScalarStyle::Folded) {
            return self.refuse(repository.value, Ambiguity::BlockScalar);
        }
        if tree.nodes[id].anchored {
            return self.refuse(id, Ambiguity::Anchor);
        }
        if let Some(&(merge, _)) = entries
            .iter()
            .find(|(k, _)| tree.scalar(*k).is_some_and(|(v, _)| v == "<<"))
        {
            return self.refuse(merge, Ambiguity::Merge);
        }
        self.plain_fields([Some(repository), registry, tag, digest, full])?;
        let full_ref = full.filter(|&f| nonempty(Some(f))).and_then(|f| {
            let (v, _) = tree.scalar(f.value)?;
            Some((f, parse_reference(v, true)?))
        });
        let path = self.render_path();
        self.sites.maps.push(MapSite {
            map: id,
            registry,
            repository,
            name_key,
            tag,
            digest,
            repo,
            full: full_ref,
            global: self
                .global
                .clone()
                .filter(|_| name_key == "repository" && registry.is_some()),
            path,
        });
        Ok([Some(repository), registry, tag, digest, full]
            .into_iter()
            .flatten()
            .map(|f| f.key)
            .collect())
    }
}
