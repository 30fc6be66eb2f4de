//! The YAML document model of values files, shared by values rewriting and the egress audit.
//!
//! A [`Tree`] is built from `granit-parser` events (the parser serde-saphyr reads `ferry.yaml`
//! and allow-lists with). Every node keeps where it starts (byte offset and 1-based line, its
//! anchor and tag included), its scalar style, tag and anchor, and whether it sits inside a
//! flow collection; mappings keep their keys in document order and aliases stay aliases (with
//! the node their anchor names in [`Tree::aliases`]). Rewriting edits the text at those
//! offsets; the egress audit reads the values through [`Tree::resolve`] and [`core_scalar`].
//!
//! Helm reads values with go-yaml, which is laxer than YAML 1.2 about indentation inside flow
//! collections; charts rely on it, e.g. a flow mapping whose closing brace sits at the
//! indentation of its parent (`extraEnv: {` … `}` on a line of its own). [`Tree::parse`] reads
//! with the parser's default indentation rules, which accept that; [`Tree::parse_strict`]
//! applies the specification's.

use std::borrow::Cow;
use std::collections::HashMap;

use granit_parser::{Event, Parser, ScalarStyle, StructureStyle, Tag, TokenType};

/// Index of a node in [`Tree::nodes`].
pub type NodeId = usize;

/// What a node holds.
#[derive(Clone, Debug)]
pub enum Kind<'a> {
    /// A scalar with its parsed value and its style.
    Scalar {
        /// The value, escapes and folding applied.
        value: Cow<'a, str>,
        /// How it is written.
        style: ScalarStyle,
    },
    /// A mapping, as `(key, value)` pairs in document order.
    Map {
        /// The entries.
        entries: Vec<(NodeId, NodeId)>,
    },
    /// A sequence.
    Seq {
        /// The items.
        items: Vec<NodeId>,
    },
    /// An alias (`*name`); [`Tree::aliases`] names its target.
    Alias,
}

/// One node of the tree.
#[derive(Clone, Debug)]
pub struct Node<'a> {
    /// The content.
    pub kind: Kind<'a>,
    /// Byte offset where the node starts, its anchor and tag included.
    pub start: usize,
    /// 1-based line of [`Node::start`].
    pub line: usize,
    /// Whether the node carries an anchor (`&name`).
    pub anchored: bool,
    /// The node's tag (`!!str`, `!custom`), if it has one.
    pub tag: Option<Cow<'a, Tag>>,
    /// Whether the node is inside a flow collection (or is one).
    pub in_flow: bool,
}

/// Every document of a YAML stream.
#[derive(Clone, Debug, Default)]
pub struct Tree<'a> {
    /// All nodes; children come after their parents.
    pub nodes: Vec<Node<'a>>,
    /// The root node of each document.
    pub roots: Vec<NodeId>,
    /// For each alias node, the node its anchor names (absent when the alias points into a
    /// collection that was still open, which has no value yet).
    pub aliases: HashMap<NodeId, NodeId>,
}

/// A parse error at a byte offset.
#[derive(Clone, Debug)]
pub struct ParseFailure {
    /// Byte offset in the text.
    pub offset: usize,
    /// The parser's message.
    pub message: String,
}

/// A failed parse, and whether it failed on a tab leading a line inside a flow collection.
struct Attempt {
    failure: ParseFailure,
    flow_tab: bool,
}

/// Turns the tabs of the white space that leads the line of `offset` (up to `offset`) into
/// spaces; `false` when there are none.
fn space_leading_tabs(text: &mut String, offset: usize) -> bool {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let lead = &text[line_start..offset];
    if !lead.contains('\t') || !lead.bytes().all(|b| matches!(b, b' ' | b'\t')) {
        return false;
    }
    let spaces = " ".repeat(lead.len());
    text.replace_range(line_start..offset, &spaces);
    true
}

