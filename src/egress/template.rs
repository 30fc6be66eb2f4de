//! A small reader for Helm (Go `text/template`) templates: enough to find destinations.
//!
//! Templates are text, not YAML: this tokenizes `{{ ... }}` actions, builds a tree of
//! `if`/`with`/`range`/`define` blocks, and renders it against the merged values. Rendering for
//! a scan takes every branch of every `if` (what the chart *could* produce), while `include`
//! and `tpl` are evaluated like Helm does (taking only the branch the values select). An
//! action that cannot be computed renders as [`MARKER`], so a destination built from it is
//! reported as unresolved instead of being skipped.

use std::collections::HashMap;

use super::finder::MARKER;
use super::sprig;
use super::values::{Node, Values};

/// A node of a parsed template.
#[derive(Debug, Clone)]
pub enum TNode {
    /// Literal text starting at `line`.
    Text {
        /// The text.
        text: String,
        /// 1-based line where it starts.
        line: usize,
    },
    /// An action that outputs (or assigns) a pipeline.
    Action {
        /// The pipeline source.
        expr: String,
        /// 1-based line of `{{`.
        line: usize,
    },
    /// `if` / `else if` / `else` chains.
    If {
        /// (condition, body); `None` for the final `else`.
        branches: Vec<(Option<String>, Vec<TNode>)>,
    },
    /// `with X` ... `else` ... `end`.
    With {
        /// The pipeline that becomes the dot.
        expr: String,
        /// Body.
        body: Vec<TNode>,
        /// Else branch.
        otherwise: Vec<TNode>,
    },
    /// `range [$i, $v :=] X` ... `else` ... `end`.
    Range {
        /// The pipeline ranged over.
        expr: String,
        /// Declared variables (index/key, value).
        vars: Vec<String>,
        /// Body.
        body: Vec<TNode>,
        /// Else branch.
        otherwise: Vec<TNode>,
    },
    /// A `{{/* comment */}}`.
    Comment {
        /// The comment text.
        text: String,
        /// 1-based line.
        line: usize,
    },
}

/// A template that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line of the offending action.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

enum Tok {
    Text(String, usize),
    Act(String, usize),
}

/// The byte offset of the first `{{` in `s`: a search for `{` and a look at the next byte,
/// cheaper than setting up a substring searcher for every action of a template.
fn find_open(s: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = s[from..].find('{') {
        let at = from + i;
        if s.as_bytes().get(at + 1) == Some(&b'{') {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

fn tokenize(src: &str) -> Result<Vec<Tok>, ParseError> {
    let mut toks = Vec::new();
    let mut line = 1;
    let mut rest = src;
    let mut trim_next = false;
    loop {
        let Some(open) = find_open(rest) else {
            push_text(&mut toks, rest, line, trim_next, false);
            break;
        };
        let inner_start = open + 2;
        let trim_left = rest[inner_start..].starts_with("- ")
            || rest[inner_start..].starts_with("-\n")
            || rest[inner_start..].starts_with("-\t");
        push_text(&mut toks, &rest[..open], line, trim_next, trim_left);
        line += rest[..open].matches('\n').count();
        let act_line = line;
        let body = &rest[inner_start..];
        let close = find_close(body).ok_or_else(|| ParseError {
            line: act_line,
            message: "unclosed action: `{{` without a matching `}}`".into(),
        })?;
        let mut inner = &body[..close];
        if trim_left {
            inner = &inner[1..];
        }
        trim_next = inner.ends_with(" -") || inner.ends_with("\n-") || inner.ends_with("\t-");
        if trim_next {
            inner = &inner[..inner.len() - 1];
        }
        toks.push(Tok::Act(inner.trim().to_string(), act_line));
        line += body[..close].matches('\n').count();
        rest = &body[close + 2..];
    }
    Ok(toks)
}

fn push_text(toks: &mut Vec<Tok>, text: &str, line: usize, trim_start: bool, trim_end: bool) {
    let mut t = text;
    let mut line = line;
    if trim_start {
        let trimmed = t.trim_start();
        line += t[..t.len() - trimmed.len()].matches('\n').count();
        t = trimmed;
    }
    if trim_end {
        t = t.trim_end();
    }
    if !t.is_empty() {
        toks.push(Tok::Text(t.to_string(), line));
    }
}

/// Index of the `}}` closing an action, skipping strings and comments.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    if b[i.min(b.len() - 1)] == b'\n' {
                        return None;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let end = s[i + 2..].find("*/")?;
                i += 2 + end + 1;
            }
            b'}' if b.get(i + 1) == Some(&b'}') => return Some(i),
            b'{' if b.get(i + 1) == Some(&b'{') => return None,
            _ => {}
        }
        i += 1;
    }
    None
}

/// A parsed template file: its top-level nodes and its `define` blocks.
#[derive(Debug, Clone, Default)]
pub struct Template {
    /// Top-level nodes (without the `define` blocks).
    pub nodes: Vec<TNode>,
    /// Named templates defined in the file.
    pub defines: Vec<(String, Vec<TNode>)>,
}

/// Parse a template file.
pub fn parse(src: &str) -> Result<Template, ParseError> {
    let toks = tokenize(src)?;
    let mut it = toks.into_iter().peekable();
    let mut defines = Vec::new();
    let (nodes, end) = parse_block(&mut it, &mut defines)?;
    if let Some((kw, line)) = end {
        return Err(ParseError {
            line,
            message: format!("unexpected `{{{{ {kw} }}}}` with no open block"),
        });
    }
    Ok(Template { nodes, defines })
}

type Toks = std::iter::Peekable<std::vec::IntoIter<Tok>>;

/// The keyword that closed a block (`end`, `else …`) and its line.
type BlockEnd = (String, usize);

/// Parse until `end`/`else` (returned with its line) or the end of input.
fn parse_block(
    it: &mut Toks,
    defines: &mut Vec<(String, Vec<TNode>)>,
) -> Result<(Vec<TNode>, Option<BlockEnd>), ParseError> {
    let mut out = Vec::new();
    while let Some(tok) = it.next() {
        let (act, line) = match tok {
            Tok::Text(text, line) => {
                out.push(TNode::Text { text, line });
                continue;
            }
            Tok::Act(a, l) => (a, l),
        };
        if act.starts_with("/*") {
            let text = act
                .trim_start_matches("/*")
                .trim_end_matches("*/")
                .trim()
                .to_string();
            out.push(TNode::Comment { text, line });
            continue;
        }
        let (kw, rest) = keyword(&act);
        match kw {
            "end" => return Ok((out, Some(("end".into(), line)))),
            "else" => return Ok((out, Some((format!("else {rest}").trim().to_string(), line)))),
            "if" => out.push(parse_if(it, defines, rest, line)?),
            "with" | "range" => out.push(parse_with_range(it, defines, kw, rest, line)?),
            "define" | "block" => {
                let name =
                    unquote(rest.split_whitespace().next().unwrap_or("")).unwrap_or_default();
                let (body, end) = parse_block(it, defines)?;
                if end.is_none() {
                    return Err(unclosed(kw, line));
                }
                if kw == "block" {
                    out.push(TNode::Action {
                        expr: format!("include {rest}"),
                        line,
                    });
                }
                defines.push((name, body));
            }
            "template" => out.push(TNode::Action {
                expr: format!("include {rest}"),
                line,
            }),
            _ => out.push(TNode::Action {
                expr: act.clone(),
                line,
            }),
        }
    }
    Ok((out, None))
}

/// The keyword of an action and the rest. Go's lexer ends a keyword at any character that
/// cannot continue an identifier, so `with.Values.x` is `with` and `.Values.x`.
fn keyword(act: &str) -> (&str, &str) {
    let end = act
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(act.len());
    let (kw, rest) = act.split_at(end);
    let is_kw = matches!(
        kw,
        "end" | "else" | "if" | "with" | "range" | "define" | "block" | "template"
    );
    let boundary = rest.is_empty()
        || rest.starts_with(|c: char| c.is_whitespace() || matches!(c, '.' | '$' | '(' | '"'));
    if is_kw && boundary {
        (kw, rest.trim())
    } else {
        (act, "")
    }
}

