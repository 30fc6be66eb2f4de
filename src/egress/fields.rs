//! Where a line sits in a rendered Kubernetes object: the document's `kind` and the key path
//! of the line, tracked by indentation one line at a time. A host is judged by its field, not
//! by its spelling: `apiVersion`, `apiGroups`, `kind`, `metadata` (labels, annotations, names)
//! and CRD group names are never destinations, and Ingress or Gateway API host names are
//! inbound.

/// What the field of a line says about the destinations on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// An ordinary field: judge what is found on the line.
    Plain,
    /// A field that never holds a destination (API groups, kinds, metadata, descriptions).
    NotDestination,
    /// A host name clients use to reach the chart (Ingress rules and TLS hosts, Gateway API
    /// listener and route host names).
    Inbound,
}

/// Keys whose values name API objects, groups or documentation, never a destination.
const NOT_DESTINATION_KEYS: &[&str] = &[
    "apiVersion",
    "apiVersions",
    "kind",
    "metadata",
    "apiGroup",
    "apiGroups",
    "group",
    "resources",
    "resourceNames",
    "nonResourceURLs",
    "verbs",
    "description",
    "names",
    "dnsNames",
    "commonName",
    "secretName",
    "$schema",
    "$id",
    "$ref",
];

/// Keys the fields depend on besides [`NOT_DESTINATION_KEYS`].
const PATH_KEYS: &[&str] = &[
    "spec",
    "rules",
    "tls",
    "listeners",
    "host",
    "hosts",
    "hostname",
    "hostnames",
];

/// The key as a static string when a field depends on it, else `""`.
fn tracked(key: &str) -> &'static str {
    NOT_DESTINATION_KEYS
        .iter()
        .chain(PATH_KEYS)
        .find(|k| **k == key)
        .copied()
        .unwrap_or("")
}

/// Tracks the kind and key path of each line of a stream of YAML documents.
#[derive(Debug, Default)]
pub struct Tracker {
    /// (indent, key) of the open mappings, outermost first; keys that decide no field are
    /// kept as `""` (nothing is allocated per line).
    stack: Vec<(usize, &'static str)>,
    /// How many entries of `stack` are keys that never hold a destination (kept so that a
    /// line is judged without searching the key list for every open key).
    not_destination: usize,
    /// The `kind:` of the current document.
    kind: String,
    /// While inside a block scalar's text: the indentation of its key, and how many entries of
    /// `stack` belong to the lines outside it. Embedded YAML (an Argo CD `resource.exclusions:
    /// |` list) is tracked like any other, below that floor.
    block: Option<(usize, usize)>,
}

impl Tracker {
    /// The field of the next line.
    pub fn line(&mut self, text: &str) -> Field {
        let body = text.trim_start();
        let indent = text.len() - body.len();
        if body == "---" || body.starts_with("--- ") {
            *self = Tracker::default();
            return Field::Plain;
        }
        let mut floor = 0;
        if let Some((b, f)) = self.block {
            if body.is_empty() {
                return self.judge(None);
            }
            if indent > b {
                floor = f;
            } else {
                self.block = None;
                self.truncate(f);
            }
        }
        if body.is_empty() || body.starts_with('#') {
            return Field::Plain;
        }
        // `- key: value` opens a mapping inside a list item, two columns in.
        let mut indent = indent;
        let mut rest = body;
        while let Some(r) = rest
            .strip_prefix("- ")
            .or_else(|| rest.strip_prefix('-').filter(|r| r.is_empty()))
        {
            let r2 = r.trim_start();
            indent += rest.len() - r2.len();
            rest = r2;
        }
        let key = key_of(rest);
        while self.stack.len() > floor
            && self
                .stack
                .last()
                .is_some_and(|(i, _)| *i > indent || (*i == indent && key.is_some()))
        {
            self.pop();
        }
        let Some(key) = key else {
            return self.judge(None);
        };
        let value = rest[key.len()..].trim_start_matches(['"', '\'']);
        let value = value.trim_start_matches(':').trim();
        if indent == 0 && key == "kind" {
            self.kind = value.trim_matches(['"', '\'']).to_string();
        }
        let key = key.trim_matches(['"', '\'']);
        let field = self.judge(Some(key));
        self.push((indent, tracked(key)));
        if self.block.is_none() && (value.starts_with('|') || value.starts_with('>')) {
            self.block = Some((indent, self.stack.len()));
        }
        field
    }

