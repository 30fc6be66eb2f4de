//! The Sprig and Helm functions of chart templates that build and query collections, do
//! arithmetic, match regular expressions and compare versions: `dict`, `list`, `set`, `omit`,
//! `merge`, `until`, `splitList`, `regexReplaceAll`, `semver`, `semverCompare`, `fromYaml`… A function
//! that cannot be computed answers [`V::Unknown`]; `lookup` (a live cluster query) always does.

use std::cell::RefCell;
use std::collections::HashMap;

use serde_json::Value as Json;

use super::template::V;
use super::values::Value;

/// Most items `until`, `untilStep` and `seq` build.
const MAX_ITEMS: i64 = 4096;

/// Calls `name`; `None` when it is not one of these functions.
pub(super) fn call<'a>(name: &str, args: &[V<'a>]) -> Option<V<'a>> {
    maps(name, args)
        .or_else(|| lists(name, args))
        .or_else(|| sequences(name, args))
        .or_else(|| numbers(name, args))
        .or_else(|| text(name, args))
}

fn unknown<'a>() -> V<'a> {
    V::Unknown(None)
}

fn arg_text(args: &[V<'_>], i: usize) -> Option<String> {
    args.get(i).and_then(V::text)
}

/// A map's entries, for a built map, a values mapping or nil.
pub(super) fn to_dict<'a>(v: &V<'a>) -> Option<Vec<(String, V<'a>)>> {
    match v {
        V::Dict(d) => Some(d.clone()),
        V::Tree(n, p) => match n.value() {
            Value::Map(m) => Some(
                m.into_iter()
                    .map(|(k, c)| (k.to_string(), V::Tree(c, format!("{p}.{k}"))))
                    .collect(),
            ),
            Value::Null => Some(Vec::new()),
            _ => None,
        },
        V::Nil(_) => Some(Vec::new()),
        _ => None,
    }
}

/// A list's items, for a built list, a values sequence or nil.
pub(super) fn to_list<'a>(v: &V<'a>) -> Option<Vec<V<'a>>> {
    match v {
        V::List(l) => Some(l.clone()),
        V::Tree(n, p) => match n.value() {
            Value::Seq(s) => Some(
                s.into_iter()
                    .enumerate()
                    .map(|(i, c)| V::Tree(c, format!("{p}[{i}]")))
                    .collect(),
            ),
            Value::Null => Some(Vec::new()),
            _ => None,
        },
        V::Nil(_) => Some(Vec::new()),
        _ => None,
    }
}

fn insert<'a>(d: &mut Vec<(String, V<'a>)>, k: String, v: V<'a>) {
    match d.binary_search_by(|(dk, _)| dk.as_str().cmp(&k)) {
        Ok(i) => d[i].1 = v,
        Err(i) => d.insert(i, (k, v)),
    }
}

fn sorted<'a>(mut d: Vec<(String, V<'a>)>) -> Vec<(String, V<'a>)> {
    d.sort_by(|a, b| a.0.cmp(&b.0));
    d
}

/// Deep merge: keys of `over` missing from `base` are added; maps merge recursively.
fn merge_into<'a>(base: &mut Vec<(String, V<'a>)>, over: Vec<(String, V<'a>)>, overwrite: bool) {
    for (k, v) in over {
        match base.iter_mut().find(|(bk, _)| *bk == k) {
            Some((_, b)) => match (to_dict(b), to_dict(&v)) {
                (Some(mut bd), Some(od))
                    if matches!(b, V::Dict(_) | V::Tree(..))
                        && matches!(v, V::Dict(_) | V::Tree(..)) =>
                {
                    merge_into(&mut bd, od, overwrite);
                    *b = V::Dict(sorted(bd));
                }
                _ if overwrite => *b = v,
                _ => {}
            },
            None => insert(base, k, v),
        }
    }
}