/// `if` … `else if` … `else` … `end`, after the `if`.
fn parse_if(
    it: &mut Toks,
    defines: &mut Vec<(String, Vec<TNode>)>,
    cond: &str,
    line: usize,
) -> Result<TNode, ParseError> {
    let mut branches = Vec::new();
    let mut cond = Some(cond.to_string());
    loop {
        let (body, end) = parse_block(it, defines)?;
        let Some((kw, eline)) = end else {
            return Err(unclosed("if", line));
        };
        branches.push((cond.take(), body));
        if kw == "end" {
            break;
        }
        let after = kw.trim_start_matches("else").trim();
        if let Some(c) = after
            .strip_prefix("if")
            .filter(|c| keyword(&format!("if{c}")).0 == "if")
        {
            cond = Some(c.trim().to_string());
        } else if after.is_empty() {
            if branches.last().is_some_and(|(c, _)| c.is_none()) {
                return Err(ParseError {
                    line: eline,
                    message: "second `else` in one `if`".into(),
                });
            }
        } else {
            cond = Some(after.to_string());
        }
    }
    Ok(TNode::If { branches })
}

/// `with X` / `range [$i, $v :=] X` … [`else` …] `end`, after the keyword.
fn parse_with_range(
    it: &mut Toks,
    defines: &mut Vec<(String, Vec<TNode>)>,
    kw: &str,
    rest: &str,
    line: usize,
) -> Result<TNode, ParseError> {
    let (body, end) = parse_block(it, defines)?;
    let Some((k, _)) = end else {
        return Err(unclosed(kw, line));
    };
    let otherwise = if k == "end" {
        Vec::new()
    } else {
        let (o, end2) = parse_block(it, defines)?;
        if end2.is_none() {
            return Err(unclosed(kw, line));
        }
        o
    };
    if kw == "with" {
        return Ok(TNode::With {
            expr: rest.to_string(),
            body,
            otherwise,
        });
    }
    let (vars, expr) = match rest.split_once(":=") {
        Some((v, e)) => (
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            e.trim().to_string(),
        ),
        None => (Vec::new(), rest.to_string()),
    };
    Ok(TNode::Range {
        expr,
        vars,
        body,
        otherwise,
    })
}

fn unclosed(kw: &str, line: usize) -> ParseError {
    ParseError {
        line,
        message: format!("`{{{{ {kw} }}}}` is never closed with `{{{{ end }}}}`"),
    }
}

fn unquote(s: &str) -> Option<String> {
    let s = s.trim();
    if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
        Some(
            s[1..s.len() - 1]
                .replace("\\\"", "\"")
                .replace("\\n", "\n")
                .replace("\\\\", "\\"),
        )
    } else if s.len() >= 2 && s.starts_with('`') && s.ends_with('`') {
        Some(s[1..s.len() - 1].to_string())
    } else {
        None
    }
}

/// One piece of rendered output and where it came from.
#[derive(Debug, Clone)]
pub struct Piece<'t> {
    /// Rendered text (borrowed from the template when literal).
    pub text: std::borrow::Cow<'t, str>,
    /// 1-based template line that produced it (its first line, for literal text).
    pub line: usize,
    /// The `.Values` path it came from.
    pub path: Option<String>,
    /// True when it is [`MARKER`]: an action that could not be computed.
    pub unresolved: bool,
    /// True for template comments.
    pub commented: bool,
    /// True for literal text (its lines advance); false for action output.
    pub literal: bool,
    /// Whether the piece is in what Helm renders with the values given (always
    /// [`Reach::Taken`] outside [`Env::render_reach`]).
    pub reach: Reach,
}

/// Whether a piece of a rendering that takes every branch is on the path the values select.
/// Ordered from taken to switched off: a piece inside several branches has the last of theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reach {
    /// Every enclosing condition holds with the values given: Helm renders it.
    Taken,
    /// Some enclosing condition cannot be computed offline (`lookup`, a function this reader
    /// does not evaluate) and none is known to be false.
    Undecided,
    /// Some enclosing condition is false with the values given: Helm does not render it.
    Off,
}

impl Reach {
    /// The reach inside a branch whose own condition is `taken` (`None`: cannot be computed).
    fn within(self, taken: Option<bool>) -> Reach {
        self.max(match taken {
            Some(true) => Reach::Taken,
            Some(false) => Reach::Off,
            None => Reach::Undecided,
        })
    }
}

/// A value during evaluation.
#[derive(Debug, Clone)]
pub(super) enum V<'a> {
    /// A map built by the template (`dict`, `fromYaml`, `merge`…), keys in Go's sorted order.
    Dict(Vec<(String, V<'a>)>),
    /// A list built by the template (`list`, `until`, `splitList`…).
    List(Vec<V<'a>>),
    /// The top-level object (`$`): `.Values`, `.Release`, `.Chart`, ...
    Root,
    /// A values node and its path.
    Tree(Node<'a>, String),
    /// Text (possibly from a values path).
    Text(String, Option<String>),
    Bool(bool),
    /// A missing value (renders empty, like Helm).
    Nil(Option<String>),
    /// Cannot be computed.
    Unknown(Option<String>),
}

impl<'a> V<'a> {
    pub(super) fn path(&self) -> Option<String> {
        match self {
            V::Tree(_, p) => Some(p.clone()),
            V::Text(_, p) | V::Nil(p) | V::Unknown(p) => p.clone(),
            _ => None,
        }
    }
    /// The value as Go's `print` shows it; a collection prints like Go (`[a b]`, `map[k:v]`).
    pub(super) fn text(&self) -> Option<String> {
        match self {
            V::Tree(n, _) => n.as_text(),
            V::Text(s, _) => Some(s.clone()),
            V::Bool(b) => Some(b.to_string()),
            V::Nil(_) => Some(String::new()),
            V::List(items) => {
                let t: Option<Vec<String>> = items.iter().map(V::text).collect();
                t.map(|t| format!("[{}]", t.join(" ")))
            }
            V::Dict(entries) => {
                let t: Option<Vec<String>> = entries
                    .iter()
                    .map(|(k, v)| v.text().map(|v| format!("{k}:{v}")))
                    .collect();
                t.map(|t| format!("map[{}]", t.join(" ")))
            }
            V::Unknown(_) | V::Root => None,
        }
    }
    pub(super) fn truthy(&self) -> Option<bool> {
        match self {
            V::Tree(n, _) => Some(n.truthy()),
            V::Text(s, _) => Some(!s.is_empty()),
            V::Bool(b) => Some(*b),
            V::Nil(_) => Some(false),
            V::Root => Some(true),
            V::List(l) => Some(!l.is_empty()),
            V::Dict(d) => Some(!d.is_empty()),
            V::Unknown(_) => None,
        }
    }
}

/// Something could not be computed while evaluating for a value (`include`, `tpl`).
struct Unres;

/// The parts of a `range` node.
struct RangeNode<'t> {
    expr: &'t str,
    names: &'t [String],
    body: &'t [TNode],
    otherwise: &'t [TNode],
}

/// Everything a rendering needs.
pub struct Env<'a> {
    /// Merged values of the chart.
    pub values: &'a Values,
    /// Every named template of the chart (and its parents' helpers).
    pub defines: &'a HashMap<String, Vec<TNode>>,
    /// The chart's name; also used as the release name.
    pub chart_name: &'a str,
    /// `version` of the chart's `Chart.yaml`.
    pub chart_version: &'a str,
    /// `appVersion` of the chart's `Chart.yaml`.
    pub app_version: &'a str,
    /// Results of `include "name" .` (top-level context), shared by the workers.
    pub cache: std::sync::Mutex<HashMap<String, Option<String>>>,
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Scan,
    /// A scan that also records the [`Reach`] of every piece.
    Reach(Reach),
    Value,
}

impl Mode {
    /// Whether every branch is rendered.
    fn scans(self) -> bool {
        self != Mode::Value
    }
    fn reach(self) -> Reach {
        match self {
            Mode::Reach(r) => r,
            _ => Reach::Taken,
        }
    }
    /// The mode inside a branch whose own condition is `taken`.
    fn within(self, taken: Option<bool>) -> Mode {
        match self {
            Mode::Reach(r) => Mode::Reach(r.within(taken)),
            m => m,
        }
    }
}

type Vars<'a> = Vec<(String, V<'a>)>;

