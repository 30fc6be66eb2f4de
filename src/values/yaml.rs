//! A light YAML tree with byte offsets, built from saphyr-parser events, and exact scanning of
//! scalar tokens in the original text.
//!
//! saphyr's spans count characters, start at an anchor or tag rather than at the scalar, and for
//! a quoted scalar followed by a comment run over the comment. So the tree keeps only where each
//! node starts (as a byte offset), and [`scalar_token`] re-scans the token from there and checks
//! that what it found decodes to the value the parser produced.

use std::borrow::Cow;
use std::ops::Range;

use saphyr_parser::{Event, Parser, ScalarStyle};

/// Index of a node in [`Tree::nodes`].
pub(crate) type NodeId = usize;

/// What a node holds.
pub(crate) enum Kind<'a> {
    /// A scalar with its parsed value and its style.
    Scalar {
        value: Cow<'a, str>,
        style: ScalarStyle,
    },
    /// A mapping, as `(key, value)` pairs in document order.
    Map { entries: Vec<(NodeId, NodeId)> },
    /// A sequence.
    Seq { items: Vec<NodeId> },
    /// An alias (`*name`).
    Alias,
}

/// One node of the tree.
pub(crate) struct Node<'a> {
    pub kind: Kind<'a>,
    /// Byte offset where the node starts, its anchor and tag included.
    pub start: usize,
    /// Whether the node carries an anchor (`&name`).
    pub anchored: bool,
    /// Whether the node is inside a flow collection (or is one).
    pub in_flow: bool,
}

/// Every document of a YAML stream.
pub(crate) struct Tree<'a> {
    pub nodes: Vec<Node<'a>>,
    pub roots: Vec<NodeId>,
}

/// A parse error at a byte offset.
pub(crate) struct ParseFailure {
    pub offset: usize,
    pub message: String,
}

/// Maps the parser's character indices to byte offsets.
pub(crate) struct CharMap {
    /// Byte offset of every character, plus the length; empty when the text is ASCII.
    offsets: Vec<usize>,
    len: usize,
}

impl CharMap {
    pub fn new(text: &str) -> Self {
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

    pub fn byte(&self, char_index: usize) -> usize {
        if self.offsets.is_empty() {
            char_index.min(self.len)
        } else {
            self.offsets.get(char_index).copied().unwrap_or(self.len)
        }
    }
}

/// Line starts, for 1-based line and column numbers.
pub(crate) struct Lines {
    starts: Vec<usize>,
}

impl Lines {
    pub fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(newlines(text.as_bytes()).map(|i| i + 1));
        Lines { starts }
    }

    /// 1-based line and 1-based column (in characters) of a byte offset.
    pub fn position(&self, text: &str, offset: usize) -> (usize, usize) {
        let line = self.starts.partition_point(|&s| s <= offset);
        let start = self.starts[line - 1];
        let column = text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count())
            + 1;
        (line, column)
    }
}

fn newlines(bytes: &[u8]) -> impl Iterator<Item = usize> + '_ {
    bytes
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
        .map(|(i, _)| i)
}

impl<'a> Tree<'a> {
    /// Parses every document of `text`.
    pub fn parse(text: &'a str, map: &CharMap) -> Result<Self, ParseFailure> {
        let mut nodes: Vec<Node<'a>> = Vec::new();
        let mut roots = Vec::new();
        // Open collections, each with the key waiting for its value.
        let mut stack: Vec<(NodeId, Option<NodeId>)> = Vec::new();
        let mut parser = Parser::new_from_str(text);
        while let Some(next) = parser.next_event() {
            let (event, span) = next.map_err(|e| ParseFailure {
                offset: map.byte(e.marker().index()),
                message: e.info().to_string(),
            })?;
            let start = map.byte(span.start.index());
            let parent_flow = stack.last().is_some_and(|&(p, _)| nodes[p].in_flow);
            let (kind, anchored, opens) = match event {
                Event::Alias(_) => (Kind::Alias, false, false),
                Event::Scalar(value, style, anchor, _) => {
                    (Kind::Scalar { value, style }, anchor != 0, false)
                }
                Event::SequenceStart(anchor, _) => {
                    (Kind::Seq { items: Vec::new() }, anchor != 0, true)
                }
                Event::MappingStart(anchor, _) => (
                    Kind::Map {
                        entries: Vec::new(),
                    },
                    anchor != 0,
                    true,
                ),
                Event::SequenceEnd | Event::MappingEnd => {
                    stack.pop();
                    continue;
                }
                _ => continue,
            };
            let in_flow = parent_flow
                || (opens
                    && matches!(
                        text.as_bytes().get(skip_properties(text, start)),
                        Some(b'{' | b'[')
                    ));
            let id = nodes.len();
            nodes.push(Node {
                kind,
                start,
                anchored,
                in_flow,
            });
            match stack.last_mut() {
                Some((parent, pending)) => match &mut nodes[*parent].kind {
                    Kind::Seq { items } => items.push(id),
                    Kind::Map { entries } => match pending.take() {
                        Some(key) => entries.push((key, id)),
                        None => *pending = Some(id),
                    },
                    _ => unreachable!("only collections are pushed"),
                },
                None => roots.push(id),
            }
            if opens {
                stack.push((id, None));
            }
        }
        Ok(Tree { nodes, roots })
    }

    /// The value of a scalar node.
    pub fn scalar(&self, id: NodeId) -> Option<(&str, ScalarStyle)> {
        match &self.nodes[id].kind {
            Kind::Scalar { value, style } => Some((value, *style)),
            _ => None,
        }
    }
}

