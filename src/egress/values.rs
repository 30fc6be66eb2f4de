//! Helm values: a YAML tree that remembers, for every node, the file and line it came from,
//! and the merge Helm applies when values files are layered (`-f a.yaml -f b.yaml`).

use std::path::Path;

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

/// A values node and where it was defined.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The content.
    pub value: Value,
    /// Index into the list of source files of the [`Values`] it belongs to.
    pub file: usize,
    /// 1-based line of the node.
    pub line: usize,
    /// True for a block scalar (`|` or `>`): its text starts on the next line.
    pub block: bool,
}

/// The content of a values node.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A mapping, in file order.
    Map(Vec<(String, Node)>),
    /// A sequence.
    Seq(Vec<Node>),
    /// A string (also numbers and booleans, as written).
    Str(String),
    /// A boolean.
    Bool(bool),
    /// `null` or `~` or nothing.
    Null,
}

impl Node {
    /// A node with no known origin.
    pub fn synthetic(value: Value) -> Node {
        Node {
            value,
            file: usize::MAX,
            line: 0,
            block: false,
        }
    }

    /// Look up a key of a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Helm's truthiness: empty strings, `false`, null, empty collections are false.
    pub fn truthy(&self) -> bool {
        match &self.value {
            Value::Map(m) => !m.is_empty(),
            Value::Seq(s) => !s.is_empty(),
            Value::Str(s) => !s.is_empty(),
            Value::Bool(b) => *b,
            Value::Null => false,
        }
    }

    /// The scalar as text, if it is one (null renders as empty, like Helm).
    pub fn as_text(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Null => Some(String::new()),
            _ => None,
        }
    }

    /// Serialise as block YAML (what `toYaml` gives), for scanning only.
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        emit(self, 0, &mut out);
        out.trim_end().to_string()
    }
}

fn emit(node: &Node, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match &node.value {
        Value::Map(m) => {
            for (k, v) in m {
                match &v.value {
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
                match &v.value {
                    Value::Map(_) | Value::Seq(_) => {
                        out.push_str(&format!("{pad}-\n"));
                        emit(v, indent + 2, out);
                    }
                    _ => out.push_str(&format!("{pad}- {}\n", scalar_text(v))),
                }
            }
        }
        _ => out.push_str(&format!("{pad}{}\n", scalar_text(node))),
    }
}

fn scalar_text(n: &Node) -> String {
    match &n.value {
        Value::Str(s) => s.replace('\n', " "),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".into(),
        Value::Map(_) => "{}".into(),
        Value::Seq(_) => "[]".into(),
    }
}

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

/// Parse one values file into a node tree; an empty file is an empty map.
pub fn load(text: &str, file: usize) -> Result<Node, LoadError> {
    let docs = MarkedYaml::load_from_str(text).map_err(|e| LoadError {
        line: e.marker().line(),
        column: e.marker().col() + 1,
        message: e.info().to_string(),
    })?;
    let lines: Vec<&str> = text.lines().collect();
    Ok(match docs.first() {
        Some(doc) => convert(doc, file, &lines),
        None => Node {
            value: Value::Map(Vec::new()),
            file,
            line: 1,
            block: false,
        },
    })
}

fn convert(y: &MarkedYaml<'_>, file: usize, lines: &[&str]) -> Node {
    let line = y.span.start.line();
    let value = match &y.data {
        YamlData::Mapping(m) => Value::Map(
            m.iter()
                .map(|(k, v)| (key_text(k), convert(v, file, lines)))
                .collect(),
        ),
        YamlData::Sequence(s) => Value::Seq(s.iter().map(|v| convert(v, file, lines)).collect()),
        YamlData::Value(s) => scalar(s),
        YamlData::Representation(s, _, _) => Value::Str(s.to_string()),
        YamlData::Tagged(_, inner) => return convert(inner, file, lines),
        _ => Value::Null,
    };
    // A block scalar's indicator (`|`, `>`) sits on the node's first line.
    let block = matches!(value, Value::Str(ref s) if s.contains('\n'))
        && lines.get(line.wrapping_sub(1)).is_some_and(|l| {
            let t = l.trim_end();
            let t = t.split(" #").next().unwrap_or(t).trim_end();
            t.ends_with(['|', '>', '-', '+'])
        });
    Node {
        value,
        file,
        line,
        block,
    }
}

fn scalar(s: &Scalar<'_>) -> Value {
    match s {
        Scalar::Null => Value::Null,
        Scalar::Boolean(b) => Value::Bool(*b),
        Scalar::Integer(i) => Value::Str(i.to_string()),
        Scalar::FloatingPoint(f) => Value::Str(f.to_string()),
        Scalar::String(s) => Value::Str(s.to_string()),
    }
}

fn key_text(k: &MarkedYaml<'_>) -> String {
    match &k.data {
        YamlData::Value(s) => match scalar(s) {
            Value::Str(s) => s,
            Value::Bool(b) => b.to_string(),
            _ => "null".into(),
        },
        YamlData::Representation(s, _, _) => s.to_string(),
        _ => "?".into(),
    }
}

/// Layer `overlay` onto `base` the way Helm merges values files: maps merge key by key,
/// recursively; any other value replaces; a `null` in the overlay deletes the key.
pub fn merge(base: &mut Node, overlay: Node) {
    match (&mut base.value, overlay.value) {
        (Value::Map(b), Value::Map(o)) => {
            for (k, v) in o {
                let pos = b.iter().position(|(bk, _)| *bk == k);
                match (pos, &v.value) {
                    (Some(i), Value::Null) => {
                        b.remove(i);
                    }
                    (Some(i), _) => merge(&mut b[i].1, v),
                    (None, Value::Null) => {}
                    (None, _) => b.push((k, v)),
                }
            }
        }
        (_, value) => {
            *base = Node {
                value,
                file: overlay.file,
                line: overlay.line,
                block: overlay.block,
            }
        }
    }
}

/// Merged values plus the files they came from.
#[derive(Debug, Clone)]
pub struct Values {
    /// The merged tree.
    pub root: Node,
    /// Source files, relative to the checked folder, indexed by [`Node::file`].
    pub files: Vec<String>,
}

impl Values {
    /// An empty tree.
    pub fn empty() -> Values {
        Values {
            root: Node::synthetic(Value::Map(Vec::new())),
            files: Vec::new(),
        }
    }

    /// Layer one more parsed file on top.
    pub fn layer(&mut self, rel: &str, node_of: impl FnOnce(usize) -> Node) {
        let idx = self.files.len();
        self.files.push(rel.to_string());
        let node = node_of(idx);
        merge(&mut self.root, node);
    }

    /// Look a dotted path up (`global.permit.apiUrl`).
    pub fn lookup(&self, path: &[&str]) -> Option<&Node> {
        let mut n = &self.root;
        for k in path {
            n = n.get(k)?;
        }
        Some(n)
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