/// What Helm's YAML reader (go-yaml) refuses in text that YAML 1.2 allows: a directive
/// (`%YAML 1.1`, `%TAG`; Helm cuts a values file into documents at `---` lines and reads each
/// without its directives), and a tab after the `-` of a block sequence entry (go-yaml takes
/// a tab there for the start of a token). The first one found, located.
fn helm_refuses(text: &str) -> Option<ParseFailure> {
    // Neither can be there without a line that starts with `%` or a tab somewhere.
    if !(text.starts_with('%') || text.contains("\n%") || text.contains('\t')) {
        return None;
    }
    let map = CharMap::new(text);
    let scanner = granit_parser::Scanner::new(granit_parser::StrInput::new(text));
    for token in scanner {
        // The text parsed, so the scanner reads it to its end.
        let (span, kind) = token.ok()?.into_parts();
        let at = byte(&map, &span.start);
        match kind {
            TokenType::VersionDirective(..)
            | TokenType::TagDirective(..)
            | TokenType::ReservedDirective(..) => {
                let line = text[at..].lines().next().unwrap_or("").trim_end();
                return Some(ParseFailure {
                    offset: at,
                    message: format!(
                        "the directive `{line}` is refused by Helm's YAML reader; remove that line"
                    ),
                });
            }
            TokenType::BlockEntry => {
                // The token sits where the entry's content starts, after the white space.
                let Some(dash) = entry_dash(text.as_bytes(), at) else {
                    continue;
                };
                let after = &text.as_bytes()[dash + 1..];
                let spaces = after.iter().take_while(|b| **b == b' ').count();
                if after.get(spaces) == Some(&b'\t') {
                    return Some(ParseFailure {
                        offset: dash + 1 + spaces,
                        message: "a tab after the `-` of a list entry is refused by Helm's YAML reader; write spaces there".to_string(),
                    });
                }
            }
            _ => {}
        }
    }
    None
}

/// The `-` of the block sequence entry whose content (or line end) is at `at`: before the
/// white space, or before the white space that precedes a comment on the line.
fn entry_dash(b: &[u8], at: usize) -> Option<usize> {
    let before_blanks = |mut d: usize| {
        while d > 0 && matches!(b[d - 1], b' ' | b'\t') {
            d -= 1;
        }
        (d > 0 && b[d - 1] == b'-').then(|| d - 1)
    };
    let at = at.min(b.len());
    before_blanks(at).or_else(|| {
        let line_start = b[..at]
            .iter()
            .rposition(|c| *c == b'\n')
            .map_or(0, |i| i + 1);
        let hash = b[line_start..at]
            .windows(2)
            .position(|w| matches!(w[0], b' ' | b'\t') && w[1] == b'#')?;
        before_blanks(line_start + hash + 1)
    })
}

/// Maps the parser's character indices to byte offsets.
struct CharMap {
    /// Byte offset of every character, plus the length; empty when the text is ASCII.
    offsets: Vec<usize>,
    len: usize,
}

impl CharMap {
    /// The table for `text`.
    fn new(text: &str) -> Self {
        let offsets = if text.is_ascii() {
            Vec::new()
        } else {
            text.char_indices()
                .map(|(i, _)| i)
                .chain(std::iter::once(text.len()))
                .collect()
        };
        CharMap {
            offsets,
            len: text.len(),
        }
    }

    /// The byte offset of a character index.
    fn byte(&self, char_index: usize) -> usize {
        if self.offsets.is_empty() {
            char_index.min(self.len)
        } else {
            self.offsets.get(char_index).copied().unwrap_or(self.len)
        }
    }
}

/// Line starts, for 1-based line and column numbers.
pub struct Lines {
    starts: Vec<usize>,
}

