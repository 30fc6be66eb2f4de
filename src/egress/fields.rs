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

/// A key the fields depend on; every other key is [`Key::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Other,
    /// A key whose value names API objects, groups or documentation, never a destination.
    NotDestination,
    Spec,
    Rules,
    Tls,
    Host,
    Hosts,
    Hostname,
    Hostnames,
    /// The objects of a `kind: List`.
    Items,
}

/// What a key means to the fields (quotes already removed).
fn tracked(key: &str) -> Key {
    match key {
        "apiVersion" | "apiVersions" | "kind" | "metadata" | "apiGroup" | "apiGroups" | "group"
        | "resources" | "resourceNames" | "nonResourceURLs" | "verbs" | "description" | "names"
        | "dnsNames" | "commonName" | "secretName" | "$schema" | "$id" | "$ref" => {
            Key::NotDestination
        }
        "spec" => Key::Spec,
        "rules" => Key::Rules,
        "tls" => Key::Tls,
        "host" => Key::Host,
        "hosts" => Key::Hosts,
        "hostname" => Key::Hostname,
        "hostnames" => Key::Hostnames,
        "items" => Key::Items,
        _ => Key::Other,
    }
}

/// The kinds whose fields are judged differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum ObjectKind {
    #[default]
    Other,
    CustomResourceDefinition,
    Ingress,
    /// `Gateway` and the listener sets, whose listeners name host names.
    Gateway,
    /// `HTTPRoute`, `GRPCRoute`, `TLSRoute`.
    GatewayRoute,
    /// OpenShift's `Route`.
    Route,
    /// `List` (or `…List`): each of its `items` is an object of its own kind.
    List,
}

impl ObjectKind {
    fn of(kind: &str) -> ObjectKind {
        match kind {
            "CustomResourceDefinition" => ObjectKind::CustomResourceDefinition,
            "Ingress" => ObjectKind::Ingress,
            "Gateway" | "ListenerSet" | "XListenerSet" => ObjectKind::Gateway,
            "HTTPRoute" | "GRPCRoute" | "TLSRoute" => ObjectKind::GatewayRoute,
            "Route" => ObjectKind::Route,
            k if k.ends_with("List") => ObjectKind::List,
            _ => ObjectKind::Other,
        }
    }
}

