//! Node configuration that sends pulls of the bundle's original references (`docker.io/…`,
//! `registry.example.com/…`) to `ferry serve`, so charts install with their values untouched:
//! containerd `hosts.toml` folders, k3s `registries.yaml`, and a `registries.conf.d` drop-in
//! for CRI-O and the other containers/image tools.

/// Which node software to configure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MirrorKind {
    Containerd,
    K3s,
    CriO,
}

/// Where nodes reach the server.
#[derive(Debug, Clone)]
pub struct MirrorTarget {
    /// `HOST:PORT` as nodes reach it.
    pub endpoint: String,
    /// The CA certificate (PEM) nodes must trust, when the server speaks TLS.
    pub ca_pem: Option<String>,
}

/// One file of the configuration: where it goes (relative to the folder the node reads it
/// from) and its text.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MirrorFile {
    pub path: String,
    /// Where the node software reads `path` from.
    pub base: &'static str,
    pub text: String,
}

/// The files that make every registry in `registries` pull through `target`.
pub fn config<'a>(
    kind: MirrorKind,
    registries: impl IntoIterator<Item = &'a str>,
    target: &MirrorTarget,
) -> Vec<MirrorFile> {
    let registries: Vec<&str> = registries.into_iter().collect();
    match kind {
        MirrorKind::Containerd => containerd(&registries, target),
        MirrorKind::K3s => k3s(&registries, target),
        MirrorKind::CriO => crio(&registries, target),
    }
}

fn scheme(target: &MirrorTarget) -> &'static str {
    if target.ca_pem.is_some() {
        "https"
    } else {
        "http"
    }
}

/// The upstream a containerd `server` line names for a registry.
fn upstream(registry: &str) -> String {
    match registry {
        "docker.io" => "https://registry-1.docker.io".to_string(),
        r => format!("https://{r}"),
    }
}

/// One `hosts.toml` folder per registry (a `host:port` registry keeps its colon: containerd
/// looks for that folder name), with the CA beside it; a relative `ca` path is read from the
/// registry's folder.
fn containerd(registries: &[&str], target: &MirrorTarget) -> Vec<MirrorFile> {
    let mut files = Vec::new();
    for r in registries {
        let mut text = format!(
            "# {r}: pull through ferry serve at {endpoint}; the upstream is never contacted\n\
             # while the mirror answers.\n\
             server = \"{server}\"\n\n\
             [host.\"{scheme}://{endpoint}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            endpoint = target.endpoint,
            server = upstream(r),
            scheme = scheme(target),
        );
        if let Some(ca) = &target.ca_pem {
            text.push_str("  ca = \"ferry-serve-ca.crt\"\n");
            files.push(MirrorFile {
                path: format!("{r}/ferry-serve-ca.crt"),
                base: "/etc/containerd/certs.d",
                text: ca.clone(),
            });
        }
        files.push(MirrorFile {
            path: format!("{r}/hosts.toml"),
            base: "/etc/containerd/certs.d",
            text,
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}

fn k3s(registries: &[&str], target: &MirrorTarget) -> Vec<MirrorFile> {
    let mut text =
        String::from("# k3s and rke2: pull the bundle's images through ferry serve.\nmirrors:\n");
    for r in registries {
        text.push_str(&format!(
            "  \"{r}\":\n    endpoint:\n      - \"{}://{}\"\n",
            scheme(target),
            target.endpoint
        ));
    }
    let mut files = Vec::new();
    if let Some(ca) = &target.ca_pem {
        text.push_str(&format!(
            "configs:\n  \"{}\":\n    tls:\n      ca_file: /etc/rancher/k3s/ferry-serve-ca.crt\n",
            target.endpoint
        ));
        files.push(MirrorFile {
            path: "ferry-serve-ca.crt".into(),
            base: "/etc/rancher/k3s",
            text: ca.clone(),
        });
    }
    files.push(MirrorFile {
        path: "registries.yaml".into(),
        base: "/etc/rancher/k3s",
        text,
    });
    files
}

fn crio(registries: &[&str], target: &MirrorTarget) -> Vec<MirrorFile> {
    let mut text = String::from(
        "# CRI-O, podman, skopeo: pull the bundle's images through ferry serve.\n\
         # containers/image sends no `ns`, so each registry's mirror names it in the path\n\
         # (ferry serve answers REGISTRY/PATH too).\n",
    );
    for r in registries {
        let location = if super::http::valid_name(r) {
            format!("{}/{r}", target.endpoint)
        } else {
            target.endpoint.clone()
        };
        text.push_str(&format!(
            "\n[[registry]]\nprefix = \"{r}\"\nlocation = \"{r}\"\n\n[[registry.mirror]]\nlocation = \"{location}\"\n"
        ));
        if target.ca_pem.is_none() {
            text.push_str("insecure = true\n");
        }
    }
    let mut files = vec![MirrorFile {
        path: "registries.conf.d/50-ferry-serve.conf".into(),
        base: "/etc/containers",
        text,
    }];
    if let Some(ca) = &target.ca_pem {
        files.push(MirrorFile {
            path: format!("certs.d/{}/ca.crt", target.endpoint),
            base: "/etc/containers",
            text: ca.clone(),
        });
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containerd_hosts_name_the_mirror_and_the_ca() {
        let target = MirrorTarget {
            endpoint: "10.0.0.5:5000".into(),
            ca_pem: Some("PEM".into()),
        };
        let files = config(MirrorKind::Containerd, ["docker.io", "quay.io"], &target);
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "docker.io/ferry-serve-ca.crt",
                "docker.io/hosts.toml",
                "quay.io/ferry-serve-ca.crt",
                "quay.io/hosts.toml"
            ]
        );
        let hosts = &files[1].text;
        assert!(hosts.contains("server = \"https://registry-1.docker.io\""));
        assert!(hosts.contains("[host.\"https://10.0.0.5:5000\"]"));
        assert!(hosts.contains("ca = \"ferry-serve-ca.crt\""));
    }

    #[test]
    fn plain_mirrors_say_so() {
        let target = MirrorTarget {
            endpoint: "127.0.0.1:5000".into(),
            ca_pem: None,
        };
        let k3s = &config(MirrorKind::K3s, ["docker.io"], &target)[0].text;
        assert!(k3s.contains("- \"http://127.0.0.1:5000\""), "{k3s}");
        let crio = &config(MirrorKind::CriO, ["docker.io", "reg:5000"], &target)[0].text;
        assert!(
            crio.contains("location = \"127.0.0.1:5000/docker.io\""),
            "{crio}"
        );
        assert!(crio.contains("insecure = true"), "{crio}");
    }
}