    fn push(&mut self, entry: (usize, &'static str)) {
        self.not_destination += usize::from(NOT_DESTINATION_KEYS.contains(&entry.1));
        self.stack.push(entry);
    }

    fn pop(&mut self) {
        if let Some((_, k)) = self.stack.pop() {
            self.not_destination -= usize::from(NOT_DESTINATION_KEYS.contains(&k));
        }
    }

    fn truncate(&mut self, len: usize) {
        while self.stack.len() > len {
            self.pop();
        }
    }

    fn judge(&self, key: Option<&str>) -> Field {
        let path = || self.stack.iter().map(|(_, k)| *k).chain(key);
        if self.not_destination > 0 || key.is_some_and(|k| NOT_DESTINATION_KEYS.contains(&k)) {
            return Field::NotDestination;
        }
        if self.kind == "CustomResourceDefinition" && path().next() == Some("spec") {
            // The schema of a custom resource: names, groups and documentation text.
            return Field::NotDestination;
        }
        let last = path().last().unwrap_or("");
        let under = |k: &str| self.stack.iter().any(|(_, s)| *s == k);
        let inbound = match self.kind.as_str() {
            "Ingress" => matches!(last, "host" | "hosts") && (under("rules") || under("tls")),
            "Gateway" | "ListenerSet" | "XListenerSet" => last == "hostname",
            "HTTPRoute" | "GRPCRoute" | "TLSRoute" => last == "hostnames",
            "Route" => last == "host" && under("spec"),
            _ => false,
        };
        if inbound {
            Field::Inbound
        } else {
            Field::Plain
        }
    }
}

/// The key of `key: value` or `key:` at the start of `rest`, when it is one.
fn key_of(rest: &str) -> Option<&str> {
    let b = rest.as_bytes();
    let end = if b.first().is_some_and(|c| *c == b'"' || *c == b'\'') {
        let q = b[0];
        let close = b[1..].iter().position(|c| *c == q)? + 2;
        (b.get(close) == Some(&b':')).then_some(close)?
    } else {
        let p = rest.find(':')?;
        let after = b.get(p + 1);
        if !(after.is_none() || after == Some(&b' ') || after == Some(&b'\t')) {
            return None;
        }
        if rest[..p].contains(' ') && !rest[..p].starts_with('$') {
            return None;
        }
        p
    };
    (end > 0).then(|| &rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(doc: &str) -> Vec<Field> {
        let mut t = Tracker::default();
        doc.lines().map(|l| t.line(l)).collect()
    }

    #[test]
    fn ingress_hosts_are_inbound_and_metadata_is_not_a_destination() {
        let doc = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  annotations:\n    a.io/x: https://x.io\nspec:\n  tls:\n    - hosts:\n        - a.example.org\n  rules:\n    - host: b.example.org\n      http:\n        paths:\n          - backend:\n              service:\n                name: web\n";
        let f = fields(doc);
        assert_eq!(f[0], Field::NotDestination);
        assert_eq!(f[4], Field::NotDestination);
        assert_eq!(f[8], Field::Inbound);
        assert_eq!(f[10], Field::Inbound);
        assert_eq!(f[15], Field::Plain);
    }

    #[test]
    fn yaml_inside_a_block_scalar_is_judged_by_its_own_fields() {
        let doc = "configs:\n  cm:\n    resource.exclusions: |\n      - apiGroups:\n        - discovery.k8s.io\n        kinds: [EndpointSlice]\n      - url: https://a.example.org\n    other: https://b.example.org\n";
        let f = fields(doc);
        assert_eq!(f[4], Field::NotDestination);
        assert_eq!(f[6], Field::Plain);
        assert_eq!(f[7], Field::Plain);
    }

    #[test]
    fn api_groups_and_plain_fields() {
        let doc = "kind: ClusterRole\nrules:\n  - apiGroups: [example.io]\n  - apiGroups:\n      - apps.example.io\n    verbs: [get]\n---\nkind: Deployment\nspec:\n  url: https://a.example.org\n";
        let f = fields(doc);
        assert_eq!(f[2], Field::NotDestination);
        assert_eq!(f[4], Field::NotDestination);
        assert_eq!(f[9], Field::Plain);
    }
}