fn maps<'a>(name: &str, args: &[V<'a>]) -> Option<V<'a>> {
    Some(match name {
        "dict" => {
            let mut d = Vec::new();
            for pair in args.chunks(2) {
                let Some(k) = pair[0].text() else {
                    return Some(unknown());
                };
                insert(&mut d, k, pair.get(1).cloned().unwrap_or(V::Nil(None)));
            }
            V::Dict(d)
        }
        "set" | "unset" => {
            let (Some(mut d), Some(k)) = (args.first().and_then(to_dict), arg_text(args, 1)) else {
                return Some(unknown());
            };
            if name == "set" {
                insert(&mut d, k, args.get(2).cloned().unwrap_or(V::Nil(None)));
            } else {
                d.retain(|(dk, _)| *dk != k);
            }
            V::Dict(sorted(d))
        }
        "omit" | "pick" => {
            let Some(d) = args.first().and_then(to_dict) else {
                return Some(unknown());
            };
            let keys: Vec<String> = args[1..].iter().filter_map(V::text).collect();
            V::Dict(sorted(
                d.into_iter()
                    .filter(|(k, _)| keys.contains(k) == (name == "pick"))
                    .collect(),
            ))
        }
        "merge" | "mustMerge" | "mergeOverwrite" | "mustMergeOverwrite" => {
            let Some(mut d) = args.first().and_then(to_dict) else {
                return Some(unknown());
            };
            for a in &args[1..] {
                let Some(o) = to_dict(a) else {
                    return Some(unknown());
                };
                merge_into(&mut d, o, name.contains("Overwrite"));
            }
            V::Dict(sorted(d))
        }
        "deepCopy" | "mustDeepCopy" => args.last().cloned().unwrap_or(V::Nil(None)),
        "keys" => {
            let mut out = Vec::new();
            for a in args {
                let Some(d) = to_dict(a) else {
                    return Some(unknown());
                };
                out.extend(d.into_iter().map(|(k, _)| V::Text(k, None)));
            }
            V::List(out)
        }
        "values" => match args.first().and_then(to_dict) {
            Some(d) => V::List(d.into_iter().map(|(_, v)| v).collect()),
            None => unknown(),
        },
        "fromYaml" | "fromJson" | "fromYamlArray" | "fromJsonArray" => {
            let Some(t) = arg_text(args, 0) else {
                return Some(unknown());
            };
            let parsed: Option<Json> = if name.contains("Json") {
                serde_json::from_str(&t).ok()
            } else {
                serde_saphyr::from_str(&t).ok()
            };
            // Helm's `fromYaml`/`fromJson` read into a map (an empty document is an empty
            // map) and the `…Array` forms into a list; anything else is an error entry.
            match (parsed, name.ends_with("Array")) {
                (Some(Json::Null), false) => V::Dict(Vec::new()),
                (Some(j @ Json::Object(_)), false) | (Some(j @ Json::Array(_)), true) => {
                    from_json(j)
                }
                _ => unknown(),
            }
        }
        "lookup" => unknown(),
        _ => return None,
    })
}

fn lists<'a>(name: &str, args: &[V<'a>]) -> Option<V<'a>> {
    Some(match name {
        "list" | "tuple" => V::List(args.to_vec()),
        "append" | "mustAppend" | "push" => match args.first().and_then(to_list) {
            Some(mut l) => {
                l.extend(args.get(1).cloned());
                V::List(l)
            }
            None => unknown(),
        },
        "prepend" | "mustPrepend" => match args.first().and_then(to_list) {
            Some(mut l) => {
                if let Some(v) = args.get(1) {
                    l.insert(0, v.clone());
                }
                V::List(l)
            }
            None => unknown(),
        },
        "concat" => {
            let mut out = Vec::new();
            for a in args {
                let Some(l) = to_list(a) else {
                    return Some(unknown());
                };
                out.extend(l);
            }
            V::List(out)
        }
        "first" | "last" | "rest" | "initial" | "reverse" | "compact" | "uniq" | "sortAlpha" => {
            let Some(l) = args.last().and_then(to_list) else {
                return Some(unknown());
            };
            match name {
                "first" => l.into_iter().next().unwrap_or(V::Nil(None)),
                "last" => l.into_iter().last().unwrap_or(V::Nil(None)),
                "rest" => V::List(l.into_iter().skip(1).collect()),
                "initial" => {
                    let n = l.len().saturating_sub(1);
                    V::List(l.into_iter().take(n).collect())
                }
                "reverse" => V::List(l.into_iter().rev().collect()),
                "compact" => V::List(
                    l.into_iter()
                        .filter(|v| v.truthy() != Some(false))
                        .collect(),
                ),
                _ => {
                    let Some(mut t) = l.iter().map(V::text).collect::<Option<Vec<String>>>() else {
                        return Some(unknown());
                    };
                    if name == "sortAlpha" {
                        t.sort();
                    } else {
                        let mut seen = std::collections::HashSet::new();
                        t.retain(|x| seen.insert(x.clone()));
                    }
                    V::List(t.into_iter().map(|x| V::Text(x, None)).collect())
                }
            }
        }
        "has" => match (
            args.first().and_then(V::text),
            args.get(1).and_then(to_list),
        ) {
            (Some(x), Some(l)) => {
                V::Bool(l.iter().any(|v| v.text().as_deref() == Some(x.as_str())))
            }
            _ => unknown(),
        },
        _ => return None,
    })
}