/// The Kubernetes version `.Capabilities.KubeVersion` reports (Helm's offline default).
const KUBE_VERSION: &str = "v1.31.0";
const KUBE_MINOR: &str = "31";

const MAX_DEPTH: usize = 24;
const MAX_RANGE: usize = 64;

impl<'a> Env<'a> {
    /// Render top-level nodes for a scan: every branch of every `if`.
    pub fn render_scan<'t>(&self, nodes: &'t [TNode]) -> Vec<Piece<'t>> {
        let mut out = Vec::new();
        let mut vars: Vars<'a> = vec![("$".into(), V::Root)];
        let _ = self.render(nodes, &V::Root, &mut vars, Mode::Scan, &mut out, 0);
        out
    }

    /// [`Env::render_scan`] that also records, for every piece, whether Helm renders it with
    /// these values ([`Piece::reach`]).
    pub fn render_reach<'t>(&self, nodes: &'t [TNode]) -> Vec<Piece<'t>> {
        let mut out = Vec::new();
        let mut vars: Vars<'a> = vec![("$".into(), V::Root)];
        let mode = Mode::Reach(Reach::Taken);
        let _ = self.render(nodes, &V::Root, &mut vars, mode, &mut out, 0);
        out
    }

    fn render<'t>(
        &self,
        nodes: &'t [TNode],
        dot: &V<'a>,
        vars: &mut Vars<'a>,
        mode: Mode,
        out: &mut Vec<Piece<'t>>,
        depth: usize,
    ) -> Result<(), Unres> {
        if depth > MAX_DEPTH {
            return Err(Unres);
        }
        for node in nodes {
            match node {
                TNode::Text { text, line } => out.push(Piece {
                    text: text.as_str().into(),
                    line: *line,
                    path: None,
                    unresolved: false,
                    commented: false,
                    literal: true,
                    reach: mode.reach(),
                }),
                TNode::Comment { text, line } => {
                    if mode.scans() {
                        out.push(Piece {
                            text: text.as_str().into(),
                            line: *line,
                            path: None,
                            unresolved: false,
                            commented: true,
                            literal: true,
                            reach: mode.reach(),
                        });
                    }
                }
                TNode::Action { expr, line } => {
                    self.render_action(expr, *line, dot, vars, mode, out, depth)?
                }
                TNode::If { branches } => self.render_if(branches, dot, vars, mode, out, depth)?,
                TNode::With {
                    expr,
                    body,
                    otherwise,
                } => self.render_with(expr, body, otherwise, dot, vars, mode, out, depth)?,
                TNode::Range {
                    expr,
                    vars: names,
                    body,
                    otherwise,
                } => {
                    let range = RangeNode {
                        expr,
                        names,
                        body,
                        otherwise,
                    };
                    self.render_range(&range, dot, vars, mode, out, depth)?
                }
            }
        }
        Ok(())
    }

    /// An action: an assignment, or output of its pipeline (the marker when it cannot be
    /// computed). `set`/`unset` on a variable change the variable, as they change the map in
    /// Go.
    #[allow(clippy::too_many_arguments)]
    fn render_action<'t>(
        &self,
        expr: &str,
        line: usize,
        dot: &V<'a>,
        vars: &mut Vars<'a>,
        mode: Mode,
        out: &mut Vec<Piece<'t>>,
        depth: usize,
    ) -> Result<(), Unres> {
        if let Some((name, e)) = assignment(expr) {
            let v = self.pipeline(e, dot, vars, depth);
            self.write_back(e, &v, vars);
            match vars.iter_mut().rev().find(|(n, _)| *n == name) {
                Some(slot) if expr.contains(" = ") && !expr.contains(":=") => slot.1 = v,
                _ => vars.push((name, v)),
            }
            return Ok(());
        }
        if let (true, Some(rt)) = (mode.scans(), round_trip(expr)) {
            if self.render_round_trip(&rt, line, dot, vars, mode, out, depth) {
                return Ok(());
            }
        }
        let v = self.pipeline(expr, dot, vars, depth);
        if self.write_back(expr, &v, vars) {
            // `{{ set $d "k" v }}` prints the map in Go; charts write `$_ := set …` instead.
            return Ok(());
        }
        match v.text() {
            Some(text) => out.push(Piece {
                text: text.into(),
                line,
                path: v.path(),
                unresolved: false,
                commented: false,
                literal: false,
                reach: mode.reach(),
            }),
            None if mode == Mode::Value => return Err(Unres),
            None => out.push(Piece {
                text: MARKER.to_string().into(),
                line,
                path: v.path(),
                unresolved: true,
                commented: false,
                literal: false,
                reach: mode.reach(),
            }),
        }
        Ok(())
    }

    /// `include NAME CTX | fromYaml | toYaml [| nindent N | indent N]` (how charts render a
    /// shared pod template) when the named template renders a YAML mapping, or cannot be
    /// computed offline: the named template's own pieces, rendered in this mode (every branch,
    /// with its reach and values paths), re-indented as the pipeline does, each at the
    /// action's line. `false` when the pattern does not apply: the pipeline is then evaluated
    /// as a value, as before.
    ///
    /// Helm parses the included text and writes it back: keys sorted, quoting normalised,
    /// nesting at two spaces. None of that changes an image or a host, so for ferry the
    /// round trip is the same lines, re-indented, and a part that cannot be computed (a
    /// `lookup`) stays a marker in its own line instead of making the whole text unknown.
    /// Not modelled: a key written twice (Helm keeps the last one, both are read here), YAML
    /// anchors, the round trip written another way (`toYaml (include … | fromYaml)`), and a
    /// `fromYaml` result changed before `toYaml` (`mergeOverwrite`, `set`), which is evaluated
    /// as a value, without pieces: its text is found, at the action's line, only when all of
    /// it can be computed.
    #[allow(clippy::too_many_arguments)]
    fn render_round_trip<'t>(
        &self,
        rt: &RoundTrip<'_>,
        line: usize,
        dot: &V<'a>,
        vars: &Vars<'a>,
        mode: Mode,
        out: &mut Vec<Piece<'t>>,
        depth: usize,
    ) -> bool {
        let (Some(name), ctx) = (
            self.operand(rt.name, dot, vars, depth).text(),
            self.operand(rt.ctx, dot, vars, depth),
        ) else {
            return false;
        };
        let Some(body) = self.defines.get(&name) else {
            return false;
        };
        // What Helm includes, when it can be computed, must be a mapping.
        let included = self.templates("include", &[V::Text(name, None), ctx.clone()], &None, depth);
        if let Some(text) = included.and_then(|v| v.text()) {
            if !matches!(
                sprig::call("fromYaml", &[V::Text(text, None)]),
                Some(V::Dict(_))
            ) {
                return false;
            }
        }
        let mut inner = Vec::new();
        let mut inner_vars: Vars<'a> = vec![("$".into(), ctx.clone())];
        if self
            .render(body, &ctx, &mut inner_vars, mode, &mut inner, depth + 1)
            .is_err()
        {
            return false;
        }
        reindent(inner, rt, line, mode.reach(), out);
        true
    }

    /// When `expr` is `set $var …` or `unset $var …`, store the changed map in `$var`.
    fn write_back(&self, expr: &str, v: &V<'a>, vars: &mut Vars<'a>) -> bool {
        let w = words(expr.trim());
        let (Some(f), Some(target)) = (w.first(), w.get(1)) else {
            return false;
        };
        if !matches!(f.as_str(), "set" | "unset")
            || !target.starts_with('$')
            || target.contains('.')
        {
            return false;
        }
        if let Some(slot) = vars.iter_mut().rev().find(|(n, _)| n == target) {
            slot.1 = v.clone();
        }
        true
    }

    /// `if`: every branch for a scan; the branch the values select otherwise.
    fn render_if<'t>(
        &self,
        branches: &'t [(Option<String>, Vec<TNode>)],
        dot: &V<'a>,
        vars: &mut Vars<'a>,
        mode: Mode,
        out: &mut Vec<Piece<'t>>,
        depth: usize,
    ) -> Result<(), Unres> {
        let mark = vars.len();
        if mode == Mode::Scan {
            for (_, body) in branches {
                self.render(body, dot, vars, mode, out, depth + 1)?;
                vars.truncate(mark);
            }
            return Ok(());
        }
        if let Mode::Reach(_) = mode {
            // Whether an earlier branch was taken (`None`: cannot be computed).
            let mut before = Some(false);
            for (cond, body) in branches {
                let own = match cond {
                    None => Some(true),
                    Some(c) => self.pipeline(c, dot, vars, depth).truthy(),
                };
                let taken = match before {
                    Some(true) => Some(false),
                    Some(false) => own,
                    None => own.filter(|t| !t),
                };
                before = match (before, own) {
                    (Some(true), _) | (_, Some(true)) => Some(true),
                    (Some(false), Some(false)) => Some(false),
                    _ => None,
                };
                self.render_branch(body, dot, vars, mode.within(taken), out, depth)?;
                vars.truncate(mark);
            }
            return Ok(());
        }
        for (cond, body) in branches {
            let take = match cond {
                None => true,
                Some(c) => self.pipeline(c, dot, vars, depth).truthy().ok_or(Unres)?,
            };
            if take {
                self.render(body, dot, vars, mode, out, depth + 1)?;
                break;
            }
        }
        vars.truncate(mark);
        Ok(())
    }

    /// One branch of a block. When reach is recorded, a branch Helm does not take leaves the
    /// variables as they were: `{{ $x = … }}` in it does not change what later lines render.
    fn render_branch<'t>(
        &self,
        body: &'t [TNode],
        dot: &V<'a>,
        vars: &mut Vars<'a>,
        mode: Mode,
        out: &mut Vec<Piece<'t>>,
        depth: usize,
    ) -> Result<(), Unres> {
        if matches!(mode, Mode::Reach(r) if r != Reach::Taken) {
            let saved = vars.clone();
            let result = self.render(body, dot, vars, mode, out, depth + 1);
            *vars = saved;
            return result;
        }
        self.render(body, dot, vars, mode, out, depth + 1)
    }

    /// `with`: the body with the value as the dot, and the `else` branch.
    #[allow(clippy::too_many_arguments)]
    fn render_with<'t>(
        &self,
        expr: &str,
        body: &'t [TNode],
        otherwise: &'t [TNode],
        dot: &V<'a>,
        vars: &mut Vars<'a>,
        mode: Mode,
        out: &mut Vec<Piece<'t>>,
        depth: usize,
    ) -> Result<(), Unres> {
        let mark = vars.len();
        let (name, e) = assignment(expr).map_or((None, expr), |(n, e)| (Some(n), e));
        let v = self.pipeline(e, dot, vars, depth);
        if let Some(n) = name {
            vars.push((n, v.clone()));
        }
        match (mode, v.truthy()) {
            (Mode::Scan | Mode::Reach(_), t) => {
                self.render_branch(body, &v, vars, mode.within(t), out, depth)?;
                let other = mode.within(t.map(|t| !t));
                self.render_branch(otherwise, dot, vars, other, out, depth)?;
            }
            (Mode::Value, Some(true)) => self.render(body, &v, vars, mode, out, depth + 1)?,
            (Mode::Value, Some(false)) => {
                self.render(otherwise, dot, vars, mode, out, depth + 1)?
            }
            (Mode::Value, None) => return Err(Unres),
        }
        vars.truncate(mark);
        Ok(())
    }

    /// The (key, item) pairs `range` visits: list items by index, map entries by key.
    fn range_items(v: &V<'a>) -> Vec<(V<'a>, V<'a>)> {
        if let Some(l) = match v {
            V::List(_) => sprig::to_list(v),
            V::Tree(n, _) if n.is_seq() => sprig::to_list(v),
            _ => None,
        } {
            return l
                .into_iter()
                .take(MAX_RANGE)
                .enumerate()
                .map(|(i, item)| (V::Text(i.to_string(), None), item))
                .collect();
        }
        if let Some(d) = match v {
            V::Dict(_) => sprig::to_dict(v),
            V::Tree(n, _) if n.is_map() => sprig::to_dict(v),
            _ => None,
        } {
            return d
                .into_iter()
                .take(MAX_RANGE)
                .map(|(k, item)| (V::Text(k, None), item))
                .collect();
        }
        // `range 3` counts, as in Go 1.22.
        match v.text().and_then(|t| t.parse::<usize>().ok()) {
            Some(n) if !matches!(v, V::Tree(..)) || n > 0 => (0..n.min(MAX_RANGE))
                .map(|i| (V::Text(i.to_string(), None), V::Text(i.to_string(), None)))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// `range`: the body once per item (once with empty values for a scan when there is
    /// nothing to range over, so its literal text is still read), then the `else` branch.
    fn render_range<'t>(
        &self,
        r: &RangeNode<'t>,
        dot: &V<'a>,
        vars: &mut Vars<'a>,
        mode: Mode,
        out: &mut Vec<Piece<'t>>,
        depth: usize,
    ) -> Result<(), Unres> {
        let v = self.pipeline(r.expr, dot, vars, depth);
        if mode == Mode::Value && matches!(v, V::Unknown(_)) {
            return Err(Unres);
        }
        let mut items = Self::range_items(&v);
        let known = (!matches!(v, V::Unknown(_))).then_some(items.is_empty());
        if items.is_empty() && mode.scans() {
            let none = match &v {
                V::Unknown(p) => V::Unknown(p.clone()),
                other => V::Nil(other.path()),
            };
            items.push((none.clone(), none));
        }
        let empty = items.is_empty();
        for (k, item) in items {
            let mark = vars.len();
            match r.names {
                [one] => vars.push((one.clone(), item.clone())),
                [a, b, ..] => {
                    vars.push((a.clone(), k));
                    vars.push((b.clone(), item.clone()));
                }
                [] => {}
            }
            let within = mode.within(known.map(|none| !none));
            self.render_branch(r.body, &item, vars, within, out, depth)?;
            vars.truncate(mark);
        }
        if mode.scans() || empty {
            let within = mode.within(known);
            self.render_branch(r.otherwise, dot, vars, within, out, depth)?;
        }
        Ok(())
    }

    fn pipeline(&self, expr: &str, dot: &V<'a>, vars: &Vars<'a>, depth: usize) -> V<'a> {
        let cmds = split_top(expr, '|');
        let mut acc: Option<V<'a>> = None;
        for cmd in cmds {
            let words = words(cmd.trim());
            if words.is_empty() {
                return V::Unknown(None);
            }
            let v = self.command(&words, acc.take(), dot, vars, depth);
            acc = Some(v);
        }
        acc.unwrap_or(V::Unknown(None))
    }

    fn command(
        &self,
        words: &[String],
        piped: Option<V<'a>>,
        dot: &V<'a>,
        vars: &Vars<'a>,
        depth: usize,
    ) -> V<'a> {
        let head = &words[0];
        if head.ends_with(".Capabilities.APIVersions.Has") {
            // Offline, Helm knows the built-in Kubernetes API versions and no others.
            let v = words
                .get(1)
                .map(|w| self.operand(w, dot, vars, depth))
                .or(piped);
            return match v.and_then(|v| v.text()) {
                Some(api) => V::Bool(builtin_api(&api)),
                None => V::Unknown(None),
            };
        }
        let is_func = head.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && !matches!(head.as_str(), "true" | "false" | "nil");
        if !is_func {
            return self.operand(head, dot, vars, depth);
        }
        let mut args: Vec<V<'a>> = words[1..]
            .iter()
            .map(|w| self.operand(w, dot, vars, depth))
            .collect();
        if let Some(p) = piped {
            args.push(p);
        }
        self.call(head, args, depth)
    }

    fn operand(&self, w: &str, dot: &V<'a>, vars: &Vars<'a>, depth: usize) -> V<'a> {
        if let Some(s) = unquote(w) {
            return V::Text(s, None);
        }
        if w.starts_with('(') {
            // `(pipeline)` and `(pipeline).Field.Chain` (`(split "@" $v)._0`).
            let close = group_end(w);
            if close == w.len() - 1 {
                return self.pipeline(&w[1..close], dot, vars, depth);
            }
            if let Some(chain) = w[close + 1..].strip_prefix('.') {
                let base = self.pipeline(&w[1..close], dot, vars, depth);
                return self.fields(base, chain);
            }
        }
        match w {
            "true" => return V::Bool(true),
            "false" => return V::Bool(false),
            "nil" => return V::Nil(None),
            "." => return dot.clone(),
            _ => {}
        }
        if w.starts_with(|c: char| c.is_ascii_digit() || c == '-') {
            return V::Text(w.to_string(), None);
        }
        if let Some(rest) = w.strip_prefix('.') {
            return self.fields(dot.clone(), rest);
        }
        if w.starts_with('$') {
            let (name, rest) = match w.find('.') {
                Some(i) => (&w[..i], &w[i + 1..]),
                None => (w, ""),
            };
            let base = vars
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map_or(V::Unknown(None), |(_, v)| v.clone());
            return if rest.is_empty() {
                base
            } else {
                self.fields(base, rest)
            };
        }
        if w.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) {
            // A function with no arguments inside a larger command.
            return self.call(w, Vec::new(), depth);
        }
        V::Unknown(None)
    }

    fn fields(&self, base: V<'a>, chain: &str) -> V<'a> {
        let mut cur = base;
        let parts: Vec<&str> = chain.split('.').filter(|s| !s.is_empty()).collect();
        let mut i = 0;
        while i < parts.len() {
            let f = parts[i];
            cur = match cur {
                V::Root => match f {
                    "Values" => V::Tree(self.values.root(), ".Values".into()),
                    "Release" => {
                        let v = match parts.get(i + 1).copied() {
                            Some("Name") => V::Text(self.chart_name.to_string(), None),
                            Some("Namespace") => V::Text("release-namespace".into(), None),
                            Some("Service") => V::Text("Helm".into(), None),
                            Some("IsInstall") => V::Bool(true),
                            Some("IsUpgrade") => V::Bool(false),
                            Some("Revision") => V::Text("1".into(), None),
                            _ => V::Unknown(None),
                        };
                        i += 2;
                        cur = v;
                        continue;
                    }
                    "Chart" => {
                        let v = match parts.get(i + 1).copied() {
                            // `.Chart` itself, passed to a named template (`"chart" .Chart`).
                            None => V::Dict(vec![
                                ("AppVersion".into(), V::Text(self.app_version.into(), None)),
                                ("Name".into(), V::Text(self.chart_name.into(), None)),
                                ("Version".into(), V::Text(self.chart_version.into(), None)),
                            ]),
                            Some("Name") => V::Text(self.chart_name.to_string(), None),
                            Some("Version") => V::Text(self.chart_version.to_string(), None),
                            Some("AppVersion") => V::Text(self.app_version.to_string(), None),
                            _ => V::Unknown(None),
                        };
                        i += 2;
                        cur = v;
                        continue;
                    }
                    "Capabilities" => {
                        // `helm template` without a cluster: Helm's built-in defaults.
                        let rest: Vec<&str> = parts[i + 1..].to_vec();
                        let v = match rest.as_slice() {
                            ["KubeVersion"]
                            | ["KubeVersion", "Version"]
                            | ["KubeVersion", "GitVersion"] => V::Text(KUBE_VERSION.into(), None),
                            ["KubeVersion", "Major"] => V::Text("1".into(), None),
                            ["KubeVersion", "Minor"] => V::Text(KUBE_MINOR.into(), None),
                            ["HelmVersion", "Version"] => V::Text("v3.16.0".into(), None),
                            _ => V::Unknown(Some(format!(".Capabilities.{}", rest.join(".")))),
                        };
                        return v;
                    }
                    _ => V::Unknown(Some(format!(".{f}"))),
                },
                V::Tree(n, p) => {
                    let path = format!("{p}.{f}");
                    match n.get(f) {
                        Some(child) => V::Tree(child, path),
                        None if n.is_map_or_null() => V::Nil(Some(path)),
                        None => V::Unknown(Some(path)),
                    }
                }
                V::Dict(entries) => entries
                    .into_iter()
                    .find(|(k, _)| k == f)
                    .map_or(V::Nil(None), |(_, v)| v),
                V::Nil(p) => V::Nil(p.map(|p| format!("{p}.{f}"))),
                V::Unknown(p) => V::Unknown(p.map(|p| format!("{p}.{f}"))),
                _ => V::Unknown(None),
            };
            i += 1;
        }
        cur
    }

    /// Calls a template function. Each group of functions answers `None` for a name it does not
    /// have; a function no group has cannot be computed.
    fn call(&self, name: &str, args: Vec<V<'a>>, depth: usize) -> V<'a> {
        let path = args.iter().find_map(V::path);
        defaults(name, &args, &path)
            .or_else(|| strings(name, &args, &path))
            .or_else(|| self.templates(name, &args, &path, depth))
            .or_else(|| encoding(name, &args))
            .or_else(|| logic(name, &args))
            .or_else(|| collections(name, &args))
            .or_else(|| sprig::call(name, &args))
            .unwrap_or(V::Unknown(path))
    }

    /// `tpl`, `include` and `template`: text evaluated against the values.
    fn templates(
        &self,
        name: &str,
        args: &[V<'a>],
        path: &Option<String>,
        depth: usize,
    ) -> Option<V<'a>> {
        Some(match name {
            "tpl" => {
                let (Some(src), ctx) = (
                    args.first().and_then(V::text),
                    args.get(1).cloned().unwrap_or(V::Root),
                ) else {
                    return Some(V::Unknown(path.clone()));
                };
                let Ok(t) = parse(&src) else {
                    return Some(V::Unknown(path.clone()));
                };
                match self.eval_value(&t.nodes, &ctx, depth) {
                    Some(s) => V::Text(s, args.first().and_then(V::path)),
                    None => V::Unknown(path.clone()),
                }
            }
            "include" | "template" => {
                let (Some(tname), ctx) = (
                    args.first().and_then(V::text),
                    args.get(1).cloned().unwrap_or(V::Nil(None)),
                ) else {
                    return Some(V::Unknown(None));
                };
                // With the top-level object as context the result depends on the values only,
                // which do not change during a check: compute it once per chart.
                let root = matches!(ctx, V::Root);
                if root {
                    if let Some(hit) = self.cache.lock().ok().and_then(|c| c.get(&tname).cloned()) {
                        return Some(hit.map_or(V::Unknown(None), |s| V::Text(s, None)));
                    }
                }
                let result = self
                    .defines
                    .get(&tname)
                    .and_then(|body| self.eval_value(body, &ctx, depth));
                if root {
                    if let Ok(mut c) = self.cache.lock() {
                        c.insert(tname, result.clone());
                    }
                }
                result.map_or(V::Unknown(None), |s| V::Text(s, None))
            }
            _ => return None,
        })
    }

    /// Evaluate template text found inside a values string (for `tpl`), with the top-level
    /// object as context; `None` when it cannot be computed.
    pub fn render_text(&self, src: &str) -> Option<String> {
        let t = parse(src).ok()?;
        self.eval_value(&t.nodes, &V::Root, 0)
    }

    fn eval_value(&self, nodes: &[TNode], dot: &V<'a>, depth: usize) -> Option<String> {
        let mut out = Vec::new();
        // `$` is the data the template is executed with, as in Go.
        let mut vars: Vars<'a> = vec![("$".into(), dot.clone())];
        self.render(nodes, dot, &mut vars, Mode::Value, &mut out, depth + 1)
            .ok()?;
        Some(out.into_iter().map(|p| p.text).collect::<String>())
    }
}

/// Whether `api` (`v1`, `apps/v1`, `policy/v1/PodDisruptionBudget`, …) is one of the
/// built-in Kubernetes API groups that `.Capabilities.APIVersions` lists without a cluster:
/// the core group, groups without a dot (`apps`, `batch`, `policy`, `autoscaling`) and
/// `*.k8s.io` groups.
fn builtin_api(api: &str) -> bool {
    match api.split_once('/') {
        None => api.starts_with('v'),
        Some((group, _)) => !group.contains('.') || group.ends_with(".k8s.io"),
    }
}

/// The last argument (the piped value), nil when there is none.
fn last<'a>(args: &[V<'a>]) -> V<'a> {
    args.last().cloned().unwrap_or(V::Nil(None))
}

