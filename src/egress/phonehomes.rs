//! Known phone-homes: destinations software reaches by default with no URL in its chart
//! (Grafana's update check and usage analytics, Traefik's version check, Alertmanager's
//! built-in receiver endpoints), found from the images the values deploy and the settings
//! that control them. The data is `phonehomes.yaml`, compiled into the binary.

use std::sync::OnceLock;

use serde::Deserialize;

use super::finder;
use super::values::{Node, Value, Values};

/// One default destination of one piece of software.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneHome {
    /// Repository path (no registry, tag or digest) that identifies the software.
    pub image: String,
    /// Where it connects.
    pub host: String,
    /// The port.
    pub port: u16,
    /// What the connection is for.
    pub purpose: String,
    /// The values key parent of `setting`, if any.
    #[serde(default)]
    pub section: Option<String>,
    /// The values key that switches it on or off.
    #[serde(default)]
    pub setting: Option<String>,
    /// A container argument that switches it on.
    #[serde(default)]
    pub arg: Option<String>,
    /// A key inside the setting's value that replaces the built-in endpoint.
    #[serde(default)]
    pub unless: Option<String>,
    /// Whether it happens when nothing is written.
    pub default_on: bool,
    /// How to turn it off.
    pub off: String,
}

/// The compiled-in table.
pub fn table() -> &'static [PhoneHome] {
    static TABLE: OnceLock<Vec<PhoneHome>> = OnceLock::new();
    TABLE
        .get_or_init(|| serde_saphyr::from_str(include_str!("phonehomes.yaml")).unwrap_or_default())
}

/// Where the evidence of one phone-home is.
#[derive(Debug, Clone)]
pub struct Hit<'v> {
    /// The entry.
    pub entry: &'static PhoneHome,
    /// The values node of the evidence.
    pub node: Node<'v>,
    /// The `.Values` path of the node.
    pub path: String,
    /// The key to look for on or above the node's line (a section or a setting holding a
    /// collection, whose own line is that of the key).
    pub key: Option<String>,
}

/// Every node of the values, with its path, key and parent key.
fn walk<'v>(
    node: Node<'v>,
    path: &str,
    key: &str,
    parent: &str,
    out: &mut Vec<(Node<'v>, String, String, String)>,
) {
    out.push((node, path.to_string(), key.to_string(), parent.to_string()));
    match node.value() {
        Value::Map(m) => {
            for (k, child) in m {
                walk(child, &format!("{path}.{k}"), &k, key, out);
            }
        }
        Value::Seq(s) => {
            for (i, child) in s.into_iter().enumerate() {
                walk(child, &format!("{path}[{i}]"), key, parent, out);
            }
        }
        _ => {}
    }
}

/// The repository path of an image reference: no registry, tag or digest.
fn repository_path(reference: &str) -> String {
    let r = reference.split('@').next().unwrap_or("");
    let (head, tail) = r.rsplit_once('/').map_or(("", r), |(h, t)| (h, t));
    let tail = tail.split(':').next().unwrap_or(tail);
    let full = if head.is_empty() {
        tail.to_string()
    } else {
        format!("{head}/{tail}")
    };
    match full.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            rest.to_string()
        }
        _ => full,
    }
}

fn is_software(image: &str, name: &str) -> bool {
    let image = image.strip_prefix("library/").unwrap_or(image);
    image == name || image.ends_with(&format!("/{name}"))
}

/// The phone-homes of the software that `values` deploys, with their evidence.
pub fn find(values: &Values) -> Vec<Hit<'_>> {
    let mut nodes = Vec::new();
    walk(values.root(), ".Values", "", "", &mut nodes);
    // Images: `repository`/`image` strings of image maps and strings under image keys.
    let images: Vec<(String, usize)> = nodes
        .iter()
        .enumerate()
        .filter_map(|(i, (n, _, k, p))| {
            let text = n.as_text().filter(|t| !t.is_empty())?;
            let imageish = finder::image_key(k)
                || (matches!(k.as_str(), "repository" | "image") && finder::image_key(p));
            imageish.then(|| (repository_path(&text), i))
        })
        .collect();
    let mut out = Vec::new();
    for entry in table() {
        let Some(&(_, image_at)) = images
            .iter()
            .find(|(img, _)| is_software(img, &entry.image))
        else {
            continue;
        };
        let at = |i: usize, key: Option<String>| {
            let (n, path, _, _) = &nodes[i];
            Hit {
                entry,
                node: *n,
                path: path.clone(),
                key,
            }
        };
        if let Some(setting) = &entry.setting {
            let found = nodes.iter().position(|(_, _, k, p)| {
                k == setting && entry.section.as_ref().is_none_or(|s| s == p)
            });
            if let Some(i) = found {
                let n = nodes[i].0;
                let on = match n.value() {
                    Value::Bool(b) => b,
                    Value::Str(s) => !matches!(s.as_ref(), "false" | "" | "0"),
                    Value::Null => false,
                    Value::Map(_) | Value::Seq(_) => {
                        n.truthy() && !entry.unless.as_ref().is_some_and(|u| holds_key(n, u))
                    }
                };
                if on {
                    let key = (!n.is_scalar()).then(|| setting.clone());
                    out.push(at(i, key));
                }
                continue;
            }
        }
        if let Some(arg) = &entry.arg {
            let found = nodes.iter().position(|(n, _, _, _)| {
                n.as_text().is_some_and(|t| {
                    let t = t.trim();
                    t == arg
                        || t.strip_prefix(arg.as_str())
                            .is_some_and(|r| r.starts_with('=') && r != "=false")
                })
            });
            if let Some(i) = found {
                out.push(at(i, None));
                continue;
            }
        }
        if !entry.default_on {
            continue;
        }
        let section = entry
            .section
            .as_ref()
            .and_then(|s| nodes.iter().position(|(n, _, k, _)| k == s && n.is_map()));
        match section {
            Some(i) => out.push(at(i, entry.section.clone())),
            None => out.push(at(image_at, None)),
        }
    }
    out
}

/// Whether any map below `node` has the key `key`.
fn holds_key(node: Node<'_>, key: &str) -> bool {
    match node.value() {
        Value::Map(m) => m.iter().any(|(k, c)| k == key || holds_key(*c, key)),
        Value::Seq(s) => s.iter().any(|c| holds_key(*c, key)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_parses() {
        assert!(table().len() >= 5);
        assert_eq!(
            repository_path("docker.io/grafana/grafana:11.0@sha256:ab"),
            "grafana/grafana"
        );
        assert_eq!(repository_path("traefik:v3"), "traefik");
        assert!(is_software("library/traefik", "traefik"));
    }
}
