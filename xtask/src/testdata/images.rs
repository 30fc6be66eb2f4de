//! The seven container images of the agent-security fixture and the four forms they are
//! supplied in: one shared OCI image layout folder, an `oci-archive`, and `docker save`
//! tarballs in the legacy and the Docker 25+ (OCI layout inside) forms.
//!
//! Layers are tiny but real: gzip-compressed (or, for `docker save`, plain) tars of a few
//! files whose large parts are seeded noise, so sizes are stable and compression cannot shrink
//! them to nothing.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;

use super::oci::{
    archive, noise, sha256_hex, BlobStore, Descriptor, Layer, LayerForm, Platform, RunConfig,
    TarEntry, EPOCH, INDEX, REF_NAME,
};

/// The registry path every vendor image reference starts with.
pub const VENDOR_REPO: &str = "registry.permit.io/agent-security";

/// Where one image of the fixture lives and how `ferry.yaml` names it.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    /// Original reference, e.g. `registry.permit.io/agent-security/gateway:1.4.0`.
    pub reference: String,
    /// Image source as written in `ferry.yaml`'s `from:`.
    pub from: String,
    /// File or folder (relative to the fixture root) holding the image.
    pub file: String,
    /// Digest of the manifest or index the source selects (`oci:`/`oci-archive:` and the
    /// Docker 25+ form), or `None` for a legacy `docker save` tarball, which has no manifest.
    pub manifest_digest: Option<String>,
    /// Digest of the image config (Docker's image ID); for an index, of the first platform.
    pub config_digest: String,
    /// Platforms, `os/arch[/variant]`.
    pub platforms: Vec<String>,
}

/// Files under `images/` and a description of every image in them.
pub struct Images {
    /// Files relative to the fixture root (`images/...`).
    pub files: Vec<TarEntry>,
    /// One entry per image, in `ferry.yaml` order.
    pub info: Vec<ImageInfo>,
}

fn reference(name: &str, tag: &str) -> String {
    format!("{VENDOR_REPO}/{name}:{tag}")
}

fn os_release(name: &str, id: &str, version: &str) -> TarEntry {
    TarEntry::file(
        "etc/os-release",
        format!(
            "NAME=\"{name}\"\nID={id}\nVERSION_ID={version}\nPRETTY_NAME=\"{name} {version}\"\n"
        ),
    )
}

fn launcher(component: &str) -> TarEntry {
    TarEntry::exe(
        format!("app/{component}"),
        format!(
            "#!/bin/sh\n# Starts the agent-security {component}.\nset -eu\nexec /app/{component}.bin \"$@\"\n"
        ),
    )
}

/// The Alpine-like base the gateway and the consent service share (one blob, stored once).
fn permit_base() -> Result<Layer> {
    Layer::new(vec![
        os_release("Permit Base", "permit-base", "3.20"),
        TarEntry::file(
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\napp:x:10001:10001:app:/app:/sbin/nologin\n",
        ),
        TarEntry::file("etc/group", "root:x:0:\napp:x:10001:\n"),
        TarEntry::exe(
            "lib/ld-musl-x86_64.so.1",
            noise("permit-base/libc", 24 * 1024),
        ),
        TarEntry::exe("bin/busybox", noise("permit-base/busybox", 8 * 1024)),
    ])
}

/// The Debian-like base of the third-party images (nginx, redis, postgres).
fn debian_base() -> Result<Layer> {
    Layer::new(vec![
        os_release("Debian GNU/Linux", "debian", "12"),
        TarEntry::file("etc/debian_version", "12.7\n"),
        TarEntry::exe(
            "lib/x86_64-linux-gnu/libc.so.6",
            noise("debian/libc", 16 * 1024),
        ),
    ])
}

fn app_layer(component: &str, size: usize) -> Result<Layer> {
    Layer::new(vec![
        launcher(component),
        TarEntry::exe(
            format!("app/{component}.bin"),
            noise(&format!("{component}/bin"), size),
        ),
        TarEntry::file("app/VERSION", "1.4.0\n"),
    ])
}