impl Lines {
    /// The table for `text`.
    pub fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        Lines { starts }
    }

    /// 1-based line of a byte offset.
    pub fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset)
    }

    /// 1-based line and 1-based column (in characters) of a byte offset.
    pub fn position(&self, text: &str, offset: usize) -> (usize, usize) {
        let line = self.line(offset);
        let start = self.starts[line - 1];
        let column = text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count())
            + 1;
        (line, column)
    }
}

/// The byte offset of a parser position.
fn byte(map: &CharMap, mark: &granit_parser::Marker) -> usize {
    mark.byte_offset().unwrap_or_else(|| map.byte(mark.index()))
}

impl<'a> Tree<'a> {
    /// Parses every document of `text`, accepting what Helm's go-yaml accepts beyond YAML 1.2
    /// (see the module documentation).
    pub fn parse(text: &'a str) -> Result<Self, ParseFailure> {
        match Tree::parse_noting_refusal(text)? {
            (tree, None) => Ok(tree),
            (_, Some(refused)) => Err(refused),
        }
    }

    /// [`Tree::parse`], with what Helm's YAML reader refuses although YAML 1.2 allows it (a
    /// directive, a tab after a list entry's `-`) returned beside the tree rather than as the
    /// error: for a reader that reports it and still reads the values (the egress audit).
    pub fn parse_noting_refusal(
        text: &'a str,
    ) -> Result<(Self, Option<ParseFailure>), ParseFailure> {
        let options = || granit_parser::options! { emit_anchor_events: true };
        let failure = match Tree::parse_with(text, options()) {
            Ok(tree) => return Ok((tree, helm_refuses(text))),
            Err(f) => f,
        };
        // go-yaml reads a tab that starts a line inside a flow collection as white space; the
        // parser refuses it where a block would need indentation. The same text with those tabs
        // as spaces has the same length, offsets and values, so it is parsed instead.
        let mut patched = text.to_string();
        let mut failure = failure;
        while failure.flow_tab {
            if !space_leading_tabs(&mut patched, failure.failure.offset) {
                break;
            }
            failure = match Tree::parse_with(&patched, options()) {
                Ok(tree) => return Ok((tree.into_owned(), helm_refuses(&patched))),
                Err(f) => f,
            };
        }
        Err(failure.failure)
    }

    /// Parses every document of `text` with YAML 1.2's indentation rules.
    pub fn parse_strict(text: &'a str) -> Result<Self, ParseFailure> {
        Tree::parse_with(
            text,
            granit_parser::options! { emit_anchor_events: true, strict_indentation: true },
        )
        .map_err(|f| f.failure)
    }

