//! Helm values for the egress audit: values files read into the values tree
//! ([`crate::values::tree`]), layered the way Helm merges them (`-f a.yaml -f b.yaml`), with the
//! file and line every node came from for evidence.

use std::borrow::Cow;
use std::fmt;
use std::path::Path;

use granit_parser::ScalarStyle;

use crate::values::tree::{skip_properties, Core, Kind, Lines, NodeId, Tree};

/// A YAML load error with its position (1-based line and column).
#[derive(Debug, Clone)]
pub struct LoadError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The parser's message.
    pub message: String,
}

/// Most nodes that aliases may expand to in one values file.
const ALIAS_BUDGET: usize = 100_000;

/// One parsed values file: its first document.
#[derive(Debug, Clone)]
pub struct Document {
    tree: Tree<'static>,
    /// The first document's root; `None` for a file with no document.
    root: Option<NodeId>,
    /// Block scalars (`|`, `>`) whose text starts on the line after the node's line.
    block: Vec<bool>,
}

/// Parse one values file. An empty file is an empty map. What Helm's YAML reader refuses is
/// an error.
pub fn load(text: &str) -> Result<Document, LoadError> {
    match load_noting_refusal(text)? {
        (doc, None) => Ok(doc),
        (_, Some(refused)) => Err(refused),
    }
}

/// [`load`], with what Helm's YAML reader refuses although YAML 1.2 allows it returned beside
/// the values it still reads.
pub fn load_noting_refusal(text: &str) -> Result<(Document, Option<LoadError>), LoadError> {
    let lines = Lines::new(text);
    let at = |offset: usize, message: String| {
        let (line, column) = lines.position(text, offset);
        LoadError {
            line,
            column,
            message,
        }
    };
    // The values tree reads what go-yaml reads (tabs leading flow lines included).
    let (tree, refused) = Tree::parse_noting_refusal(text).map_err(|e| at(e.offset, e.message))?;
    let tree = tree.into_owned();
    let refused = refused.map(|e| at(e.offset, e.message));
    let root = tree.roots.first().copied();
    if let Some(root) = root {
        let mut sizes = vec![None; tree.nodes.len()];
        if expanded(&tree, root, &mut sizes) > ALIAS_BUDGET {
            return Err(at(
                tree.nodes[root].start,
                "alias expansion exceeded the maximum node budget".into(),
            ));
        }
    }
    let block = tree
        .nodes
        .iter()
        .map(|n| {
            matches!(
                n.kind,
                Kind::Scalar {
                    style: ScalarStyle::Literal | ScalarStyle::Folded,
                    ..
                }
            ) && matches!(
                text.as_bytes().get(skip_properties(text, n.start)),
                Some(b'|' | b'>')
            )
        })
        .collect();
    Ok((Document { tree, root, block }, refused))
}

/// How many nodes `id` stands for once its aliases are expanded (saturating).
fn expanded(tree: &Tree<'_>, id: NodeId, sizes: &mut Vec<Option<usize>>) -> usize {
    if let Some(n) = sizes[id] {
        return n;
    }
    // An alias cannot name a node that contains it, so this recursion ends.
    sizes[id] = Some(ALIAS_BUDGET + 1);
    let n = match &tree.nodes[id].kind {
        Kind::Alias => tree.resolve(id).map_or(1, |t| expanded(tree, t, sizes)),
        Kind::Scalar { .. } => 1,
        Kind::Map { entries } => entries.iter().fold(1usize, |acc, &(k, v)| {
            acc.saturating_add(expanded(tree, k, sizes))
                .saturating_add(expanded(tree, v, sizes))
        }),
        Kind::Seq { items } => items.iter().fold(1usize, |acc, &v| {
            acc.saturating_add(expanded(tree, v, sizes))
        }),
    };
    sizes[id] = Some(n);
    n
}