fn labels(title: &str, version: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "org.opencontainers.image.title".to_string(),
            title.to_string(),
        ),
        (
            "org.opencontainers.image.version".to_string(),
            version.to_string(),
        ),
        (
            "org.opencontainers.image.vendor".to_string(),
            "Permit".to_string(),
        ),
    ])
}

fn ports(list: &[&str]) -> BTreeMap<String, serde_json::Map<String, serde_json::Value>> {
    list.iter()
        .map(|p| (p.to_string(), serde_json::Map::new()))
        .collect()
}

fn app_run(component: &str, port: &str) -> RunConfig {
    RunConfig {
        user: "10001".into(),
        exposed_ports: ports(&[port]),
        env: vec![
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            format!("COMPONENT={component}"),
        ],
        entrypoint: vec![format!("/app/{component}")],
        cmd: Vec::new(),
        working_dir: "/app".into(),
        labels: labels(&format!("agent-security {component}"), "1.4.0"),
    }
}

fn third_party_run(
    title: &str,
    version: &str,
    entrypoint: &str,
    cmd: &[&str],
    port: &str,
) -> RunConfig {
    RunConfig {
        user: String::new(),
        exposed_ports: ports(&[port]),
        env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
        entrypoint: vec![entrypoint.into()],
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        working_dir: "/".into(),
        labels: labels(title, version),
    }
}

fn by(text: &str) -> String {
    format!("/bin/sh -c #(nop) {text}")
}

fn config_digest(store: &BlobStore, manifest: &Descriptor) -> String {
    let bytes = store.get(manifest.hex()).expect("manifest stored");
    let v: serde_json::Value = serde_json::from_slice(bytes).expect("manifest is JSON");
    v["config"]["digest"]
        .as_str()
        .expect("config digest")
        .to_string()
}