    fn parse_with(text: &'a str, options: granit_parser::Options) -> Result<Self, Attempt> {
        let map = CharMap::new(text);
        let lines = Lines::new(text);
        let mut tree = Tree::default();
        // Anchor ids of the collections still open, to register them when they close.
        let mut anchors: HashMap<usize, NodeId> = HashMap::new();
        // Open collections, each with the key waiting for its value and its anchor id.
        let mut stack: Vec<(NodeId, Option<NodeId>, usize)> = Vec::new();
        let mut parser = Parser::new_from_str_with_options(text, options);
        while let Some(next) = parser.next_event() {
            let (event, span) = next.map_err(|e| Attempt {
                failure: ParseFailure {
                    offset: byte(&map, e.marker()),
                    message: e.info(),
                },
                flow_tab: *e.kind() == granit_parser::ErrorKind::TabInBlockIndentation
                    && stack.last().is_some_and(|&(p, _, _)| tree.nodes[p].in_flow),
            })?;
            // A node starts at its first property: its anchor (an event of its own, right after
            // the node's) or its tag.
            let mut start = byte(&map, &span.start);
            if let Some(tag) = span.tag_start() {
                start = start.min(byte(&map, &tag));
            }
            let parent_flow = stack.last().is_some_and(|&(p, _, _)| tree.nodes[p].in_flow);
            let (kind, anchor, tag, flow) = match event {
                Event::Alias(id) => {
                    let node = tree.nodes.len();
                    if let Some(&target) = anchors.get(&id) {
                        tree.aliases.insert(node, target);
                    }
                    (Kind::Alias, 0, None, None)
                }
                Event::Anchor(..) => {
                    if let Some(node) = tree.nodes.last_mut() {
                        if start < node.start {
                            node.start = start;
                            node.line = lines.line(start);
                        }
                    }
                    continue;
                }
                Event::Scalar(value, style, anchor, tag) => {
                    // An empty plain scalar is null; the parser spells its value `~`.
                    let value = if style == ScalarStyle::Plain && span.start == span.end {
                        Cow::Borrowed("")
                    } else {
                        value
                    };
                    (Kind::Scalar { value, style }, anchor, tag, None)
                }
                Event::SequenceStart(style, anchor, tag) => {
                    (Kind::Seq { items: Vec::new() }, anchor, tag, Some(style))
                }
                Event::MappingStart(style, anchor, tag) => (
                    Kind::Map {
                        entries: Vec::new(),
                    },
                    anchor,
                    tag,
                    Some(style),
                ),
                Event::SequenceEnd | Event::MappingEnd => {
                    if let Some((id, _, anchor)) = stack.pop() {
                        if anchor != 0 {
                            anchors.insert(anchor, id);
                        }
                    }
                    continue;
                }
                _ => continue,
            };
            let opens = flow.is_some();
            let in_flow = parent_flow || flow == Some(StructureStyle::Flow);
            let id = tree.nodes.len();
            tree.nodes.push(Node {
                kind,
                start,
                line: lines.line(start),
                anchored: anchor != 0,
                tag,
                in_flow,
            });
            match stack.last_mut() {
                Some((parent, pending, _)) => match &mut tree.nodes[*parent].kind {
                    Kind::Seq { items } => items.push(id),
                    Kind::Map { entries } => match pending.take() {
                        Some(key) => entries.push((key, id)),
                        None => *pending = Some(id),
                    },
                    _ => unreachable!("only collections are pushed"),
                },
                None => tree.roots.push(id),
            }
            if opens {
                stack.push((id, None, anchor));
            } else if anchor != 0 {
                anchors.insert(anchor, id);
            }
        }
        Ok(tree)
    }

    /// The same tree, owning its strings.
    pub fn into_owned(self) -> Tree<'static> {
        Tree {
            nodes: self
                .nodes
                .into_iter()
                .map(|n| Node {
                    kind: match n.kind {
                        Kind::Scalar { value, style } => Kind::Scalar {
                            value: Cow::Owned(value.into_owned()),
                            style,
                        },
                        Kind::Map { entries } => Kind::Map { entries },
                        Kind::Seq { items } => Kind::Seq { items },
                        Kind::Alias => Kind::Alias,
                    },
                    start: n.start,
                    line: n.line,
                    anchored: n.anchored,
                    tag: n.tag.map(|t| Cow::Owned(t.into_owned())),
                    in_flow: n.in_flow,
                })
                .collect(),
            roots: self.roots,
            aliases: self.aliases,
        }
    }

    /// The value and style of a scalar node.
    pub fn scalar(&self, id: NodeId) -> Option<(&str, ScalarStyle)> {
        match &self.nodes[id].kind {
            Kind::Scalar { value, style } => Some((value, *style)),
            _ => None,
        }
    }

    /// The index of the entry of mapping `map` whose key is the scalar `key`: the last one when
    /// the key is written more than once, as Helm keeps the later value.
    pub fn entry(&self, map: NodeId, key: &str) -> Option<usize> {
        match &self.nodes[map].kind {
            Kind::Map { entries } => entries
                .iter()
                .rposition(|&(k, _)| self.scalar(k).is_some_and(|(s, _)| s == key)),
            _ => None,
        }
    }

    /// The value of the entry of mapping `map` whose key is the scalar `key` (the last one, see
    /// [`Tree::entry`]).
    pub fn get(&self, map: NodeId, key: &str) -> Option<NodeId> {
        let i = self.entry(map, key)?;
        match &self.nodes[map].kind {
            Kind::Map { entries } => Some(entries[i].1),
            _ => None,
        }
    }

    /// Item `i` of sequence `seq`.
    pub fn item(&self, seq: NodeId, i: usize) -> Option<NodeId> {
        match &self.nodes[seq].kind {
            Kind::Seq { items } => items.get(i).copied(),
            _ => None,
        }
    }

    /// The node an alias stands for (the node itself when it is no alias); `None` for an alias
    /// whose anchor has no value yet.
    pub fn resolve(&self, id: NodeId) -> Option<NodeId> {
        match self.nodes[id].kind {
            Kind::Alias => self.aliases.get(&id).copied(),
            _ => Some(id),
        }
    }

    /// What a scalar node means under the YAML 1.2 core schema.
    pub fn core(&self, id: NodeId) -> Option<Core> {
        let (value, style) = self.scalar(id)?;
        Some(core_scalar(value, style, self.nodes[id].tag.as_deref()))
    }
}