/// Counting, splitting, joining and measuring.
fn sequences<'a>(name: &str, args: &[V<'a>]) -> Option<V<'a>> {
    Some(match name {
        "until" | "untilStep" | "seq" => {
            let n: Vec<i64> = args
                .iter()
                .filter_map(|a| a.text().and_then(|t| t.trim().parse().ok()))
                .collect();
            if n.len() != args.len() {
                return Some(unknown());
            }
            let (start, stop, step) = match (name, n.as_slice()) {
                ("until", [stop]) => (0, *stop, 1),
                ("untilStep", [a, b, c]) => (*a, *b, *c),
                ("seq", [stop]) => (1, *stop + 1, 1),
                ("seq", [a, b]) => (*a, *b + 1, 1),
                ("seq", [a, s, b]) => (*a, *b + s.signum(), *s),
                _ => return Some(unknown()),
            };
            if step == 0 || (stop - start) / step > MAX_ITEMS {
                return Some(unknown());
            }
            let mut out = Vec::new();
            let mut i = start;
            while (step > 0 && i < stop) || (step < 0 && i > stop) {
                out.push(V::Text(i.to_string(), None));
                i += step;
            }
            if name == "seq" {
                let t: Vec<String> = out.iter().filter_map(V::text).collect();
                V::Text(t.join(" "), None)
            } else {
                V::List(out)
            }
        }
        "splitList" | "split" | "splitn" | "regexSplit" => {
            let sep = arg_text(args, 0).unwrap_or_default();
            let Some(t) = args.last().and_then(V::text) else {
                return Some(unknown());
            };
            let parts: Vec<String> = if name == "regexSplit" {
                match regex(&sep) {
                    Some(re) => re.split(&t).map(str::to_string).collect(),
                    None => return Some(unknown()),
                }
            } else {
                t.split(sep.as_str()).map(str::to_string).collect()
            };
            if name == "split" || name == "splitn" {
                V::Dict(sorted(
                    parts
                        .into_iter()
                        .enumerate()
                        .map(|(i, p)| (format!("_{i}"), V::Text(p, None)))
                        .collect(),
                ))
            } else {
                V::List(parts.into_iter().map(|p| V::Text(p, None)).collect())
            }
        }
        "join" => {
            let sep = arg_text(args, 0).unwrap_or_default();
            let path = args.last().and_then(V::path);
            let items = match args.last() {
                Some(v) => to_list(v).unwrap_or_else(|| vec![v.clone()]),
                None => Vec::new(),
            };
            let texts: Vec<String> = items
                .iter()
                .map(|v| {
                    v.text()
                        .unwrap_or_else(|| super::finder::MARKER.to_string())
                })
                .collect();
            V::Text(texts.join(&sep), path)
        }
        "len" => match args.last() {
            Some(v) => match (to_list(v), to_dict(v), v.text()) {
                (Some(l), _, _) => V::Text(l.len().to_string(), None),
                (_, Some(d), _) => V::Text(d.len().to_string(), None),
                (_, _, Some(t)) => V::Text(t.chars().count().to_string(), None),
                _ => unknown(),
            },
            None => unknown(),
        },
        _ => return None,
    })
}

fn numbers<'a>(name: &str, args: &[V<'a>]) -> Option<V<'a>> {
    let op: fn(i64, i64) -> Option<i64> = match name {
        "add" | "add1" => |a, b| a.checked_add(b),
        "sub" => |a, b| a.checked_sub(b),
        "mul" => |a, b| a.checked_mul(b),
        "div" => |a, b| a.checked_div(b),
        "mod" => |a, b| a.checked_rem(b),
        "max" => |a, b| Some(a.max(b)),
        "min" => |a, b| Some(a.min(b)),
        _ => return None,
    };
    let mut n: Vec<i64> = Vec::new();
    for a in args {
        let Some(x) = a.text().and_then(|t| {
            let t = t.trim();
            t.parse::<i64>()
                .ok()
                .or_else(|| t.parse::<f64>().ok().map(|f| f as i64))
        }) else {
            return Some(unknown());
        };
        n.push(x);
    }
    if name == "add1" {
        n.push(1);
    }
    let mut it = n.into_iter();
    let Some(first) = it.next() else {
        return Some(unknown());
    };
    Some(
        it.try_fold(first, op)
            .map_or_else(unknown, |r| V::Text(r.to_string(), None)),
    )
}