/// Builds every image and the files that hold them.
pub fn build() -> Result<Images> {
    let mut files = Vec::new();
    let mut info = Vec::new();
    let amd64 = Platform::linux("amd64", None);

    // 1-3 and 7: one OCI image layout folder.
    let mut layout = BlobStore::default();
    let base = permit_base()?;
    let base_by = by("ADD permit-base-3.20-x86_64.tar /");
    let mut refs = Vec::new();
    for (component, port, size) in [
        ("gateway", "8080/tcp", 12 * 1024),
        ("consent-service", "3000/tcp", 10 * 1024),
    ] {
        let app = app_layer(component, size)?;
        let m = layout.add_image(
            &amd64,
            &app_run(component, port),
            &[
                (&base, &base_by),
                (&app, &by(&format!("COPY {component} /app/"))),
            ],
            "1.4.0",
            LayerForm::Gzip,
        );
        info.push(ImageInfo {
            reference: reference(component, "1.4.0"),
            from: format!("oci:images/layout:{component}"),
            file: "images/layout".into(),
            manifest_digest: Some(m.digest.clone()),
            config_digest: config_digest(&layout, &m),
            platforms: vec!["linux/amd64".into()],
        });
        refs.push(m.annotate(REF_NAME, component));
    }

    // The platform: a multi-arch index; the static assets layer is shared by both platforms.
    let assets = Layer::new(vec![
        launcher("platform"),
        TarEntry::file(
            "app/public/index.html",
            "<!doctype html>\n<title>MCP Gateway Platform</title>\n<div id=\"root\"></div>\n<script src=\"/app.js\"></script>\n",
        ),
        TarEntry::file("app/public/app.js", noise("platform/assets", 6 * 1024)),
        TarEntry::file("app/VERSION", "1.4.0\n"),
    ])?;
    let mut platform_manifests = Vec::new();
    for (arch, variant, triple) in [("amd64", None, "x86_64"), ("arm64", Some("v8"), "aarch64")] {
        let platform = Platform::linux(arch, variant);
        let runtime = Layer::new(vec![
            os_release("Permit Node", "permit-node", "20.17"),
            TarEntry::exe(
                "usr/local/bin/node",
                noise(&format!("platform/node/{arch}"), 16 * 1024),
            ),
            TarEntry::exe(
                format!("lib/ld-musl-{triple}.so.1"),
                noise(&format!("platform/libc/{arch}"), 4 * 1024),
            ),
        ])?;
        let mut run = app_run("platform", "3000/tcp");
        run.entrypoint = vec!["/usr/local/bin/node".into(), "/app/platform".into()];
        let m = layout.add_image(
            &platform,
            &run,
            &[
                (
                    &runtime,
                    &by(&format!("ADD permit-node-20.17-{triple}.tar /")),
                ),
                (&assets, &by("COPY platform /app/")),
            ],
            "1.4.0",
            LayerForm::Gzip,
        );
        let mut m = m;
        m.platform = Some(platform);
        platform_manifests.push(m);
    }
    let first_config = config_digest(&layout, &platform_manifests[0]);
    let platform_index = layout.add(INDEX, super::oci::index(&platform_manifests));
    info.push(ImageInfo {
        reference: reference("platform", "1.4.0"),
        from: "oci:images/layout:platform".into(),
        file: "images/layout".into(),
        manifest_digest: Some(platform_index.digest.clone()),
        config_digest: first_config,
        platforms: vec!["linux/amd64".into(), "linux/arm64/v8".into()],
    });
    refs.push(platform_index.annotate(REF_NAME, "platform"));

    // keycloak-setup: a small curl + jq image that runs the post-install Job.
    let tools = Layer::new(vec![
        os_release("Permit Tools", "permit-tools", "3.20"),
        TarEntry::exe("usr/bin/curl", noise("keycloak-setup/curl", 10 * 1024)),
        TarEntry::exe("usr/bin/jq", noise("keycloak-setup/jq", 4 * 1024)),
    ])?;
    let setup = Layer::new(vec![
        TarEntry::exe(
            "app/keycloak-setup",
            "#!/bin/sh\n# Creates the agent-security OIDC client in Keycloak; idempotent.\nset -eu\n: \"${KEYCLOAK_URL:?KEYCLOAK_URL is required}\"\nexec /app/keycloak-setup.bin \"$KEYCLOAK_URL\"\n",
        ),
        TarEntry::exe("app/keycloak-setup.bin", noise("keycloak-setup/bin", 2 * 1024)),
    ])?;
    let mut run = app_run("keycloak-setup", "8080/tcp");
    run.exposed_ports.clear();
    let m = layout.add_image(
        &amd64,
        &run,
        &[
            (&tools, &by("ADD permit-tools-3.20-x86_64.tar /")),
            (&setup, &by("COPY keycloak-setup /app/")),
        ],
        "1.4.0",
        LayerForm::Gzip,
    );
    // Listed before the archives so all `oci:` images come first in ferry.yaml.
    let keycloak_info = ImageInfo {
        reference: reference("keycloak-setup", "1.4.0"),
        from: "oci:images/layout:keycloak-setup".into(),
        file: "images/layout".into(),
        manifest_digest: Some(m.digest.clone()),
        config_digest: config_digest(&layout, &m),
        platforms: vec!["linux/amd64".into()],
    };
    info.push(keycloak_info);
    refs.push(m.annotate(REF_NAME, "keycloak-setup"));

    for f in layout.layout(&refs) {
        files.push(TarEntry {
            path: format!("images/layout/{}", f.path),
            ..f
        });
    }

    let debian = debian_base()?;
    let debian_by = by("ADD rootfs-debian-12-amd64.tar /");

    // 6: postgres as an oci-archive (the layout of one image, in a tar).
    let mut pg = BlobStore::default();
    let pg_layer = Layer::new(vec![
        TarEntry::exe(
            "usr/lib/postgresql/16/bin/postgres",
            noise("postgres/postgres", 14 * 1024),
        ),
        TarEntry::exe(
            "usr/local/bin/docker-entrypoint.sh",
            "#!/bin/sh\nset -eu\nexec \"$@\"\n",
        ),
    ])?;
    let m = pg.add_image(
        &amd64,
        &third_party_run(
            "postgres",
            "16.4",
            "docker-entrypoint.sh",
            &["postgres"],
            "5432/tcp",
        ),
        &[
            (&debian, &debian_by),
            (
                &pg_layer,
                &by("COPY postgresql-16.4 /usr/lib/postgresql/16/"),
            ),
        ],
        "16.4",
        LayerForm::Gzip,
    );
    let pg_config = config_digest(&pg, &m);
    files.push(TarEntry::file(
        "images/postgres.oci.tar",
        archive(pg.layout(&[m.clone().annotate(REF_NAME, "16.4")]))?,
    ));

    // 4: nginx (OpenResty) in the legacy `docker save` form.
    let nginx_layer = Layer::new(vec![
        TarEntry::exe(
            "usr/local/openresty/nginx/sbin/nginx",
            noise("nginx/openresty", 12 * 1024),
        ),
        TarEntry::file(
            "usr/local/openresty/nginx/conf/nginx.conf",
            "worker_processes auto;\nevents { worker_connections 1024; }\nhttp { include /etc/nginx/conf.d/*.conf; }\n",
        ),
    ])?;
    let nginx_ref = reference("nginx", "1.25.3");
    let nginx_run = third_party_run(
        "openresty",
        "1.25.3",
        "/usr/local/openresty/bin/openresty",
        &["-g", "daemon off;"],
        "8080/tcp",
    );
    let nginx_layers = [
        (&debian, debian_by.as_str()),
        (
            &nginx_layer,
            "/bin/sh -c #(nop) COPY openresty-1.25.3 /usr/local/openresty/",
        ),
    ];
    let (nginx_tar, nginx_config) =
        legacy_docker_archive(&nginx_ref, &amd64, &nginx_run, &nginx_layers)?;
    files.push(TarEntry::file("images/nginx.docker.tar", nginx_tar));

    // 5: redis in the Docker 25+ `docker save` form (an OCI layout plus manifest.json).
    let redis_layer = Layer::new(vec![
        TarEntry::exe(
            "usr/local/bin/redis-server",
            noise("redis/server", 12 * 1024),
        ),
        TarEntry::file(
            "etc/redis/redis.conf",
            "bind 0.0.0.0\nport 6379\nappendonly yes\n",
        ),
    ])?;
    let redis_ref = reference("redis", "7.2.5");
    let redis_run = third_party_run(
        "redis",
        "7.2.5",
        "redis-server",
        &["/etc/redis/redis.conf"],
        "6379/tcp",
    );
    let (redis_tar, redis_manifest, redis_config) = docker25_archive(
        &redis_ref,
        &amd64,
        &redis_run,
        &[
            (&debian, &debian_by),
            (&redis_layer, &by("COPY redis-7.2.5 /usr/local/")),
        ],
    )?;
    files.push(TarEntry::file("images/redis.docker.tar", redis_tar));

    info.push(ImageInfo {
        reference: reference("postgres", "16.4"),
        from: "oci-archive:images/postgres.oci.tar".into(),
        file: "images/postgres.oci.tar".into(),
        manifest_digest: Some(m.digest),
        config_digest: pg_config,
        platforms: vec!["linux/amd64".into()],
    });
    info.push(ImageInfo {
        reference: nginx_ref,
        from: "docker-archive:images/nginx.docker.tar".into(),
        file: "images/nginx.docker.tar".into(),
        manifest_digest: None,
        config_digest: nginx_config,
        platforms: vec!["linux/amd64".into()],
    });
    info.push(ImageInfo {
        from: format!("docker-archive:images/redis.docker.tar:{redis_ref}"),
        reference: redis_ref,
        file: "images/redis.docker.tar".into(),
        manifest_digest: Some(redis_manifest),
        config_digest: redis_config,
        platforms: vec!["linux/amd64".into()],
    });

    Ok(Images { files, info })
}