/// Skips an anchor (`&a`) and tag (`!t`, `!!str`) and the white space after them.
pub fn skip_properties(text: &str, mut pos: usize) -> usize {
    let b = text.as_bytes();
    loop {
        while pos < b.len() && matches!(b[pos], b' ' | b'\t') {
            pos += 1;
        }
        if pos < b.len() && matches!(b[pos], b'&' | b'!') {
            while pos < b.len() && !matches!(b[pos], b' ' | b'\t' | b'\r' | b'\n') {
                pos += 1;
            }
            while pos < b.len() && matches!(b[pos], b' ' | b'\t' | b'\r' | b'\n') {
                pos += 1;
            }
        } else {
            return pos;
        }
    }
}

/// A scalar's meaning under the YAML 1.2 core schema.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Core {
    /// `null`, `~` or nothing.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer (decimal, `0x` or `0o`).
    Int(i64),
    /// A floating-point number (`.inf` and `.nan` included).
    Float(f64),
    /// A string.
    Str,
    /// A core-schema tag the value does not fit (`!!int abc`).
    Invalid,
}

/// Resolves a scalar as the YAML 1.2 core schema does: quoted scalars are strings, a
/// core-schema tag decides the type, and an untagged plain scalar is guessed.
pub fn core_scalar(value: &str, style: ScalarStyle, tag: Option<&Tag>) -> Core {
    if style != ScalarStyle::Plain {
        return Core::Str;
    }
    match tag {
        Some(tag) if tag.is_yaml_core_schema() => {
            let parsed = match tag.suffix() {
                "str" => Some(Core::Str),
                "null" => matches!(value, "~" | "null").then_some(Core::Null),
                "bool" => value.parse().ok().map(Core::Bool),
                "int" => value.parse().ok().map(Core::Int),
                "float" => core_float(value).map(Core::Float),
                _ => None,
            };
            parsed.unwrap_or(Core::Invalid)
        }
        _ if value.is_empty() && tag.is_none() => Core::Null,
        _ => guess(value),
    }
}

/// The type of an untagged plain scalar.
fn guess(s: &str) -> Core {
    let unsigned = |digits: &str| !digits.starts_with(['+', '-']);
    if let Some(hex) = s.strip_prefix("0x").filter(|d| unsigned(d)) {
        if let Ok(i) = i64::from_str_radix(hex, 16) {
            return Core::Int(i);
        }
    }
    if let Some(oct) = s.strip_prefix("0o").filter(|d| unsigned(d)) {
        if let Ok(i) = i64::from_str_radix(oct, 8) {
            return Core::Int(i);
        }
    }
    match s {
        "~" | "null" | "Null" | "NULL" => return Core::Null,
        "true" | "True" | "TRUE" => return Core::Bool(true),
        "false" | "False" | "FALSE" => return Core::Bool(false),
        _ => {}
    }
    if let Some(rest) = s.strip_prefix('+').filter(|d| unsigned(d)) {
        if let Ok(i) = rest.parse::<i64>() {
            return Core::Int(i);
        }
    }
    if let Ok(i) = s.parse::<i64>() {
        return Core::Int(i);
    }
    core_float(s).map_or(Core::Str, Core::Float)
}