/// Skips an anchor (`&a`) and tag (`!t`, `!!str`) and the white space after them.
pub(crate) fn skip_properties(text: &str, mut pos: usize) -> usize {
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

/// Why a scalar cannot be edited in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenProblem {
    BlockScalar,
    MultiLine,
    Escapes,
    NotFound,
}

/// A scalar token located in the text.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    /// The whole token, quotes included.
    pub whole: Range<usize>,
    /// The content between the quotes (the whole token for a plain scalar).
    pub content: Range<usize>,
    pub style: ScalarStyle,
}

/// Finds the exact bytes of a scalar node and checks they decode to its parsed value.
pub(crate) fn scalar_token(text: &str, node: &Node<'_>) -> Result<Token, TokenProblem> {
    let Kind::Scalar { value, style } = &node.kind else {
        return Err(TokenProblem::NotFound);
    };
    let b = text.as_bytes();
    let start = skip_properties(text, node.start);
    match style {
        ScalarStyle::Literal | ScalarStyle::Folded => Err(TokenProblem::BlockScalar),
        ScalarStyle::Plain => {
            let mut i = start;
            while i < b.len() {
                match b[i] {
                    b'\r' | b'\n' => break,
                    b'#' if i > start && matches!(b[i - 1], b' ' | b'\t') => break,
                    b':' if b.get(i + 1).is_none_or(|&n| {
                        matches!(n, b' ' | b'\t' | b'\r' | b'\n')
                            || (node.in_flow && matches!(n, b',' | b'[' | b']' | b'{' | b'}'))
                    }) =>
                    {
                        break
                    }
                    b',' | b'[' | b']' | b'{' | b'}' if node.in_flow => break,
                    _ => {}
                }
                i += 1;
            }
            while i > start && matches!(b[i - 1], b' ' | b'\t') {
                i -= 1;
            }
            if text[start..i] == **value {
                Ok(Token {
                    whole: start..i,
                    content: start..i,
                    style: *style,
                })
            } else if text[start..].starts_with(&**value) || value.contains(' ') {
                Err(TokenProblem::MultiLine)
            } else {
                Err(TokenProblem::NotFound)
            }
        }
        ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => {
            let quote = if *style == ScalarStyle::SingleQuoted {
                b'\''
            } else {
                b'"'
            };
            if b.get(start) != Some(&quote) {
                return Err(TokenProblem::NotFound);
            }
            let mut i = start + 1;
            let mut doubled = false;
            loop {
                match b.get(i) {
                    None => return Err(TokenProblem::NotFound),
                    Some(b'\r' | b'\n') => return Err(TokenProblem::MultiLine),
                    Some(b'\\') if quote == b'"' => return Err(TokenProblem::Escapes),
                    Some(&c) if c == quote => {
                        if quote == b'\'' && b.get(i + 1) == Some(&b'\'') {
                            doubled = true;
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    Some(_) => i += 1,
                }
            }
            let raw = &text[start + 1..i];
            let same = if doubled {
                raw.replace("''", "'") == **value
            } else {
                raw == &**value
            };
            if !same {
                return Err(TokenProblem::NotFound);
            }
            Ok(Token {
                whole: start..i + 1,
                content: start + 1..i,
                style: *style,
            })
        }
    }
}

/// Whether a plain scalar with this text would be read as something other than a string (null,
/// boolean or number, in YAML 1.2 core or YAML 1.1 as Helm's parser reads it).
pub(crate) fn plain_is_not_string(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "", "~", "null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE", "yes",
        "Yes", "YES", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF", "y", "Y", "n", "N",
        ".inf", ".Inf", ".INF", "-.inf", "+.inf", ".nan", ".NaN", ".NAN",
    ];
    if WORDS.contains(&s) {
        return true;
    }
    // Anything made only of number characters and starting like a number is treated as one:
    // ints, floats, hex, octal and YAML 1.1 sexagesimals (`1:30`).
    let b = s.as_bytes();
    let first_ok = matches!(b[0], b'0'..=b'9' | b'+' | b'-' | b'.');
    first_ok
        && b.iter().any(u8::is_ascii_digit)
        && b.iter().all(|c| {
            c.is_ascii_hexdigit()
                || matches!(
                    c,
                    b'.' | b'_' | b':' | b'+' | b'-' | b'x' | b'X' | b'o' | b'O'
                )
        })
}

/// Whether `s` can be written as a plain scalar and read back as the same string.
pub(crate) fn plain_safe(s: &str, in_flow: bool) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || plain_is_not_string(s) {
        return false;
    }
    if matches!(
        b[0],
        b'-' | b'?'
            | b':'
            | b','
            | b'['
            | b']'
            | b'{'
            | b'}'
            | b'#'
            | b'&'
            | b'*'
            | b'!'
            | b'|'
            | b'>'
            | b'\''
            | b'"'
            | b'%'
            | b'@'
            | b'`'
            | b' '
    ) {
        return false;
    }
    if s.ends_with([' ', ':'])
        || s.contains(": ")
        || s.contains(" #")
        || s.contains(['\n', '\r', '\t'])
    {
        return false;
    }
    !(in_flow && s.contains([',', '[', ']', '{', '}']))
}

/// Writes `value` as the content of a token of the given style. A plain scalar whose new value
/// would not read back as the same string is double-quoted instead.
pub(crate) fn encode(value: &str, style: ScalarStyle, in_flow: bool) -> (String, bool) {
    match style {
        ScalarStyle::SingleQuoted => (value.replace('\'', "''"), false),
        ScalarStyle::DoubleQuoted => (value.replace('\\', "\\\\").replace('"', "\\\""), false),
        _ if plain_safe(value, in_flow) => (value.to_string(), false),
        _ => (
            format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\"")),
            true,
        ),
    }
}