/// The key as Helm sees it: a string.
fn key_text(tree: &Tree<'_>, id: NodeId) -> Cow<'static, str> {
    let Some(id) = tree.resolve(id) else {
        return "?".into();
    };
    let Some(core) = tree.core(id) else {
        return "?".into();
    };
    match core {
        Core::Str => tree
            .scalar(id)
            .map_or("?".into(), |(v, _)| v.to_string().into()),
        Core::Null => "null".into(),
        Core::Bool(b) => b.to_string().into(),
        Core::Int(i) => i.to_string().into(),
        Core::Float(f) => f.to_string().into(),
        Core::Invalid => "?".into(),
    }
}

/// Whether a node reads as null (an alias to nothing and an invalid tagged scalar included).
fn is_null(tree: &Tree<'_>, id: NodeId) -> bool {
    tree.resolve(id)
        .is_none_or(|id| matches!(tree.core(id), Some(Core::Null | Core::Invalid)))
}

/// Where a node of the merged values came from.
#[derive(Debug, Clone, Copy)]
struct Origin {
    /// Index into [`Values::files`]; `usize::MAX` for a node with no file.
    file: usize,
    /// See [`Document::block`].
    block: bool,
}

/// Merged values plus the files they came from.
///
/// The merged tree has no aliases: each is replaced by a copy of what it names. Its mapping keys
/// are the strings Helm sees (`80:` is the key `"80"`).
#[derive(Debug, Clone)]
pub struct Values {
    tree: Tree<'static>,
    origin: Vec<Origin>,
    root: NodeId,
    /// Source files, relative to the checked folder, indexed by [`Node::file`].
    pub files: Vec<String>,
}

impl Values {
    /// An empty map.
    pub fn empty() -> Values {
        let mut v = Values {
            tree: Tree::default(),
            origin: Vec::new(),
            root: 0,
            files: Vec::new(),
        };
        v.root = v.push(Kind::Map {
            entries: Vec::new(),
        });
        v
    }

    /// Adds a node with no file and no line.
    fn push(&mut self, kind: Kind<'static>) -> NodeId {
        self.tree.nodes.push(crate::values::tree::Node {
            kind,
            start: 0,
            line: 0,
            anchored: false,
            tag: None,
            in_flow: false,
        });
        self.origin.push(Origin {
            file: usize::MAX,
            block: false,
        });
        self.tree.nodes.len() - 1
    }

    /// Adds an empty plain scalar: null.
    fn null(&mut self) -> NodeId {
        self.push(Kind::Scalar {
            value: Cow::Borrowed(""),
            style: ScalarStyle::Plain,
        })
    }

    /// The root of the merged values.
    pub fn root(&self) -> Node<'_> {
        Node {
            values: self,
            id: self.root,
        }
    }

    /// Layer one more values file on top.
    pub fn layer(&mut self, rel: &str, doc: &Document) {
        let file = self.files.len();
        self.files.push(rel.to_string());
        if let Some(root) = doc.root {
            self.merge(self.root, &Source::Doc(doc), root, file);
        }
    }

    /// The values a subchart sees: its parent's `<name>:` section with the parent's `global:`,
    /// on top of the subchart's own values; the parent's files are listed after this one's.
    pub fn layer_parent(&mut self, parent: &Values, name: &str) {
        let base = self.files.len();
        self.files.extend(parent.files.iter().cloned());
        let src = Source::Merged(parent, base);
        let mut entries = match parent.root().get(name) {
            Some(section) if !section.is_map() => {
                self.merge(self.root, &src, section.id, 0);
                return;
            }
            Some(section) => parent.entries(section.id),
            None => Vec::new(),
        };
        if let Some(global) = parent.root().get("global") {
            entries.retain(|(k, _)| k != "global");
            entries.push(("global".into(), global.id));
        }
        self.merge_entries(self.root, &src, &entries, 0);
    }

    /// The `(key, value)` pairs of a merged map.
    fn entries(&self, id: NodeId) -> Vec<(Cow<'static, str>, NodeId)> {
        match &self.tree.nodes[id].kind {
            Kind::Map { entries } => entries
                .iter()
                .map(|&(k, v)| (key_text(&self.tree, k), v))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Helm's merge of `from` (in `src`) onto `at`: maps merge key by key, recursively; any other
    /// value replaces; a `null` deletes the key.
    fn merge(&mut self, at: NodeId, src: &Source<'_>, from: NodeId, file: usize) {
        let tree = src.tree();
        let Some(from) = tree.resolve(from) else {
            let new = self.null();
            self.replace(at, new);
            return;
        };
        let both_maps = matches!(self.tree.nodes[at].kind, Kind::Map { .. })
            && matches!(tree.nodes[from].kind, Kind::Map { .. });
        if !both_maps {
            let new = self.copy(src, from, file);
            self.replace(at, new);
            return;
        }
        let Kind::Map { entries } = &tree.nodes[from].kind else {
            return;
        };
        // go-yaml keeps the last of repeated keys.
        let keyed: Vec<(Cow<'static, str>, NodeId)> = entries
            .iter()
            .map(|&(k, v)| (key_text(tree, k), v))
            .collect();
        let last: Vec<(Cow<'static, str>, NodeId)> = keyed
            .iter()
            .enumerate()
            .filter(|(i, (k, _))| !keyed[i + 1..].iter().any(|(later, _)| later == k))
            .map(|(_, e)| e.clone())
            .collect();
        self.merge_entries(at, src, &last, file);
    }

    /// Merges `(key, value)` pairs of `src` into the map `at`.
    fn merge_entries(
        &mut self,
        at: NodeId,
        src: &Source<'_>,
        entries: &[(Cow<'static, str>, NodeId)],
        file: usize,
    ) {
        let tree = src.tree();
        for (key, v) in entries {
            if !matches!(self.tree.nodes[at].kind, Kind::Map { .. }) {
                return;
            }
            match (self.tree.entry(at, key), is_null(tree, *v)) {
                (Some(i), true) => {
                    if let Kind::Map { entries } = &mut self.tree.nodes[at].kind {
                        entries.remove(i);
                    }
                }
                (Some(i), false) => {
                    let existing = match &self.tree.nodes[at].kind {
                        Kind::Map { entries } => entries[i].1,
                        _ => return,
                    };
                    self.merge(existing, src, *v, file);
                }
                (None, true) => {}
                (None, false) => {
                    let k = self.push(Kind::Scalar {
                        value: key.clone(),
                        style: ScalarStyle::DoubleQuoted,
                    });
                    let value = self.copy(src, *v, file);
                    if let Kind::Map { entries } = &mut self.tree.nodes[at].kind {
                        entries.push((k, value));
                    }
                }
            }
        }
    }

    /// Puts the node `new` in the place of `at` (whose old content becomes unreachable).
    fn replace(&mut self, at: NodeId, new: NodeId) {
        self.tree.nodes.swap(at, new);
        self.origin.swap(at, new);
    }

    /// Copies a subtree of `src`, aliases expanded, as coming from `file`.
    fn copy(&mut self, src: &Source<'_>, id: NodeId, file: usize) -> NodeId {
        let tree = src.tree();
        let Some(target) = tree.resolve(id) else {
            let new = self.null();
            self.place(new, src, id, file);
            return new;
        };
        let kind = match &tree.nodes[target].kind {
            Kind::Scalar { value, style } => Kind::Scalar {
                value: value.clone(),
                style: *style,
            },
            Kind::Map { entries } => {
                let mut out = Vec::with_capacity(entries.len());
                for &(k, v) in entries {
                    let key = key_text(tree, k);
                    let kid = self.push(Kind::Scalar {
                        value: key.clone(),
                        style: ScalarStyle::DoubleQuoted,
                    });
                    self.place(kid, src, k, file);
                    let vid = self.copy(src, v, file);
                    // go-yaml keeps the last of repeated keys.
                    match out
                        .iter()
                        .position(|&(ok, _)| self.tree.scalar(ok).is_some_and(|(s, _)| s == key))
                    {
                        Some(i) => out[i] = (kid, vid),
                        None => out.push((kid, vid)),
                    }
                }
                Kind::Map { entries: out }
            }
            Kind::Seq { items } => Kind::Seq {
                items: items.iter().map(|&v| self.copy(src, v, file)).collect(),
            },
            Kind::Alias => Kind::Scalar {
                value: Cow::Borrowed(""),
                style: ScalarStyle::Plain,
            },
        };
        let new = self.push(kind);
        self.tree.nodes[new].tag = tree.nodes[target].tag.clone();
        self.place(new, src, target, file);
        if id != target {
            // An alias reads as the node it names, found where the alias is.
            self.tree.nodes[new].start = tree.nodes[id].start;
            self.tree.nodes[new].line = tree.nodes[id].line;
        }
        new
    }

    /// Gives node `new` the position and origin of node `id` of `src`.
    fn place(&mut self, new: NodeId, src: &Source<'_>, id: NodeId, file: usize) {
        let from = &src.tree().nodes[id];
        self.tree.nodes[new].start = from.start;
        self.tree.nodes[new].line = from.line;
        self.origin[new] = src.origin(id, file);
    }
}

/// Where nodes are copied from: a parsed file, or merged values whose files are listed from
/// `base` on.
enum Source<'s> {
    Doc(&'s Document),
    Merged(&'s Values, usize),
}

impl Source<'_> {
    fn tree(&self) -> &Tree<'static> {
        match self {
            Source::Doc(d) => &d.tree,
            Source::Merged(v, _) => &v.tree,
        }
    }

    fn origin(&self, id: NodeId, file: usize) -> Origin {
        match self {
            Source::Doc(d) => Origin {
                file,
                block: d.block[id],
            },
            Source::Merged(v, base) => {
                let o = v.origin[id];
                Origin {
                    file: if o.file == usize::MAX {
                        o.file
                    } else {
                        o.file + base
                    },
                    block: o.block,
                }
            }
        }
    }
}

/// A node of merged [`Values`].
#[derive(Clone, Copy)]
pub struct Node<'v> {
    values: &'v Values,
    id: NodeId,
}

impl fmt::Debug for Node<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Node({}:{})", self.file(), self.line())
    }
}

/// What a values node holds, as Helm reads it.
#[derive(Debug, Clone)]
pub enum Value<'v> {
    /// A mapping, in file order.
    Map(Vec<(Cow<'v, str>, Node<'v>)>),
    /// A sequence.
    Seq(Vec<Node<'v>>),
    /// A string (also numbers, as Helm prints them).
    Str(Cow<'v, str>),
    /// A boolean.
    Bool(bool),
    /// `null` or `~` or nothing.
    Null,
}

impl<'v> Node<'v> {
    fn at(&self, id: NodeId) -> Node<'v> {
        Node {
            values: self.values,
            id,
        }
    }

    fn tree(&self) -> &'v Tree<'static> {
        &self.values.tree
    }

    /// The content.
    pub fn value(&self) -> Value<'v> {
        let tree = self.tree();
        match &tree.nodes[self.id].kind {
            Kind::Map { entries } => Value::Map(
                entries
                    .iter()
                    .map(|&(k, v)| {
                        let key = tree.scalar(k).map_or("?", |(s, _)| s);
                        (Cow::Borrowed(key), self.at(v))
                    })
                    .collect(),
            ),
            Kind::Seq { items } => Value::Seq(items.iter().map(|&i| self.at(i)).collect()),
            Kind::Scalar { value, .. } => match tree.core(self.id) {
                Some(Core::Str) => Value::Str(Cow::Borrowed(value)),
                Some(Core::Bool(b)) => Value::Bool(b),
                Some(Core::Int(i)) => Value::Str(i.to_string().into()),
                Some(Core::Float(f)) => Value::Str(f.to_string().into()),
                _ => Value::Null,
            },
            Kind::Alias => Value::Null,
        }
    }

    /// Index into [`Values::files`] (`usize::MAX` for a node with no file).
    pub fn file(&self) -> usize {
        self.values.origin[self.id].file
    }

    /// 1-based line of the node.
    pub fn line(&self) -> usize {
        self.tree().nodes[self.id].line
    }

    /// True for a block scalar (`|` or `>`) whose text starts on the next line.
    pub fn block(&self) -> bool {
        self.values.origin[self.id].block
    }

    /// Whether the node is a mapping.
    pub fn is_map(&self) -> bool {
        matches!(self.tree().nodes[self.id].kind, Kind::Map { .. })
    }

    /// Whether the node is a string, boolean or null (not a collection).
    pub fn is_scalar(&self) -> bool {
        matches!(self.tree().nodes[self.id].kind, Kind::Scalar { .. })
    }

    /// Whether the node is a mapping or null (so a missing key reads as nil).
    pub fn is_map_or_null(&self) -> bool {
        self.is_map() || matches!(self.value(), Value::Null)
    }

    /// Look up a key of a mapping.
    pub fn get(&self, key: &str) -> Option<Node<'v>> {
        self.tree().get(self.id, key).map(|v| self.at(v))
    }

    /// Item `i` of a sequence.
    pub fn item(&self, i: usize) -> Option<Node<'v>> {
        self.tree().item(self.id, i).map(|v| self.at(v))
    }

    /// Whether the node is a sequence.
    pub fn is_seq(&self) -> bool {
        matches!(self.tree().nodes[self.id].kind, Kind::Seq { .. })
    }

    /// Helm's truthiness: empty strings, `false`, null, empty collections are false.
    pub fn truthy(&self) -> bool {
        match self.value() {
            Value::Map(m) => !m.is_empty(),
            Value::Seq(s) => !s.is_empty(),
            Value::Str(s) => !s.is_empty(),
            Value::Bool(b) => b,
            Value::Null => false,
        }
    }

    /// The scalar as text, if it is one (null renders as empty, like Helm).
    pub fn as_text(&self) -> Option<String> {
        match self.value() {
            Value::Str(s) => Some(s.into_owned()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Null => Some(String::new()),
            _ => None,
        }
    }

    /// Serialise as block YAML (what `toYaml` gives), for scanning only.
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        emit(*self, 0, &mut out);
        out.trim_end().to_string()
    }
}