/// One image of a `docker save` tarball's `manifest.json`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest<'a> {
    config: String,
    repo_tags: [&'a str; 1],
    layers: Vec<String>,
}

/// The per-layer `json` of the legacy (v1) layout.
#[derive(Serialize)]
struct V1Layer<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent: Option<&'a str>,
    created: &'static str,
    container_config: serde_json::Map<String, serde_json::Value>,
    os: &'static str,
}

/// `repositories`: repository → tag → top layer ID.
fn repositories(reference: &str, top: &str) -> Vec<u8> {
    let (repo, tag) = reference.rsplit_once(':').expect("reference has a tag");
    let map = BTreeMap::from([(repo, BTreeMap::from([(tag, top)]))]);
    super::oci::json(&map)
}

/// A tarball as `docker save` wrote it before Docker 25: one folder per layer (`VERSION`,
/// `json`, uncompressed `layer.tar`), `<config hex>.json`, `manifest.json`, `repositories`.
/// Returns the tarball and the config digest (the image ID).
fn legacy_docker_archive(
    reference: &str,
    platform: &Platform,
    run: &RunConfig,
    layers: &[(&Layer, &str)],
) -> Result<(Vec<u8>, String)> {
    let config = super::oci::config(platform, run, layers);
    let config_hex = sha256_hex(&config);
    let mut files = Vec::new();
    let mut layer_paths = Vec::new();
    let mut parent: Option<String> = None;
    for (layer, _) in layers {
        // Legacy v1 IDs chain each layer's diff ID onto its parent's ID.
        let id = sha256_hex(
            format!(
                "{} {}",
                parent.as_deref().unwrap_or(""),
                layer.diff_id_hex()
            )
            .as_bytes(),
        );
        files.push(TarEntry::file(format!("{id}/VERSION"), "1.0"));
        files.push(TarEntry::file(
            format!("{id}/json"),
            super::oci::json(&V1Layer {
                id: &id,
                parent: parent.as_deref(),
                created: EPOCH,
                container_config: serde_json::Map::new(),
                os: "linux",
            }),
        ));
        files.push(TarEntry::file(format!("{id}/layer.tar"), layer.tar.clone()));
        layer_paths.push(format!("{id}/layer.tar"));
        parent = Some(id);
    }
    files.push(TarEntry::file(format!("{config_hex}.json"), config));
    files.push(TarEntry::file(
        "manifest.json",
        super::oci::json(&[DockerManifest {
            config: format!("{config_hex}.json"),
            repo_tags: [reference],
            layers: layer_paths,
        }]),
    ));
    files.push(TarEntry::file(
        "repositories",
        repositories(reference, parent.as_deref().expect("at least one layer")),
    ));
    Ok((archive(files)?, format!("sha256:{config_hex}")))
}