/// `text` without leading white space (as `str::trim_start`), and the number of bytes cut;
/// ASCII indentation, the usual case, is counted without decoding characters.
fn trim_start(text: &str) -> (&str, usize) {
    let b = text.as_bytes();
    let n = b
        .iter()
        .position(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c'))
        .unwrap_or(b.len());
    if b.get(n).is_some_and(|c| *c >= 0x80) {
        let body = text.trim_start();
        return (body, text.len() - body.len());
    }
    (&text[n..], n)
}

/// `s` without the quote characters around it.
fn unquote(s: &str) -> &str {
    s.trim_matches(['"', '\''])
}

/// Tracks the kind and key path of each line of a stream of YAML documents.
#[derive(Debug, Default)]
pub struct Tracker {
    /// (indent, key) of the open mappings, outermost first (nothing is allocated per line).
    stack: Vec<(usize, Key)>,
    /// How many entries of `stack` are keys that never hold a destination.
    not_destination: usize,
    /// The `kind:` of the current document.
    kind: ObjectKind,
    /// The `kind:` of the current item of a `kind: List` document.
    item_kind: ObjectKind,
    /// While inside a block scalar's text: the indentation of its key, and how many entries of
    /// `stack` belong to the lines outside it. Embedded YAML (an Argo CD `resource.exclusions:
    /// |` list) is tracked like any other, below that floor.
    block: Option<(usize, usize)>,
}

impl Tracker {
    /// The field of the next line.
    pub fn line(&mut self, text: &str) -> Field {
        let (body, indent) = trim_start(text);
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
        let mut dashed = false;
        while let Some(r) = rest
            .strip_prefix("- ")
            .or_else(|| rest.strip_prefix('-').filter(|r| r.is_empty()))
        {
            let (r2, _) = trim_start(r);
            indent += rest.len() - r2.len();
            rest = r2;
            dashed = true;
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
        let after = &rest[key.len()..];
        let id = tracked(
            if key.starts_with(['"', '\'']) || key.ends_with(['"', '\'']) {
                unquote(key)
            } else {
                key
            },
        );
        if key == "kind" {
            let value = after.trim_start_matches(['"', '\'']);
            let value = unquote(value.trim_start_matches(':').trim());
            if indent == 0 {
                self.kind = ObjectKind::of(value);
            } else if self.in_list_item() && self.stack.len() == 1 {
                self.item_kind = ObjectKind::of(value);
            }
        } else if dashed && self.in_list_item() && self.stack.len() == 1 {
            // The first key of the next object of a List.
            self.item_kind = ObjectKind::Other;
        }
        let field = self.judge(Some(id));
        self.push((indent, id));
        if self.block.is_none() {
            let value = trim_start(
                after
                    .trim_start_matches(['"', '\''])
                    .trim_start_matches(':'),
            )
            .0;
            if value.starts_with('|') || value.starts_with('>') {
                self.block = Some((indent, self.stack.len()));
            }
        }
        field
    }

    /// Whether the open keys are inside the `items` of a `kind: List` document.
    fn in_list_item(&self) -> bool {
        self.kind == ObjectKind::List && self.stack.first().is_some_and(|(_, k)| *k == Key::Items)
    }

    fn push(&mut self, entry: (usize, Key)) {
        self.not_destination += usize::from(entry.1 == Key::NotDestination);
        self.stack.push(entry);
    }

    fn pop(&mut self) {
        if let Some((_, k)) = self.stack.pop() {
            self.not_destination -= usize::from(k == Key::NotDestination);
        }
    }

    fn truncate(&mut self, len: usize) {
        while self.stack.len() > len {
            self.pop();
        }
    }

    fn judge(&self, key: Option<Key>) -> Field {
        if self.not_destination > 0 || key == Some(Key::NotDestination) {
            return Field::NotDestination;
        }
        // The object the line belongs to: the document, or the item of a List.
        let (kind, stack) = if self.in_list_item() {
            (self.item_kind, &self.stack[1..])
        } else {
            (self.kind, &self.stack[..])
        };
        let first = stack.first().map(|(_, k)| *k).or(key);
        if kind == ObjectKind::CustomResourceDefinition && first == Some(Key::Spec) {
            // The schema of a custom resource: names, groups and documentation text.
            return Field::NotDestination;
        }
        let last = key.or_else(|| stack.last().map(|(_, k)| *k));
        let under = |k: Key| stack.iter().any(|(_, s)| *s == k);
        let inbound = match kind {
            ObjectKind::Ingress => {
                matches!(last, Some(Key::Host | Key::Hosts))
                    && (under(Key::Rules) || under(Key::Tls))
            }
            ObjectKind::Gateway => last == Some(Key::Hostname),
            ObjectKind::GatewayRoute => last == Some(Key::Hostnames),
            ObjectKind::Route => last == Some(Key::Host) && under(Key::Spec),
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
        let p = b.iter().position(|c| *c == b':')?;
        let after = b.get(p + 1);
        if !(after.is_none() || after == Some(&b' ') || after == Some(&b'\t')) {
            return None;
        }
        if b[..p].contains(&b' ') && !b.starts_with(b"$") {
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
    fn each_item_of_a_list_is_judged_by_its_own_kind() {
        let doc = "apiVersion: v1\nkind: List\nitems:\n  - apiVersion: networking.k8s.io/v1\n    kind: Ingress\n    metadata:\n      name: a\n    spec:\n      rules:\n        - host: a.example.org\n  - apiVersion: v1\n    kind: ConfigMap\n    data:\n      rules: |\n        host: b.example.org\n  - kind: Ingress\n    spec:\n      tls:\n        - hosts: [c.example.org]\n";
        let f = fields(doc);
        assert_eq!(f[4], Field::NotDestination);
        assert_eq!(f[9], Field::Inbound);
        assert_eq!(f[14], Field::Plain, "a ConfigMap item is not an Ingress");
        assert_eq!(f[18], Field::Inbound);
        // Outside a List, a nested `kind:` changes nothing.
        let f = fields("kind: ConfigMap\ndata:\n  x:\n    kind: Ingress\n    rules:\n      - host: d.example.org\n");
        assert_eq!(f[5], Field::Plain);
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