/// `default`, `required`, `coalesce` and `ternary`: choosing between values.
fn defaults<'a>(name: &str, args: &[V<'a>], path: &Option<String>) -> Option<V<'a>> {
    let last = last(args);
    Some(match name {
        "default" => {
            let d = args.first().cloned().unwrap_or(V::Nil(None));
            if args.len() < 2 {
                return Some(d);
            }
            match last.truthy() {
                Some(true) => last,
                Some(false) => d,
                None => V::Unknown(last.path()),
            }
        }
        "required" => match last.truthy() {
            Some(true) => last,
            _ => V::Unknown(last.path()),
        },
        "coalesce" => {
            for a in args {
                match a.truthy() {
                    Some(true) => return Some(a.clone()),
                    Some(false) => {}
                    None => return Some(V::Unknown(a.path())),
                }
            }
            V::Nil(path.clone())
        }
        "ternary" => match args.get(2).and_then(V::truthy) {
            Some(true) => args[0].clone(),
            Some(false) => args[1].clone(),
            None => V::Unknown(path.clone()),
        },
        _ => return None,
    })
}

/// Functions that build or change text: quoting, `printf` and its kin, indentation, trimming and
/// case.
fn strings<'a>(name: &str, args: &[V<'a>], path: &Option<String>) -> Option<V<'a>> {
    let last = last(args);
    Some(match name {
        "quote" | "squote" => {
            let q = if name == "quote" { '"' } else { '\'' };
            let mut parts = Vec::new();
            for a in args {
                match a.text() {
                    Some(t) => parts.push(format!("{q}{t}{q}")),
                    None => return Some(V::Unknown(a.path())),
                }
            }
            V::Text(parts.join(" "), path.clone())
        }
        "printf" | "print" | "println" | "cat" => {
            // An argument that cannot be computed becomes the marker in place, so the
            // rest of the text (a host beside an unknown password) is still judged.
            let texts: Vec<String> = args
                .iter()
                .map(|a| a.text().unwrap_or_else(|| MARKER.to_string()))
                .collect();
            let s = match name {
                "printf" if !texts.is_empty() => sprintf(&texts[0], &texts[1..]),
                "cat" => texts.join(" "),
                "println" => texts.concat() + "\n",
                _ => texts.concat(),
            };
            // The values path of a printf is that of its first values-backed argument.
            let p = args
                .iter()
                .skip(usize::from(name == "printf"))
                .find_map(V::path);
            V::Text(s, p)
        }
        "indent" | "nindent" => {
            let n: usize = args
                .first()
                .and_then(V::text)
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            let Some(t) = (match &last {
                V::Tree(node, _) if !node.is_scalar() => Some(node.to_yaml()),
                other => other.text(),
            }) else {
                return Some(V::Unknown(last.path()));
            };
            let pad = " ".repeat(n);
            let body = t
                .lines()
                .map(|l| format!("{pad}{l}"))
                .collect::<Vec<_>>()
                .join("\n");
            V::Text(
                if name == "nindent" {
                    format!("\n{body}")
                } else {
                    body
                },
                last.path(),
            )
        }
        "trim" | "lower" | "upper" | "title" | "trimSuffix" | "trimPrefix" | "trunc"
        | "replace" | "trimAll" => {
            let Some(t) = last.text() else {
                return Some(V::Unknown(last.path()));
            };
            let arg = |i: usize| args.get(i).and_then(V::text).unwrap_or_default();
            let s = match name {
                "trim" => t.trim().to_string(),
                "lower" => t.to_lowercase(),
                "upper" => t.to_uppercase(),
                "title" => t,
                "trimSuffix" => t
                    .strip_suffix(arg(0).as_str())
                    .map_or(t.clone(), str::to_string),
                "trimPrefix" => t
                    .strip_prefix(arg(0).as_str())
                    .map_or(t.clone(), str::to_string),
                "trimAll" => t.trim_matches(|c| arg(0).contains(c)).to_string(),
                "trunc" => {
                    let n: i64 = arg(0).parse().unwrap_or(i64::MAX);
                    t.chars()
                        .take(usize::try_from(n).unwrap_or(usize::MAX))
                        .collect()
                }
                _ => t.replace(arg(0).as_str(), arg(1).as_str()),
            };
            V::Text(s, last.path())
        }
        _ => return None,
    })
}

