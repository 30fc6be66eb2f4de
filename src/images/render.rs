//! The `image:` lines of a rendered template: the rendering Helm makes with the values given,
//! and the lines only branches those values switch off would add.

use crate::egress::template::{Piece, Reach};

/// One `image:` line of a rendering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageLine {
    /// The value, unquoted, as rendered (may hold the egress marker for what cannot be
    /// computed).
    pub value: String,
    /// 1-based template line of the `image:` key.
    pub line: usize,
    /// The last reach of the pieces that make the line.
    pub reach: Reach,
    /// The value is template text alone: no action, no values key wrote any part of it.
    pub literal: bool,
}

/// A piece of a rendered line.
struct Seg {
    start: usize,
    end: usize,
    line: usize,
    reach: Reach,
    /// Literal template text, with no values path.
    literal: bool,
}

/// A rendered line and where its parts came from.
#[derive(Default)]
struct Line {
    text: String,
    segs: Vec<Seg>,
}

/// Every `image:` line of the pieces: those Helm renders with the values given (every piece
/// that is not [`Reach::Off`], so that an `if`/`else` on one line renders one side), then the
/// lines made only of switched-off pieces.
pub(crate) fn image_lines(pieces: &[Piece<'_>]) -> Vec<ImageLine> {
    let mut out: Vec<ImageLine> = assemble(pieces, |p| p.reach != Reach::Off)
        .iter()
        .filter_map(image_line)
        .collect();
    out.extend(
        assemble(pieces, |_| true)
            .iter()
            .filter(|l| {
                l.segs
                    .iter()
                    .filter(|s| !l.text[s.start..s.end].trim().is_empty())
                    .all(|s| s.reach == Reach::Off)
            })
            .filter_map(image_line),
    );
    out
}

/// Cut the pieces `keep` selects into lines; template comments are not output.
fn assemble(pieces: &[Piece<'_>], keep: impl Fn(&Piece<'_>) -> bool) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut cur = Line::default();
    for p in pieces.iter().filter(|p| !p.commented && keep(p)) {
        for (k, part) in p.text.split('\n').enumerate() {
            if k > 0 {
                lines.push(std::mem::take(&mut cur));
            }
            if part.is_empty() {
                continue;
            }
            let start = cur.text.len();
            cur.text.push_str(part);
            cur.segs.push(Seg {
                start,
                end: cur.text.len(),
                line: if p.literal { p.line + k } else { p.line },
                reach: p.reach,
                literal: p.literal && p.path.is_none(),
            });
        }
    }
    lines.push(cur);
    lines.retain(|l| l.text.contains("image:"));
    lines
}

/// The `image:` key and scalar of a YAML line (`image: x`, `- image: "x"`, a comment after
/// it), as the byte range of the value in the line.
pub(crate) fn image_value(text: &str) -> Option<(usize, usize)> {
    let t = text.trim_start();
    let t = t.strip_prefix('-').map_or(t, str::trim_start);
    let rest = t.strip_prefix("image:")?;
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    let v = rest.trim();
    let at = text.len() - rest.len() + (rest.len() - rest.trim_start().len());
    let (from, len) = match v.chars().next() {
        Some(q @ ('"' | '\'')) => (1, v[1..].find(q)?),
        _ => (0, v.find(" #").unwrap_or(v.len())),
    };
    let value = v[from..from + len].trim();
    if value.is_empty() {
        return None;
    }
    let start = at + from + (v[from..].len() - v[from..].trim_start().len());
    Some((start, start + value.len()))
}