/// A tarball as Docker 25+ `docker save` writes it: an OCI image layout (uncompressed layers,
/// `index.json` annotated with `io.containerd.image.name` and the tag as ref name) plus the
/// legacy `manifest.json` pointing into `blobs/sha256/`, and `repositories`.
/// Returns the tarball, the manifest digest and the config digest.
fn docker25_archive(
    reference: &str,
    platform: &Platform,
    run: &RunConfig,
    layers: &[(&Layer, &str)],
) -> Result<(Vec<u8>, String, String)> {
    let mut store = BlobStore::default();
    let m = store.add_image(platform, run, layers, "7.2.5", LayerForm::Tar);
    let config = config_digest(&store, &m);
    let (_, tag) = reference.rsplit_once(':').expect("reference has a tag");
    let desc = m
        .clone()
        .annotate("io.containerd.image.name", reference)
        .annotate(REF_NAME, tag);
    let mut files = store.layout(&[desc]);
    let blob = |digest: &str| format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
    files.push(TarEntry::file(
        "manifest.json",
        super::oci::json(&[DockerManifest {
            config: blob(&config),
            repo_tags: [reference],
            layers: layers
                .iter()
                .map(|(l, _)| format!("blobs/sha256/{}", l.diff_id_hex()))
                .collect(),
        }]),
    ));
    let top = layers.last().expect("at least one layer").0.diff_id_hex();
    files.push(TarEntry::file(
        "repositories",
        repositories(reference, &top),
    ));
    Ok((archive(files)?, m.digest, config))
}