/// Encoders and conversions (`toYaml`, `b64enc`, `int`…): a values subtree becomes its YAML,
/// anything else keeps its text (what matters is the destinations it holds); digests and random
/// values hold none.
fn encoding<'a>(name: &str, args: &[V<'a>]) -> Option<V<'a>> {
    Some(match name {
        "toYaml" | "toJson" | "toPrettyJson" | "toRawJson" | "toString" | "b64enc" | "b64dec"
        | "int" | "int64" | "atoi" | "float64" | "toStrings" | "urlquery" => match &last(args) {
            V::Tree(n, p) if !n.is_scalar() && name.starts_with("to") && name.contains("Json") => {
                V::Text(sprig::json(&last(args)), Some(p.clone()))
            }
            V::Tree(n, p) => V::Text(n.to_yaml(), Some(p.clone())),
            v @ (V::Dict(_) | V::List(_)) if name.contains("Json") => V::Text(sprig::json(v), None),
            v @ (V::Dict(_) | V::List(_)) if name == "toYaml" => match sprig::yaml(v) {
                Some(t) => V::Text(t, None),
                None => V::Unknown(None),
            },
            V::Dict(_) | V::List(_) => V::Unknown(None),
            other => match other.text() {
                Some(t) => V::Text(t, other.path()),
                None => V::Unknown(other.path()),
            },
        },
        "sha256sum" | "sha1sum" | "randAlphaNum" | "randAlpha" | "randNumeric" | "uuidv4"
        | "now" | "date" => V::Text("x".into(), None),
        _ => return None,
    })
}