fn emit(node: Node<'_>, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match node.value() {
        Value::Map(m) => {
            for (k, v) in m {
                match v.value() {
                    Value::Map(x) if !x.is_empty() => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        emit(v, indent + 2, out);
                    }
                    Value::Seq(x) if !x.is_empty() => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        emit(v, indent, out);
                    }
                    _ => out.push_str(&format!("{pad}{k}: {}\n", scalar_text(v))),
                }
            }
        }
        Value::Seq(s) => {
            for v in s {
                if v.is_scalar() {
                    out.push_str(&format!("{pad}- {}\n", scalar_text(v)));
                } else {
                    out.push_str(&format!("{pad}-\n"));
                    emit(v, indent + 2, out);
                }
            }
        }
        _ => out.push_str(&format!("{pad}{}\n", scalar_text(node))),
    }
}

fn scalar_text(n: Node<'_>) -> String {
    match n.value() {
        Value::Str(s) => s.replace('\n', " "),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".into(),
        Value::Map(_) => "{}".into(),
        Value::Seq(_) => "[]".into(),
    }
}

/// Does this path look like a values file (`values.yaml`, `values-prod.yml`, `x.values.yaml`)?
pub fn is_values_file(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    (name.ends_with(".yaml") || name.ends_with(".yml"))
        && (name.starts_with("values") || name.contains(".values.") || name.contains("-values."))
}