fn image_line(l: &Line) -> Option<ImageLine> {
    let (start, end) = image_value(&l.text)?;
    let key = l.text.find("image:")?;
    let touching: Vec<&Seg> = l
        .segs
        .iter()
        .filter(|s| s.end > key && s.start < end)
        .collect();
    let line = touching.first()?.line;
    Some(ImageLine {
        value: l.text[start..end].to_string(),
        line,
        reach: touching.iter().map(|s| s.reach).max()?,
        literal: touching.iter().filter(|s| s.end > start).all(|s| s.literal),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::template::{parse, Env};
    use crate::egress::values::{load, Values};

    /// An image line as (value, line, reach, literal).
    type Found = (String, usize, Reach, bool);

    /// The image lines of `template` rendered with `values`.
    fn lines(values: &str, template: &str) -> Vec<Found> {
        lines_with(values, "", template)
    }

    /// The image lines of `template` rendered with `values` and the named templates of
    /// `helpers`.
    fn lines_with(values: &str, helpers: &str, template: &str) -> Vec<Found> {
        let mut v = Values::empty();
        v.layer("values.yaml", &load(values).unwrap());
        let defines = parse(helpers).unwrap().defines.into_iter().collect();
        let env = Env {
            values: &v,
            defines: &defines,
            chart_name: "c",
            chart_version: "0.1.0",
            app_version: "2.0.0",
            cache: Default::default(),
        };
        let t = parse(template).unwrap();
        image_lines(&env.render_reach(&t.nodes))
            .into_iter()
            .map(|l| (l.value, l.line, l.reach, l.literal))
            .collect()
    }

    fn one(value: &str, line: usize, reach: Reach, literal: bool) -> Found {
        (value.to_string(), line, reach, literal)
    }

    #[test]
    fn every_branch_with_whether_helm_takes_it() {
        use Reach::{Off, Taken, Undecided};
        let values = "a: true\nb: false\nimg: x/y:1\nlist: []\n";
        let cases: &[(&str, Vec<Found>)] = &[
            (
                "{{ if .Values.a }}\nimage: a:1\n{{ else }}\nimage: b:1\n{{ end }}\n",
                vec![one("a:1", 2, Taken, true), one("b:1", 4, Off, true)],
            ),
            (
                "{{ if .Values.b }}\nimage: a:1\n{{ else if .Values.a }}\nimage: b:1\n{{ else }}\nimage: c:1\n{{ end }}\n",
                vec![
                    one("b:1", 4, Taken, true),
                    one("a:1", 2, Off, true),
                    one("c:1", 6, Off, true),
                ],
            ),
            // One line, one side: the rendering Helm makes.
            (
                "image: {{ if .Values.a }}{{ .Values.img }}{{ else }}z:9{{ end }}\n",
                vec![one("x/y:1", 1, Taken, false)],
            ),
            (
                "{{ with .Values.missing }}\nimage: {{ . }}\n{{ else }}\nimage: d:1\n{{ end }}\n",
                vec![one("d:1", 4, Taken, true)],
            ),
            (
                "{{ range .Values.list }}\nimage: e:1\n{{ else }}\nimage: f:1\n{{ end }}\n",
                vec![one("f:1", 4, Taken, true), one("e:1", 2, Off, true)],
            ),
            (
                "{{ if lookup \"v1\" \"Secret\" \"ns\" \"s\" }}\nimage: g:1\n{{ end }}\n",
                vec![one("g:1", 2, Undecided, true)],
            ),
            // An assignment in a branch Helm does not take changes nothing after it.
            (
                "{{- $r := \"h.io\" -}}\n{{- if .Values.b }}{{ $r = \"\" }}{{ end -}}\nimage: {{ $r }}/i:1\n",
                vec![one("h.io/i:1", 3, Taken, false)],
            ),
            (
                "image: {{ .Values.img | default \"j:1\" }}:{{ .Chart.AppVersion }}\n",
                vec![one("x/y:1:2.0.0", 1, Taken, false)],
            ),
        ];
        for (template, want) in cases {
            assert_eq!(&lines(values, template), want, "{template}");
        }
    }

    #[test]
    fn a_pod_template_through_from_yaml_and_to_yaml_keeps_its_lines() {
        use Reach::{Off, Taken, Undecided};
        let values = "img: x/y:1\nsidecar: false\n";
        let helpers = concat!(
            "{{- define \"pod\" }}\n",
            "    metadata:\n",
            "      name: {{ lookup \"v1\" \"Secret\" \"ns\" \"s\" }}\n",
            "    spec:\n",
            "      containers:\n",
            "      - image: {{ .Values.img }}\n",
            "      {{- if .Values.sidecar }}\n",
            "      - image: \"side:2\"\n",
            "      {{- end }}\n",
            "      {{- if lookup \"v1\" \"Secret\" \"ns\" \"s\" }}\n",
            "      - image: maybe:3\n",
            "      {{- end }}\n",
            "{{- end }}\n",
            "{{- define \"list\" }}\n",
            "- image: l:1\n",
            "{{- end }}\n",
        );
        let cases: &[(&str, Vec<Found>)] = &[
            // Every container of the pod template, at the include's line, each with whether
            // Helm renders it; a part that cannot be computed (`lookup`) leaves the rest.
            (
                "kind: Deployment\nspec:\n  template: {{ include \"pod\" . | fromYaml | toYaml | nindent 4 }}\n",
                vec![
                    one("x/y:1", 3, Taken, false),
                    one("maybe:3", 3, Undecided, true),
                    one("side:2", 3, Off, true),
                ],
            ),
            (
                "spec:\n  template:\n{{ include \"pod\" . | fromYaml | toYaml | indent 4 }}\n",
                vec![
                    one("x/y:1", 3, Taken, false),
                    one("maybe:3", 3, Undecided, true),
                    one("side:2", 3, Off, true),
                ],
            ),
            // Not a mapping: Helm's `fromYaml` gives no pod template, and neither does ferry.
            (
                "items: {{ include \"list\" . | fromYaml | toYaml | nindent 2 }}\n",
                vec![],
            ),
        ];
        for (template, want) in cases {
            assert_eq!(&lines_with(values, helpers, template), want, "{template}");
        }
    }

    #[test]
    fn image_values_are_read_as_yaml_scalars() {
        let v = |t: &str| image_value(t).map(|(a, b)| t[a..b].to_string());
        assert_eq!(v("  image: nginx:1.25").as_deref(), Some("nginx:1.25"));
        assert_eq!(v("  - image: \"a/b:1\"").as_deref(), Some("a/b:1"));
        assert_eq!(v("    image: 'a/b:1' # pinned").as_deref(), Some("a/b:1"));
        assert_eq!(v("image: a/b:1 # c").as_deref(), Some("a/b:1"));
        assert_eq!(v("  image:"), None);
        assert_eq!(v("  image: \"\""), None);
        assert_eq!(v("  imagePullPolicy: Always"), None);
        assert_eq!(v("  someimage: x"), None);
    }
}