/// Comparisons, boolean operators and string tests.
fn logic<'a>(name: &str, args: &[V<'a>]) -> Option<V<'a>> {
    Some(match name {
        "eq" | "ne" => {
            let texts: Option<Vec<String>> = args.iter().map(V::text).collect();
            match texts {
                Some(t) if t.len() >= 2 => {
                    let eq = t[1..].iter().any(|x| *x == t[0]);
                    V::Bool(if name == "eq" { eq } else { !eq })
                }
                _ => V::Unknown(None),
            }
        }
        "not" | "empty" => match last(args).truthy() {
            Some(b) => V::Bool(!b),
            None => V::Unknown(None),
        },
        "and" | "or" => {
            let bools: Option<Vec<bool>> = args.iter().map(V::truthy).collect();
            match bools {
                Some(b) => V::Bool(if name == "and" {
                    b.iter().all(|x| *x)
                } else {
                    b.iter().any(|x| *x)
                }),
                None => V::Unknown(None),
            }
        }
        "lt" | "le" | "gt" | "ge" => match (
            args.first().and_then(V::text),
            args.get(1).and_then(V::text),
        ) {
            (Some(a), Some(b)) => {
                // Numbers compare as numbers, anything else as text, like Go's.
                let ord = match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
                    (Ok(x), Ok(y)) => x.partial_cmp(&y),
                    _ => Some(a.cmp(&b)),
                };
                match ord {
                    Some(o) => V::Bool(match name {
                        "lt" => o.is_lt(),
                        "le" => o.is_le(),
                        "gt" => o.is_gt(),
                        _ => o.is_ge(),
                    }),
                    None => V::Unknown(None),
                }
            }
            _ => V::Unknown(None),
        },
        "contains" | "hasPrefix" | "hasSuffix" => match (
            args.first().and_then(V::text),
            args.get(1).and_then(V::text),
        ) {
            (Some(a), Some(b)) => V::Bool(match name {
                "contains" => b.contains(&a),
                "hasPrefix" => b.starts_with(&a),
                _ => b.ends_with(&a),
            }),
            _ => V::Unknown(None),
        },
        _ => return None,
    })
}