fn text<'a>(name: &str, args: &[V<'a>]) -> Option<V<'a>> {
    Some(match name {
        "regexReplaceAll"
        | "regexReplaceAllLiteral"
        | "regexMatch"
        | "regexFind"
        | "regexFindAll"
        | "mustRegexReplaceAll"
        | "mustRegexMatch" => {
            let (Some(re), Some(s)) = (arg_text(args, 0), arg_text(args, 1)) else {
                return Some(unknown());
            };
            let Some(re) = regex(&re) else {
                return Some(unknown());
            };
            let path = args.get(1).and_then(V::path);
            match name {
                "regexMatch" | "mustRegexMatch" => V::Bool(re.is_match(&s)),
                "regexFind" => V::Text(re.find(&s).map_or("", |m| m.as_str()).to_string(), path),
                "regexFindAll" => V::List(
                    re.find_iter(&s)
                        .map(|m| V::Text(m.as_str().to_string(), path.clone()))
                        .collect(),
                ),
                _ => {
                    let rep = arg_text(args, 2).unwrap_or_default();
                    let out = if name == "regexReplaceAllLiteral" {
                        re.replace_all(&s, regex::NoExpand(&rep)).into_owned()
                    } else {
                        re.replace_all(&s, rep.as_str()).into_owned()
                    };
                    V::Text(out, path)
                }
            }
        }
        "semver" | "mustSemver" => match arg_text(args, 0).as_deref().and_then(semver) {
            Some(d) => V::Dict(d),
            None => unknown(),
        },
        "semverCompare" => match (arg_text(args, 0), arg_text(args, 1)) {
            (Some(c), Some(v)) => semver_compare(&c, &v).map_or_else(unknown, V::Bool),
            _ => unknown(),
        },
        "nospace" | "repeat" | "substr" => {
            let Some(t) = args.last().and_then(V::text) else {
                return Some(unknown());
            };
            let num = |i: usize| arg_text(args, i).and_then(|x| x.parse::<i64>().ok());
            let path = args.last().and_then(V::path);
            match name {
                "nospace" => V::Text(t.split_whitespace().collect(), path),
                "repeat" => V::Text(
                    t.repeat(usize::try_from(num(0).unwrap_or(0).clamp(0, 1024)).unwrap_or(0)),
                    path,
                ),
                _ => {
                    let len = i64::try_from(t.chars().count()).unwrap_or(0);
                    let a = num(0).unwrap_or(0).clamp(0, len);
                    let b = num(1).map_or(len, |b| if b < 0 { len } else { b.min(len) });
                    V::Text(
                        t.chars()
                            .skip(usize::try_from(a).unwrap_or(0))
                            .take(usize::try_from((b - a).max(0)).unwrap_or(0))
                            .collect(),
                        path,
                    )
                }
            }
        }
        "kindIs" | "typeIs" => match (arg_text(args, 0), args.get(1)) {
            (Some(k), Some(v)) => kind_of(v).map_or_else(unknown, |got| V::Bool(got == k)),
            _ => unknown(),
        },
        "kindOf" | "typeOf" => args
            .first()
            .and_then(kind_of)
            .map_or_else(unknown, |k| V::Text(k.into(), None)),
        "fail" => unknown(),
        _ => return None,
    })
}

fn kind_of(v: &V<'_>) -> Option<&'static str> {
    Some(match v {
        V::Dict(_) => "map",
        V::List(_) => "slice",
        V::Bool(_) => "bool",
        V::Text(..) => "string",
        V::Nil(_) => "invalid",
        V::Tree(n, _) => match n.value() {
            Value::Map(_) => "map",
            Value::Seq(_) => "slice",
            Value::Bool(_) => "bool",
            Value::Str(_) => "string",
            Value::Null => "invalid",
        },
        V::Root | V::Unknown(_) => return None,
    })
}

/// A compiled regular expression, cached per thread: templates call the same few patterns
/// many times.
fn regex(pattern: &str) -> Option<regex::Regex> {
    thread_local! {
        static CACHE: RefCell<HashMap<String, Option<regex::Regex>>> = RefCell::new(HashMap::new());
    }
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if let Some(hit) = c.get(pattern) {
            return hit.clone();
        }
        if c.len() >= 256 {
            c.clear();
        }
        let re = regex::RegexBuilder::new(pattern)
            .size_limit(1 << 20)
            .build()
            .ok();
        c.insert(pattern.to_string(), re.clone());
        re
    })
}