/// A core-schema float: `.inf`, `.nan` or a number with at least one digit.
fn core_float(s: &str) -> Option<f64> {
    match s {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => Some(f64::NAN),
        _ if s.bytes().any(|c| c.is_ascii_digit()) => s.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries<'t>(tree: &'t Tree<'_>, id: NodeId) -> &'t [(NodeId, NodeId)] {
        match &tree.nodes[id].kind {
            Kind::Map { entries } => entries,
            other => panic!("not a map: {other:?}"),
        }
    }

    fn items<'t>(tree: &'t Tree<'_>, id: NodeId) -> &'t [NodeId] {
        match &tree.nodes[id].kind {
            Kind::Seq { items } => items,
            other => panic!("not a sequence: {other:?}"),
        }
    }

    /// Where a node starts: byte offset and line.
    fn at(tree: &Tree<'_>, id: NodeId) -> (usize, usize) {
        (tree.nodes[id].start, tree.nodes[id].line)
    }

    fn map_keys(tree: &Tree<'_>, id: NodeId) -> Vec<String> {
        entries(tree, id)
            .iter()
            .map(|&(k, _)| tree.scalar(k).unwrap().0.to_string())
            .collect()
    }

    #[test]
    fn nodes_keep_offsets_lines_and_order() {
        let text = "b: 1\na: &x\n  c: 'q'\nd: *x\n";
        let tree = Tree::parse(text).unwrap();
        let root = tree.roots[0];
        assert_eq!(map_keys(&tree, root), ["b", "a", "d"]);
        let (_, a) = entries(&tree, root)[1];
        assert!(tree.nodes[a].anchored);
        let (_, d) = entries(&tree, root)[2];
        assert!(matches!(tree.nodes[d].kind, Kind::Alias));
        assert_eq!(tree.resolve(d), Some(a));
        assert_eq!(tree.nodes[d].line, 4);
        let (_, q) = entries(&tree, a)[0];
        assert_eq!(tree.scalar(q), Some(("q", ScalarStyle::SingleQuoted)));
        assert_eq!(at(&tree, q), (text.find("'q'").unwrap(), 3));
    }

    #[test]
    fn nodes_start_at_their_properties_and_empty_is_empty() {
        let text = "k: &a v\nt: !!str 5\nboth: !!str &b\n  w\ne:\nf: [x, &c y]\n";
        let tree = Tree::parse(text).unwrap();
        let root = tree.roots[0];
        let value = |i: usize| entries(&tree, root)[i].1;
        assert_eq!(tree.nodes[value(0)].start, text.find("&a").unwrap());
        assert_eq!(tree.nodes[value(1)].start, text.find("!!str 5").unwrap());
        assert_eq!(at(&tree, value(2)), (text.find("!!str &b").unwrap(), 3));
        assert_eq!(tree.scalar(value(3)), Some(("", ScalarStyle::Plain)));
        assert_eq!(tree.core(value(3)), Some(Core::Null));
        assert_eq!(tree.core(value(1)), Some(Core::Str));
        let y = items(&tree, value(4))[1];
        assert!(tree.nodes[y].in_flow && tree.nodes[y].anchored);
        assert_eq!(tree.nodes[y].start, text.find("&c").unwrap());
    }

    #[test]
    fn core_schema_types() {
        let p = ScalarStyle::Plain;
        assert_eq!(core_scalar("", p, None), Core::Null);
        assert_eq!(core_scalar("~", p, None), Core::Null);
        assert_eq!(core_scalar("True", p, None), Core::Bool(true));
        assert_eq!(core_scalar("yes", p, None), Core::Str);
        assert_eq!(core_scalar("0x1F", p, None), Core::Int(31));
        assert_eq!(core_scalar("0o17", p, None), Core::Int(15));
        assert_eq!(core_scalar("+5", p, None), Core::Int(5));
        assert_eq!(core_scalar("1.5", p, None), Core::Float(1.5));
        assert_eq!(core_scalar("inf", p, None), Core::Str);
        assert_eq!(
            core_scalar("8080", ScalarStyle::DoubleQuoted, None),
            Core::Str
        );
        let int = Tag::new("tag:yaml.org,2002:", "int");
        assert_eq!(core_scalar("abc", p, Some(&int)), Core::Invalid);
        assert_eq!(core_scalar("12", p, Some(&int)), Core::Int(12));
    }

    #[test]
    fn flow_bracket_at_parent_indentation() {
        let text = "extraEnv: {\n  # \"CUSTOM_ENV_VAR\": \"VALUE\"\n}\nnext: [\n  a, # one\n\n]\nlast: 1\n";
        assert!(Tree::parse_strict(text).is_err());
        let tree = Tree::parse(text).unwrap();
        let root = tree.roots[0];
        assert_eq!(map_keys(&tree, root), ["extraEnv", "next", "last"]);
        let (_, next) = entries(&tree, root)[1];
        let a = items(&tree, next)[0];
        assert_eq!(at(&tree, a), (text.find("a,").unwrap(), 5));
        let (last, _) = entries(&tree, root)[2];
        assert_eq!(at(&tree, last), (text.find("last").unwrap(), 8));
    }

    #[test]
    fn tabs_leading_flow_lines_are_white_space() {
        let text = "c:\n  p: {\n\t\"x\": \"e\" }\n  q: [\n\t \ta,\n  ]\n  r:\tv\n";
        assert!(Tree::parse_with(text, granit_parser::options! {}).is_err());
        let tree = Tree::parse(text).unwrap();
        let c = tree.get(tree.roots[0], "c").unwrap();
        let p = tree.get(c, "p").unwrap();
        let x = tree.get(p, "x").unwrap();
        assert_eq!(tree.scalar(x), Some(("e", ScalarStyle::DoubleQuoted)));
        assert_eq!(at(&tree, x), (text.find("\"e\"").unwrap(), 3));
        let q = tree.get(c, "q").unwrap();
        assert_eq!(at(&tree, items(&tree, q)[0]), (text.find("a,").unwrap(), 5));
        assert_eq!(tree.scalar(tree.get(c, "r").unwrap()).unwrap().0, "v");
        // A tab that indents block content stays an error, as in Helm.
        assert!(Tree::parse("a:\n\tb: 1\n").is_err());
        assert!(Tree::parse("a:\n  b: 1\n\tc: 2\n").is_err());
    }

    #[test]
    fn later_duplicate_keys_win() {
        let tree = Tree::parse("a: 1\nb: 2\na: 3\n").unwrap();
        let root = tree.roots[0];
        assert_eq!(map_keys(&tree, root), ["a", "b", "a"]);
        assert_eq!(tree.entry(root, "a"), Some(2));
        assert_eq!(tree.scalar(tree.get(root, "a").unwrap()).unwrap().0, "3");
    }

    #[test]
    fn other_errors_are_those_of_the_text() {
        let text = "a: {\n}\nb: x: y\n";
        let e = Tree::parse(text).unwrap_err();
        assert_eq!(e.offset, text.find("x:").unwrap() + 1, "{}", e.message);
        let text = "a:\n  b: 1\n c: 2\n";
        let e = Tree::parse(text).unwrap_err();
        assert_eq!(e.offset, Tree::parse_strict(text).unwrap_err().offset);
    }
}