/// Lookups in maps and lists: `hasKey`, `get` and `index`.
fn collections<'a>(name: &str, args: &[V<'a>]) -> Option<V<'a>> {
    Some(match name {
        "hasKey" => match (args.first(), args.get(1).and_then(V::text)) {
            (Some(V::Tree(n, _)), Some(k)) => V::Bool(n.get(&k).is_some()),
            (Some(V::Dict(d)), Some(k)) => V::Bool(d.iter().any(|(dk, _)| *dk == k)),
            (Some(V::Nil(_)), Some(_)) => V::Bool(false),
            _ => V::Unknown(None),
        },
        "get" | "index" => {
            let mut cur = args.first().cloned().unwrap_or(V::Nil(None));
            for k in args.iter().skip(1) {
                let Some(k) = k.text() else {
                    return Some(V::Unknown(None));
                };
                cur = match cur {
                    V::Tree(n, p) if n.is_seq() => {
                        match k.parse::<usize>().ok().and_then(|i| n.item(i)) {
                            Some(item) => V::Tree(item, format!("{p}[{k}]")),
                            None => V::Nil(Some(format!("{p}[{k}]"))),
                        }
                    }
                    V::Tree(n, p) => match n.get(&k) {
                        Some(item) => V::Tree(item, format!("{p}.{k}")),
                        None => V::Nil(Some(format!("{p}.{k}"))),
                    },
                    V::Dict(d) => d
                        .into_iter()
                        .find(|(dk, _)| *dk == k)
                        .map_or(V::Nil(None), |(_, v)| v),
                    V::List(l) => k
                        .parse::<usize>()
                        .ok()
                        .and_then(|i| l.into_iter().nth(i))
                        .unwrap_or(V::Nil(None)),
                    V::Nil(p) => V::Nil(p),
                    _ => V::Unknown(None),
                };
            }
            cur
        }
        _ => return None,
    })
}

/// `$x := pipeline` or `$x = pipeline` → (`$x`, pipeline).
fn assignment(expr: &str) -> Option<(String, &str)> {
    if !expr.starts_with('$') {
        return None;
    }
    let (lhs, rhs) = expr.split_once(":=").or_else(|| expr.split_once(" = "))?;
    let name = lhs.trim();
    if name.contains(char::is_whitespace) || name.contains('.') {
        return None;
    }
    Some((name.to_string(), rhs.trim()))
}

/// Split on `sep` outside quotes and parentheses.
fn split_top(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut q, mut start) = (0i32, None::<char>, 0);
    let mut prev = ' ';
    for (i, c) in s.char_indices() {
        match (q, c) {
            (Some(qc), c) if c == qc && (prev != '\\' || qc == '`') => q = None,
            (Some(_), _) => {}
            (None, '"' | '`') => q = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => depth -= 1,
            (None, c) if c == sep && depth == 0 => {
                out.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
        prev = c;
    }
    out.push(&s[start..]);
    out
}

/// The index of the `)` that closes the group `w` opens with (quotes skipped); the last index
/// when it is not closed.
fn group_end(w: &str) -> usize {
    let (mut depth, mut q) = (0i32, None::<u8>);
    let b = w.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match (q, b[i]) {
            (Some(b'"'), b'\\') => i += 1,
            (Some(qc), c) if c == qc => q = None,
            (Some(_), _) => {}
            (None, c @ (b'"' | b'`')) => q = Some(c),
            (None, b'(') => depth += 1,
            (None, b')') => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
        i += 1;
    }
    b.len().saturating_sub(1)
}

/// An `include NAME CTX | fromYaml | toYaml` pipeline, maybe ending in `nindent N` or
/// `indent N`.
struct RoundTrip<'e> {
    /// The template name operand.
    name: &'e str,
    /// The context operand.
    ctx: &'e str,
    /// Spaces before every line.
    indent: usize,
    /// A newline before the text (`nindent`).
    newline: bool,
}

fn round_trip(expr: &str) -> Option<RoundTrip<'_>> {
    if !expr.contains("fromYaml") {
        return None;
    }
    let cmds: Vec<&str> = split_top(expr, '|').into_iter().map(str::trim).collect();
    let [include, "fromYaml", "toYaml", rest @ ..] = cmds.as_slice() else {
        return None;
    };
    let head: Vec<&str> = include.split_whitespace().collect();
    let ["include", name, ctx] = head.as_slice() else {
        return None;
    };
    // The words of `include` are an operand each: no spaces inside (`(dict …)` is not this).
    let (indent, newline) = match rest {
        [] => (0, false),
        [one] => match one.split_whitespace().collect::<Vec<_>>().as_slice() {
            [f @ ("nindent" | "indent"), n] => (n.parse().ok()?, *f == "nindent"),
            _ => return None,
        },
        _ => return None,
    };
    Some(RoundTrip {
        name,
        ctx,
        indent,
        newline,
    })
}

/// The pieces of an included text moved to the action at `line`: the least indentation of
/// its lines removed and `rt`'s added, as `toYaml | nindent N` lays them out. Each piece keeps
/// its values path, reach and whether it is literal text; newlines become pieces of their own,
/// so no literal piece spans lines and every line is at `line`.
fn reindent<'t>(
    pieces: Vec<Piece<'_>>,
    rt: &RoundTrip<'_>,
    line: usize,
    reach: Reach,
    out: &mut Vec<Piece<'t>>,
) {
    let text: String = pieces
        .iter()
        .filter(|p| !p.commented)
        .map(|p| p.text.as_ref())
        .collect();
    let strip = text
        .split('\n')
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start_matches(' ').len())
        .min()
        .unwrap_or(0);
    let pad = " ".repeat(rt.indent);
    // A part of `like`'s text (`part`), or a newline and indentation in its place.
    let piece = |text: String, part: bool, like: &Piece<'_>| Piece {
        text: text.into(),
        line,
        path: like.path.clone().filter(|_| part),
        unresolved: like.unresolved && part,
        commented: like.commented,
        literal: like.literal && part,
        reach: like.reach,
    };
    let start = Piece {
        text: "".into(),
        line,
        path: None,
        unresolved: false,
        commented: false,
        literal: false,
        reach,
    };
    let first = format!("{}{pad}", if rt.newline { "\n" } else { "" });
    out.push(piece(first, false, &start));
    // Spaces still to remove at the start of the current line.
    let mut to_strip = strip;
    for p in &pieces {
        for (k, part) in p.text.split('\n').enumerate() {
            if k > 0 {
                out.push(piece(format!("\n{pad}"), false, p));
                to_strip = strip;
            }
            let lead = part.len() - part.trim_start_matches(' ').len();
            let cut = lead.min(to_strip);
            to_strip = if cut == part.len() { to_strip - cut } else { 0 };
            if cut < part.len() {
                out.push(piece(part[cut..].to_string(), true, p));
            }
        }
    }
}