/// `major.minor.patch` of a version (`v1.31.0`, `1.21.0-0`, `1.21`).
fn version(v: &str) -> Option<[u64; 3]> {
    let v = v.trim().trim_start_matches(['v', 'V', '=']);
    let core = v.split(['-', '+']).next()?;
    let mut out = [0u64; 3];
    for (i, part) in core.split('.').enumerate().take(3) {
        if matches!(part, "x" | "X" | "*") {
            break;
        }
        out[i] = part.parse().ok()?;
    }
    Some(out)
}

/// Sprig's `semver VERSION`: the parts templates read (`(semver .v).Major`), keys in Go's
/// sorted order; `None` when `v` is not a version.
fn semver<'a>(v: &str) -> Option<Vec<(String, V<'a>)>> {
    let [major, minor, patch] = version(v)?;
    let rest = v.trim().trim_start_matches(['v', 'V', '=']);
    let (rest, metadata) = rest.split_once('+').unwrap_or((rest, ""));
    let prerelease = rest.split_once('-').map_or("", |(_, p)| p);
    let text = |s: String| V::Text(s, None);
    Some(vec![
        ("Major".into(), text(major.to_string())),
        ("Metadata".into(), text(metadata.to_string())),
        ("Minor".into(), text(minor.to_string())),
        ("Original".into(), text(v.to_string())),
        ("Patch".into(), text(patch.to_string())),
        ("Prerelease".into(), text(prerelease.to_string())),
    ])
}

/// Helm's `semverCompare CONSTRAINT VERSION` for the constraints charts write: comparisons
/// joined by `,` or spaces (and), `||` (or), `~` and `^`.
fn semver_compare(constraint: &str, v: &str) -> Option<bool> {
    let have = version(v)?;
    let mut any = false;
    for alt in constraint.split("||") {
        let mut all = true;
        let mut toks: Vec<String> = Vec::new();
        for t in alt.split([',', ' ']).filter(|t| !t.is_empty()) {
            match toks.last_mut() {
                Some(last) if last.chars().all(|c| "<>=!~^".contains(c)) => last.push_str(t),
                _ => toks.push(t.to_string()),
            }
        }
        for t in toks {
            let op_len = t.len() - t.trim_start_matches(|c| "<>=!~^".contains(c)).len();
            let (op, want) = t.split_at(op_len);
            let want = version(want)?;
            let ok = match op {
                ">=" => have >= want,
                ">" => have > want,
                "<=" => have <= want,
                "<" => have < want,
                "!=" => have != want,
                "~" => have >= want && have[..2] == want[..2],
                "^" => have >= want && have[0] == want[0],
                _ => have == want,
            };
            all &= ok;
        }
        any |= all;
    }
    Some(any)
}

/// A JSON value as a template value.
fn from_json<'a>(j: Json) -> V<'a> {
    match j {
        Json::Null => V::Nil(None),
        Json::Bool(b) => V::Bool(b),
        Json::Number(n) => V::Text(n.to_string(), None),
        Json::String(s) => V::Text(s, None),
        Json::Array(a) => V::List(a.into_iter().map(from_json).collect()),
        Json::Object(o) => V::Dict(sorted(
            o.into_iter().map(|(k, v)| (k, from_json(v))).collect(),
        )),
    }
}

/// A template value as JSON; what cannot be computed becomes null.
fn to_json(v: &V<'_>) -> Json {
    if let Some(d) = match v {
        V::Dict(_) => to_dict(v),
        V::Tree(n, _) if n.is_map() => to_dict(v),
        _ => None,
    } {
        return Json::Object(d.iter().map(|(k, x)| (k.clone(), to_json(x))).collect());
    }
    if let Some(l) = match v {
        V::List(_) => to_list(v),
        V::Tree(n, _) if n.is_seq() => to_list(v),
        _ => None,
    } {
        return Json::Array(l.iter().map(to_json).collect());
    }
    match v {
        V::Bool(b) => Json::Bool(*b),
        V::Tree(n, _) => match n.value() {
            Value::Bool(b) => Json::Bool(b),
            Value::Null => Json::Null,
            _ => n.as_text().map_or(Json::Null, Json::String),
        },
        V::Nil(_) | V::Unknown(_) | V::Root => Json::Null,
        other => other.text().map_or(Json::Null, Json::String),
    }
}

