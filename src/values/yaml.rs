//! Exact scanning of scalar tokens in the original text of a values file, and writing values
//! back in a scalar's own style.
//!
//! The [`Tree`](super::tree::Tree) keeps where each node starts (its anchor or tag included);
//! [`scalar_token`] re-scans the token from there and checks that what it found decodes to the
//! value the parser produced, so an edit never lands on bytes that are not that scalar.

use std::ops::Range;

use granit_parser::ScalarStyle;

use super::tree::{skip_properties, Kind, Node};

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