/// Split a command into words, keeping quoted strings and parenthesised groups whole.
fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut depth, mut q) = (0i32, None::<char>);
    let mut prev = ' ';
    for c in s.chars() {
        match (q, c) {
            (Some(qc), c) if c == qc && (prev != '\\' || qc == '`') => {
                q = None;
                cur.push(c);
            }
            (Some(_), c) => cur.push(c),
            (None, '"' | '`') => {
                q = Some(c);
                cur.push(c);
            }
            (None, '(') => {
                depth += 1;
                cur.push(c);
            }
            (None, ')') => {
                depth -= 1;
                cur.push(c);
            }
            (None, c) if c.is_whitespace() && depth == 0 => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            (None, c) => cur.push(c),
        }
        prev = c;
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Go's `printf` for the verbs charts use (`%s`, `%d`, `%v`, `%q`, `%%`).
fn sprintf(fmt: &str, args: &[String]) -> String {
    let mut out = String::new();
    let mut it = fmt.chars().peekable();
    let mut i = 0;
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        // Skip flags and width.
        while it
            .peek()
            .is_some_and(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | '#' | ' '))
        {
            it.next();
        }
        match it.next() {
            Some('%') => out.push('%'),
            Some('q') => {
                out.push('"');
                out.push_str(args.get(i).map_or("", String::as_str));
                out.push('"');
                i += 1;
            }
            Some(_) => {
                out.push_str(args.get(i).map_or("", String::as_str));
                i += 1;
            }
            None => out.push('%'),
        }
    }
    out
}

/// One piece of a rendered line: its byte range in the line and where it came from.
#[derive(Debug, Clone, Copy)]
pub struct Seg {
    /// Start of the piece in the line's text.
    pub start: usize,
    /// End of the piece (exclusive).
    pub end: usize,
    /// Index of its `.Values` path in [`Rendered`]'s paths.
    path: Option<usize>,
    /// The piece is [`MARKER`]: an action that could not be computed.
    pub unresolved: bool,
    /// The piece is a template comment.
    pub commented: bool,
}

/// Where one line is in [`Rendered`]'s buffers.
#[derive(Debug, Clone)]
struct LineSpan {
    text: std::ops::Range<usize>,
    line: usize,
    segs: std::ops::Range<usize>,
}

/// Rendered output cut into lines, each mapped back to the template: the text of every line
/// in one buffer and the pieces of every line in one list, so that a line costs no allocation.
/// Lines that are blank are left out.
#[derive(Debug, Default)]
pub struct Rendered {
    text: String,
    lines: Vec<LineSpan>,
    segs: Vec<Seg>,
    paths: Vec<String>,
}

/// A line of rendered output.
#[derive(Debug, Clone, Copy)]
pub struct RenderedLine<'r> {
    /// The rendered text.
    pub text: &'r str,
    /// 1-based template line of its first non-blank piece.
    pub line: usize,
    /// The pieces of the line, in order.
    pub segs: &'r [Seg],
    paths: &'r [String],
}

impl<'r> RenderedLine<'r> {
    /// The `.Values` path a piece of this line came from.
    pub fn path(&self, seg: &Seg) -> Option<&'r str> {
        seg.path.and_then(|i| self.paths.get(i)).map(String::as_str)
    }
}

impl Rendered {
    /// Cuts rendered pieces into lines and adds them, remembering which template line and
    /// values path each part of each line came from.
    pub fn assemble(&mut self, pieces: Vec<Piece<'_>>) {
        let mut start = self.text.len();
        let mut seg_start = self.segs.len();
        let mut src = 0;
        let mut have_line = false;
        for p in pieces {
            let path = p.path.map(|path| {
                self.paths.push(path);
                self.paths.len() - 1
            });
            for (k, part) in p.text.split('\n').enumerate() {
                if k > 0 {
                    self.end_line(start, seg_start, src);
                    start = self.text.len();
                    seg_start = self.segs.len();
                    src = 0;
                    have_line = false;
                }
                if !have_line && !part.trim().is_empty() {
                    src = if p.literal { p.line + k } else { p.line };
                    have_line = true;
                }
                if !part.is_empty() {
                    let from = self.text.len() - start;
                    self.text.push_str(part);
                    self.segs.push(Seg {
                        start: from,
                        end: self.text.len() - start,
                        path,
                        unresolved: p.unresolved,
                        commented: p.commented,
                    });
                }
            }
        }
        self.end_line(start, seg_start, src);
    }

    /// Ends the line that starts at `start` in the text buffer: kept unless it is blank.
    fn end_line(&mut self, start: usize, seg_start: usize, line: usize) {
        if self.text[start..].trim().is_empty() {
            self.text.truncate(start);
            self.segs.truncate(seg_start);
        } else {
            self.lines.push(LineSpan {
                text: start..self.text.len(),
                line,
                segs: seg_start..self.segs.len(),
            });
        }
    }

    /// The lines, in order.
    pub fn lines(&self) -> impl Iterator<Item = RenderedLine<'_>> {
        self.lines.iter().map(|l| RenderedLine {
            text: &self.text[l.text.clone()],
            line: l.line,
            segs: &self.segs[l.segs.clone()],
            paths: &self.paths,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::values::load;

    /// `src` rendered as Helm renders it (the branches the values select).
    fn value(values: &str, helpers: &str, src: &str) -> Option<String> {
        let mut v = Values::empty();
        v.layer("values.yaml", &load(values).unwrap());
        let defines = parse(helpers).unwrap().defines.into_iter().collect();
        let env = Env {
            values: &v,
            defines: &defines,
            chart_name: "c",
            chart_version: "0.1.0",
            app_version: "v3.7.1",
            cache: Default::default(),
        };
        env.render_text(src)
    }

    #[test]
    fn fields_of_a_group_comparisons_and_versions() {
        let values = "tag: \"v3.2.0@sha256:ab\"\nports:\n  web:\n    port: 8000\nname: abc\n";
        let cases = [
            (r#"{{ (split "@" .Values.tag)._0 }}"#, "v3.2.0"),
            (r#"{{ (split "@" .Values.tag)._1 }}"#, "sha256:ab"),
            ("{{ (.Values.ports.web).port }}", "8000"),
            ("{{ (.Values.ports.none).port }}", ""),
            ("{{ (semver .Chart.AppVersion).Minor }}", "7"),
            (
                r#"{{ printf ">=%d.0.0-0" (add1 (int (semver "3.1.0").Major)) }}"#,
                ">=4.0.0-0",
            ),
            ("{{ ge (len .Values.name) 3 }}", "true"),
            ("{{ lt (len .Values.name) 3 }}", "false"),
            (r#"{{ gt "b" "a" }}"#, "true"),
            ("{{ le 10 9 }}", "false"),
        ];
        for (src, want) in cases {
            assert_eq!(value(values, "", src).as_deref(), Some(want), "{src}");
        }
    }

    #[test]
    fn dollar_in_a_named_template_is_its_argument() {
        let helpers = r#"{{- define "x" -}}{{ $.name }}-{{ .name }}{{- end -}}"#;
        let got = value("{}", helpers, r#"{{ include "x" (dict "name" "n") }}"#);
        assert_eq!(got.as_deref(), Some("n-n"));
    }

    #[test]
    fn from_yaml_reads_a_mapping_only() {
        let cases = [
            (r#"{{ "a: b" | fromYaml | toYaml }}"#, Some("a: b")),
            (r#"{{ "" | fromYaml | toYaml }}"#, Some("{}")),
            (r#"{{ "- a" | fromYaml | toYaml }}"#, None),
            (r#"{{ "- a" | fromYamlArray | toYaml }}"#, Some("- a")),
            (r#"{{ "a: 1" | fromYamlArray | toYaml }}"#, None),
        ];
        for (src, want) in cases {
            assert_eq!(value("{}", "", src).as_deref(), want, "{src}");
        }
    }
}