/// `toJson` of a collection.
pub(super) fn json(v: &V<'_>) -> String {
    to_json(v).to_string()
}

/// `toYaml` of a built collection: block YAML; `None` when a part cannot be computed.
pub(super) fn yaml(v: &V<'_>) -> Option<String> {
    let mut out = String::new();
    emit(&to_json(v), 0, &mut out);
    Some(out.trim_end().to_string())
}

fn scalar(j: &Json) -> String {
    match j {
        Json::String(s) => {
            let plain = !s.is_empty()
                && !s.contains(": ")
                && !s.contains(" #")
                && !s.starts_with(|c: char| "!&*-?{}[]|>'\"%@`#,".contains(c) || c.is_whitespace())
                && !matches!(
                    s.as_str(),
                    "true" | "false" | "null" | "yes" | "no" | "on" | "off"
                )
                && s.parse::<f64>().is_err()
                && !s.contains('\n');
            if plain {
                s.clone()
            } else {
                Json::String(s.clone()).to_string()
            }
        }
        Json::Null => "null".into(),
        other => other.to_string(),
    }
}

fn emit(j: &Json, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match j {
        Json::Object(o) if !o.is_empty() => {
            for (k, v) in o {
                match v {
                    Json::Object(x) if !x.is_empty() => {
                        out.push_str(&format!("{pad}{}:\n", scalar(&Json::String(k.clone()))));
                        emit(v, indent + 2, out);
                    }
                    Json::Array(x) if !x.is_empty() => {
                        out.push_str(&format!("{pad}{}:\n", scalar(&Json::String(k.clone()))));
                        emit(v, indent, out);
                    }
                    _ => out.push_str(&format!(
                        "{pad}{}: {}\n",
                        scalar(&Json::String(k.clone())),
                        inline(v)
                    )),
                }
            }
        }
        Json::Array(a) if !a.is_empty() => {
            for v in a {
                match v {
                    Json::Object(x) if !x.is_empty() => {
                        let mut inner = String::new();
                        emit(v, indent + 2, &mut inner);
                        let inner = inner.get(indent + 2..).unwrap_or("");
                        out.push_str(&format!("{pad}- {inner}"));
                    }
                    _ => out.push_str(&format!("{pad}- {}\n", inline(v))),
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", inline(other))),
    }
}

fn inline(j: &Json) -> String {
    match j {
        Json::Object(o) if o.is_empty() => "{}".into(),
        Json::Array(a) if a.is_empty() => "[]".into(),
        Json::Object(_) | Json::Array(_) => j.to_string(),
        other => scalar(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semver_constraints() {
        assert_eq!(semver_compare(">=1.21-0", "v1.31.0"), Some(true));
        assert_eq!(semver_compare("<1.19", "v1.31.0"), Some(false));
        assert_eq!(semver_compare(">= 1.19, < 1.40", "1.31.2"), Some(true));
        assert_eq!(semver_compare("<1.10 || ~1.31", "v1.31.5"), Some(true));
    }

    #[test]
    fn semver_parts() {
        let d = semver("v3.7.1-rc.2+build").unwrap();
        let get = |k: &str| d.iter().find(|(n, _)| n == k).and_then(|(_, v)| v.text());
        assert_eq!(get("Major").as_deref(), Some("3"));
        assert_eq!(get("Minor").as_deref(), Some("7"));
        assert_eq!(get("Patch").as_deref(), Some("1"));
        assert_eq!(get("Prerelease").as_deref(), Some("rc.2"));
        assert_eq!(get("Metadata").as_deref(), Some("build"));
        assert!(semver("latest").is_none());
    }

    #[test]
    fn yaml_of_a_built_map() {
        let v = V::Dict(vec![
            ("a".into(), V::Text("x: y".into(), None)),
            ("b".into(), V::List(vec![V::Text("1".into(), None)])),
        ]);
        assert_eq!(yaml(&v).as_deref(), Some("a: \"x: y\"\nb:\n- \"1\""));
    }
}
