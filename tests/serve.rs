//! `ferry serve` against real clients: skopeo copies every fixture image (plain, TLS, TLS and
//! basic auth, and from an extracted folder) with identical digests and bytes; curl checks
//! Range, HEAD, error bodies and pagination; hostile requests and slow clients get errors
//! while others are served; a bundle changed after start has its response cut; 16 pulls run
//! at once; and containerd fetches by the original reference through the mirror config.

use crate::harness::{build_fixture, build_spec, fixture, sha256_hex};
use crate::util::containerd::Containerd;
use crate::util::oci::{write_layout, TestLayout};
use crate::util::registry::make_tls;
use crate::util::skopeo::skopeo;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How a test server is reached.
#[derive(Default, Clone)]
struct Access {
    /// CA certificate file, when serving TLS.
    ca: Option<PathBuf>,
    /// A folder with `ca.crt`, for skopeo's `--*-cert-dir`.
    cert_dir: Option<PathBuf>,
    /// `user:password`, when basic auth is on.
    creds: Option<String>,
}

/// A running `ferry serve` on a port of its own choosing (`--listen 127.0.0.1:0`).
struct Server {
    child: Child,
    addr: String,
    doc: Value,
    log: PathBuf,
    access: Access,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(inputs: &[&Path], extra: &[&str], access: Access) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("serve.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .arg("serve")
            .args(inputs)
            .args(["--listen", "127.0.0.1:0", "--json", "--access-log"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        // The start-up document is pretty-printed: it ends with a `}` line.
        let mut text = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        loop {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap() == 0 {
                let status = child.wait().unwrap();
                panic!(
                    "ferry serve exited ({status}) before it listened: {text}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            text.push_str(&line);
            if line == "}\n" {
                break;
            }
        }
        let doc: Value = serde_json::from_str(&text).unwrap();
        let addr = doc["listening"].as_str().unwrap().to_string();
        Server {
            child,
            addr,
            doc,
            log,
            access,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn scheme(&self) -> &str {
        if self.access.ca.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// Stops it with SIGTERM; returns whether it exited 0, and its log.
    fn stop(mut self) -> (bool, String) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = self.child.wait().unwrap();
        (status.success(), self.log())
    }

    /// Peak resident memory so far, in KiB.
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// skopeo's flags for reading from this server.
    fn src_flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        match &self.access.cert_dir {
            Some(d) => flags.push(format!("--src-cert-dir={}", d.display())),
            None => flags.push("--src-tls-verify=false".into()),
        }
        if let Some(c) = &self.access.creds {
            flags.push(format!("--src-creds={c}"));
        }
        flags
    }

    fn inspect_flags(&self) -> Vec<String> {
        self.src_flags()
            .into_iter()
            .map(|f| f.replace("--src-", "--"))
            .collect()
    }

    /// `curl` of a path (sent as is, `..` and `%2F` included) with extra arguments.
    fn curl(&self, path: &str, args: &[&str]) -> Reply {
        let tmp = tempfile::tempdir().unwrap();
        let (h, b) = (tmp.path().join("h"), tmp.path().join("b"));
        let mut cmd = Command::new(crate::util::require_tool("curl", "curl"));
        cmd.args([
            "-sS",
            "--path-as-is",
            "--max-time",
            "60",
            "-w",
            "%{http_code}",
        ])
        .arg("-D")
        .arg(&h)
        .arg("-o")
        .arg(&b);
        if let Some(ca) = &self.access.ca {
            cmd.arg("--cacert").arg(ca);
        }
        if let Some(c) = &self.access.creds {
            cmd.args(["-u", c]);
        }
        let out = cmd
            .args(args)
            .arg(format!("{}://{}{path}", self.scheme(), self.addr))
            .output()
            .unwrap();
        Reply {
            status: String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .unwrap_or(0),
            headers: std::fs::read_to_string(&h).unwrap_or_default(),
            body: std::fs::read(&b).unwrap_or_default(),
            curl_exit: out.status.code().unwrap_or(-1),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What curl got.
struct Reply {
    status: u16,
    headers: String,
    body: Vec<u8>,
    curl_exit: i32,
}

impl Reply {
    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    /// The first error code of a spec error body.
    fn code(&self) -> String {
        let v: Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)));
        v["errors"][0]["code"].as_str().unwrap_or("").to_string()
    }

    fn message(&self) -> String {
        let v: Value = serde_json::from_slice(&self.body).unwrap();
        v["errors"][0]["message"].as_str().unwrap_or("").to_string()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// The images of a bundle: (registry, repository path, tag, digest).
fn images_of(server: &Server) -> Vec<(String, String, String, String)> {
    server.doc["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["registry"].as_str().unwrap().to_string(),
                i["names"][0].as_str().unwrap().to_string(),
                i["tag"].as_str().unwrap().to_string(),
                i["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A TLS certificate for 127.0.0.1 and its CA, written into `dir`.
fn tls_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    let (ca, cert, key) = make_tls();
    let certs_d = dir.join("certs.d");
    std::fs::create_dir_all(&certs_d).unwrap();
    std::fs::write(certs_d.join("ca.crt"), &ca).unwrap();
    std::fs::write(dir.join("ca.crt"), &ca).unwrap();
    std::fs::write(dir.join("server.crt"), cert).unwrap();
    std::fs::write(dir.join("server.key"), key).unwrap();
    (
        dir.join("server.crt"),
        dir.join("server.key"),
        dir.join("ca.crt"),
        certs_d,
    )
}

/// Pulls every image with `skopeo copy --all --preserve-digests` into a new OCI layout and
/// checks the digests, and every pulled blob's bytes against the extracted bundle's.
fn pull_every_image_and_compare(server: &Server, extracted_blobs: &Path) {
    let out = tempfile::tempdir().unwrap();
    let images = images_of(server);
    assert_eq!(images.len(), 7, "the fixture has 7 images");
    for (_, path, tag, digest) in &images {
        let mut args: Vec<String> = vec!["copy".into(), "--all".into(), "--quiet".into()];
        args.extend(["--preserve-digests".into(), "--insecure-policy".into()]);
        args.extend(server.src_flags());
        args.push(format!("docker://{}/{path}:{tag}", server.addr));
        args.push(format!(
            "oci:{}:{tag}-{}",
            out.path().display(),
            path.replace('/', "-")
        ));
        skopeo(&args.iter().map(String::as_str).collect::<Vec<_>>());
        // By tag and by digest, the manifest bytes hash to the bundle's digest.
        for reference in [format!("{path}:{tag}"), format!("{path}@{digest}")] {
            let mut args = vec!["inspect".to_string(), "--raw".to_string()];
            args.extend(server.inspect_flags());
            args.push(format!("docker://{}/{reference}", server.addr));
            let raw = skopeo(&args.iter().map(String::as_str).collect::<Vec<_>>());
            assert_eq!(
                format!("sha256:{}", sha256_hex(&raw)),
                *digest,
                "{reference}"
            );
        }
    }
    let index: Value =
        serde_json::from_slice(&std::fs::read(out.path().join("index.json")).unwrap()).unwrap();
    let mut pulled: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap())
        .collect();
    let mut wanted: Vec<&str> = images.iter().map(|i| i.3.as_str()).collect();
    pulled.sort();
    wanted.sort();
    assert_eq!(
        pulled, wanted,
        "the pulled layout has exactly the bundle's digests"
    );
    let mut blobs = 0;
    for entry in std::fs::read_dir(out.path().join("blobs/sha256")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let bytes = std::fs::read(entry.path()).unwrap();
        assert_eq!(sha256_hex(&bytes), name, "pulled blob {name}");
        let original = std::fs::read(extracted_blobs.join(&name))
            .unwrap_or_else(|_| panic!("pulled blob {name} is not in the bundle"));
        assert!(bytes == original, "blob {name} differs from the bundle's");
        blobs += 1;
    }
    assert!(blobs >= 20, "only {blobs} blobs pulled");
}

/// The fixture built and extracted once per test: (bundle, extracted root).
fn fixture_bundle(dir: &Path) -> (PathBuf, PathBuf) {
    let bundle = dir.join("agent-security-1.4.0.tar.gz");
    build_fixture(&bundle, 0);
    let out = dir.join("x");
    std::fs::create_dir_all(&out).unwrap();
    crate::harness::ferry()
        .args(["extract", "--quiet"])
        .arg(&bundle)
        .arg("-C")
        .arg(&out)
        .assert()
        .success();
    let root = std::fs::read_dir(&out)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    (bundle, root)
}

#[test]
fn skopeo_copies_every_fixture_image_plain_tls_and_tls_with_auth() {
    let tmp = tempfile::tempdir().unwrap();
    let (bundle, root) = fixture_bundle(tmp.path());
    let blobs = root.join("images/blobs/sha256");
    let (cert, key, ca, cert_dir) = tls_files(tmp.path());
    let htpasswd = tmp.path().join("htpasswd");
    let hash = bcrypt::hash("s3cret", 5).unwrap();
    std::fs::write(&htpasswd, format!("lab:{hash}\n")).unwrap();
    let tls_args = [
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    let tls = Access {
        ca: Some(ca.clone()),
        cert_dir: Some(cert_dir.clone()),
        creds: None,
    };
    // Plain HTTP, from the bundle file and from the extracted folder.
    for input in [&bundle, &root] {
        let s = Server::start(&[input], &[], Access::default());
        pull_every_image_and_compare(&s, &blobs);
        let (ok, log) = s.stop();
        assert!(ok, "{log}");
        assert!(log.contains("SIGTERM: stopped listening"), "{log}");
    }
    let s = Server::start(&[&bundle], &tls_args, tls.clone());
    assert_eq!(
        s.doc["url"].as_str().unwrap(),
        format!("https://{}", s.addr)
    );
    pull_every_image_and_compare(&s, &blobs);
    drop(s);
    let mut args = tls_args.to_vec();
    args.extend(["--htpasswd", htpasswd.to_str().unwrap()]);
    let authed = Access {
        creds: Some("lab:s3cret".into()),
        ..tls
    };
    let s = Server::start(&[&bundle], &args, authed);
    pull_every_image_and_compare(&s, &blobs);
    // Without credentials, or with wrong ones: 401 and a challenge.
    for creds in [None, Some("lab:wrong".to_string())] {
        let r = Server::start(
            &[&bundle],
            &args,
            Access {
                creds: creds.clone(),
                ..s.access.clone()
            },
        )
        .curl("/v2/", &[]);
        assert_eq!(r.status, 401, "{creds:?}");
        assert_eq!(r.code(), "UNAUTHORIZED");
        assert!(r
            .header("www-authenticate")
            .unwrap()
            .starts_with("Basic realm="));
    }
}

/// A bundle of the hand-written test layout (1 MiB layers, read in place from stored
/// members), with two tags of one image, two registries sharing a path, and an index.
fn layout_bundle(dir: &Path) -> (PathBuf, TestLayout) {
    let layout = write_layout(&dir.join("layout"), 3);
    add_referrer(&dir.join("layout"), &layout.images[0].digest);
    let spec = [
        "name: served",
        "version: '1.0'",
        "images:",
        "  - ref: docker.io/team/app1:1.0",
        "    from: oci:layout:app1",
        "  - ref: docker.io/team/app1:latest",
        "    from: oci:layout:app1",
        "  - ref: quay.io/team/app1:1.0",
        "    from: oci:layout:app2",
        "  - ref: docker.io/team/app1:sbom",
        "    from: oci:layout:app1-sbom",
        "  - ref: registry.example.com/team/multi:1.0",
        "    from: oci:layout:multi",
        "",
    ]
    .join("\n");
    std::fs::write(dir.join("ferry.yaml"), spec).unwrap();
    let bundle = dir.join("served-1.0.tar.gz");
    build_spec(&dir.join("ferry.yaml"), &bundle, 0);
    (bundle, layout)
}

/// An SBOM artifact whose `subject` is `subject`, named `app1-sbom` in the layout.
fn add_referrer(layout: &Path, subject: &str) -> String {
    let put = |bytes: &[u8]| {
        let hex = sha256_hex(bytes);
        std::fs::write(layout.join("blobs/sha256").join(&hex), bytes).unwrap();
        (format!("sha256:{hex}"), bytes.len())
    };
    let (empty, empty_size) = put(b"{}");
    let (sbom, sbom_size) = put(br#"{"bomFormat":"CycloneDX","specVersion":"1.5"}"#);
    let subject_size = std::fs::metadata(
        layout
            .join("blobs/sha256")
            .join(subject.trim_start_matches("sha256:")),
    )
    .unwrap()
    .len();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.cyclonedx+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": empty_size},
        "layers": [{"mediaType": "application/vnd.cyclonedx+json", "digest": sbom, "size": sbom_size}],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject, "size": subject_size},
        "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
    });
    let (digest, size) = put(&serde_json::to_vec(&manifest).unwrap());
    let index_path = layout.join("index.json");
    let mut index: Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    index["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest, "size": size,
            "annotations": {"org.opencontainers.image.ref.name": "app1-sbom"},
        }));
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    digest
}

fn blob_bytes(dir: &Path, digest: &str) -> Vec<u8> {
    std::fs::read(
        dir.join("layout/blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )
    .unwrap()
}

/// The biggest layer of `app1`: its own 1 MiB one, many stored blocks long.
fn big_layer(layout: &TestLayout) -> (String, u64) {
    layout.images[0]
        .blobs
        .iter()
        .max_by_key(|b| b.1)
        .cloned()
        .unwrap()
}

#[test]
fn http_answers_ranges_heads_errors_and_pages() {
    let tmp = tempfile::tempdir().unwrap();
    let (bundle, layout) = layout_bundle(tmp.path());
    let s = Server::start(&[&bundle], &["--prefix", "mirror"], Access::default());
    let app1 = &layout.images[0].digest;
    let r = s.curl("/v2/", &[]);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"{}"[..]));
    assert_eq!(
        r.header("docker-distribution-api-version").as_deref(),
        Some("registry/2.0")
    );
    // HEAD of a manifest: the headers of a GET, no body.
    let r = s.curl("/v2/team/app1/manifests/latest?ns=docker.io", &["-I"]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("docker-content-digest").as_ref(), Some(app1));
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/vnd.oci.image.manifest.v1+json")
    );
    // curl -I writes the headers where the body would go: no manifest follows them.
    assert!(!String::from_utf8_lossy(&r.body).contains("schemaVersion"));
    // The layer, whole and in parts, straight from the bundle file.
    let (layer, size) = big_layer(&layout);
    let bytes = blob_bytes(tmp.path(), &layer);
    let path = format!("/v2/team/app1/blobs/{layer}?ns=docker.io");
    let r = s.curl(&path, &[]);
    assert_eq!((r.status, r.body.len() as u64), (200, size));
    assert!(r.body == bytes);
    assert_eq!(r.header("accept-ranges").as_deref(), Some("bytes"));
    for (range, first, last) in [
        ("1000-200000", 1000, 200000),
        ("65535-65536", 65535, 65536),
        (&format!("{}-", size - 10), size - 10, size - 1),
        ("-100", size - 100, size - 1),
        (&format!("0-{}", size + 50), 0, size - 1),
    ] {
        let r = s.curl(&path, &["-r", range]);
        assert_eq!(r.status, 206, "{range}");
        assert_eq!(
            r.header("content-range").unwrap(),
            format!("bytes {first}-{last}/{size}")
        );
        assert!(r.body == bytes[first as usize..=last as usize], "{range}");
    }
    let r = s.curl(&path, &["-r", &format!("{size}-")]);
    assert_eq!(r.status, 416);
    assert_eq!(
        r.header("content-range").unwrap(),
        format!("bytes */{size}")
    );
    // Unknown names, tags, digests; a blob of another repository.
    let missing = format!("sha256:{}", "0".repeat(64));
    let quay_only = &layout.images[1].blobs.iter().max_by_key(|b| b.1).unwrap().0;
    for (p, status, code) in [
        (
            "/v2/team/nope/manifests/1.0".to_string(),
            404,
            "NAME_UNKNOWN",
        ),
        (
            "/v2/team/multi/manifests/2.0".into(),
            404,
            "MANIFEST_UNKNOWN",
        ),
        (
            format!("/v2/team/multi/manifests/{missing}"),
            404,
            "MANIFEST_UNKNOWN",
        ),
        (
            format!("/v2/team/multi/blobs/{missing}"),
            404,
            "BLOB_UNKNOWN",
        ),
        (
            format!("/v2/team/multi/blobs/{quay_only}"),
            404,
            "BLOB_UNKNOWN",
        ),
        (
            "/v2/team/app1/manifests/1.0?ns=ghcr.io".into(),
            404,
            "NAME_UNKNOWN",
        ),
        ("/v2/team/nope/tags/list".into(), 404, "NAME_UNKNOWN"),
    ] {
        let r = s.curl(&p, &[]);
        assert_eq!((r.status, r.code().as_str()), (status, code), "{p}");
    }
    for method in ["PUT", "POST", "PATCH", "DELETE"] {
        let r = s.curl("/v2/team/multi/blobs/uploads/", &["-X", method]);
        assert_eq!(
            (r.status, r.code().as_str()),
            (405, "UNSUPPORTED"),
            "{method}"
        );
        assert_eq!(r.header("allow").as_deref(), Some("GET, HEAD"));
    }
    // Two registries share team/app1: refused without ns, naming both; ns picks one.
    let r = s.curl("/v2/team/app1/manifests/1.0", &[]);
    assert_eq!(r.status, 404);
    assert!(
        r.message().contains("docker.io/team/app1") && r.message().contains("quay.io/team/app1"),
        "{}",
        r.message()
    );
    for (p, want) in [
        ("/v2/team/app1/manifests/1.0?ns=docker.io", app1),
        (
            "/v2/team/app1/manifests/1.0?ns=quay.io",
            &layout.images[1].digest,
        ),
        (
            "/v2/quay.io/team/app1/manifests/1.0",
            &layout.images[1].digest,
        ),
        (
            "/v2/mirror/team/multi/manifests/1.0",
            &layout.images[2].digest,
        ),
        ("/v2/team/multi/manifests/1.0", &layout.images[2].digest),
    ] {
        let r = s.curl(p, &[]);
        assert_eq!(r.status, 200, "{p}");
        assert_eq!(
            r.header("docker-content-digest").as_ref(),
            Some(want),
            "{p}"
        );
        assert_eq!(format!("sha256:{}", sha256_hex(&r.body)), *want, "{p}");
    }
    check_pagination(&s);
    let r = s.curl(
        &format!("/v2/team/multi/referrers/{}", layout.images[2].digest),
        &[],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["manifests"], serde_json::json!([]));
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/vnd.oci.image.index.v1+json")
    );
    // The SBOM names app1 as its subject: listed, also when filtered by its type.
    let sbom = s.curl("/v2/team/app1/manifests/sbom?ns=docker.io", &[]);
    let sbom = sbom.header("docker-content-digest").unwrap();
    let referrers = format!("/v2/team/app1/referrers/{app1}?ns=docker.io");
    for query in ["", "&artifactType=application/vnd.cyclonedx%2Bjson"] {
        let r = s.curl(&format!("{referrers}{query}"), &[]);
        let listed = &r.json()["manifests"];
        assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
        assert_eq!(listed[0]["artifactType"], "application/vnd.cyclonedx+json");
        assert_eq!(listed[0]["digest"].as_str(), Some(sbom.as_str()));
    }
    let r = s.curl(
        &format!("{referrers}&artifactType=application/example"),
        &[],
    );
    assert_eq!(r.json()["manifests"], serde_json::json!([]));
    assert_eq!(
        r.header("oci-filters-applied").as_deref(),
        Some("artifactType")
    );
}

/// `_catalog` and `tags/list` page with `n` and `last`, and the `Link` header leads on.
fn check_pagination(s: &Server) {
    let all = s.curl("/v2/_catalog", &[]).json()["repositories"].clone();
    let all: Vec<String> = serde_json::from_value(all).unwrap();
    assert!(all.contains(&"mirror/team/multi".to_string()), "{all:?}");
    assert!(all.contains(&"team/app1".to_string()), "{all:?}");
    let mut seen = Vec::new();
    let mut next = Some("/v2/_catalog?n=2".to_string());
    while let Some(path) = next {
        let r = s.curl(&path, &[]);
        assert_eq!(r.status, 200, "{path}");
        let page: Vec<String> = serde_json::from_value(r.json()["repositories"].clone()).unwrap();
        assert!(page.len() <= 2);
        seen.extend(page);
        next = r.header("link").map(|l| {
            l.trim_start_matches('<')
                .split_once('>')
                .unwrap()
                .0
                .to_string()
        });
    }
    assert_eq!(seen, all);
    let r = s.curl("/v2/team/app1/tags/list?ns=docker.io&n=1", &[]);
    assert_eq!(r.json()["tags"], serde_json::json!(["1.0"]));
    assert!(r.header("link").unwrap().contains("last=1.0"));
    let r = s.curl("/v2/team/app1/tags/list?ns=docker.io&n=1&last=1.0", &[]);
    assert_eq!(r.json()["tags"], serde_json::json!(["latest"]));
    assert!(r.header("link").unwrap().contains("last=latest"));
    let r = s.curl("/v2/team/app1/tags/list?ns=docker.io&n=5&last=latest", &[]);
    assert_eq!(r.json()["tags"], serde_json::json!(["sbom"]));
    assert!(r.header("link").is_none());
    let r = s.curl("/v2/_catalog?n=x", &[]);
    assert_eq!(
        (r.status, r.code().as_str()),
        (400, "PAGINATION_NUMBER_INVALID")
    );
}

#[test]
fn hostile_requests_get_errors_and_other_clients_are_served() {
    let tmp = tempfile::tempdir().unwrap();
    let (bundle, layout) = layout_bundle(tmp.path());
    let s = Server::start(&[&bundle], &["--header-timeout", "2"], Access::default());
    let multi = &layout.images[2].digest;
    // Slow clients first: they hold connections while everything else is asked.
    let mut slow: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut c = TcpStream::connect(&s.addr).unwrap();
            c.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n").unwrap();
            c
        })
        .collect();
    let long = "a".repeat(300);
    let huge = format!("/v2/{}/manifests/1.0", "b/".repeat(40_000));
    let cases: Vec<(String, u16, &str)> = vec![
        (
            "/v2/team/../team/multi/manifests/1.0".into(),
            400,
            "NAME_INVALID",
        ),
        ("/v2/../../etc/passwd/blobs/x".into(), 400, "NAME_INVALID"),
        ("/v2/team%2Fmulti/manifests/1.0".into(), 400, "NAME_INVALID"),
        (
            "/v2/team/multi%2F..%2F..%2Fetc/tags/list".into(),
            400,
            "NAME_INVALID",
        ),
        (
            format!("/v2/team/{long}/manifests/1.0"),
            400,
            "NAME_INVALID",
        ),
        (
            format!("/v2/team/multi/blobs/sha512:{}", "a".repeat(128)),
            400,
            "DIGEST_INVALID",
        ),
        (
            "/v2/team/multi/blobs/sha256:abc".into(),
            400,
            "DIGEST_INVALID",
        ),
        (
            format!("/v2/team/multi/blobs/sha256:{}", "A".repeat(64)),
            400,
            "DIGEST_INVALID",
        ),
        (
            format!("/v2/team/multi/manifests/md5:{}", "a".repeat(32)),
            400,
            "DIGEST_INVALID",
        ),
        (
            "/v2/team/multi/manifests/-bad-tag".into(),
            400,
            "MANIFEST_INVALID",
        ),
        ("/etc/passwd".into(), 404, "NAME_UNKNOWN"),
    ];
    for (path, status, code) in &cases {
        let r = s.curl(path, &[]);
        assert_eq!((r.status, r.code().as_str()), (*status, *code), "{path}");
    }
    // A request line too long for the server's buffer is refused without a crash.
    let r = s.curl(&huge, &[]);
    assert!(r.status >= 400 || r.curl_exit != 0, "status {}", r.status);
    let (layer, size) = big_layer(&layout);
    let r = s.curl(
        &format!("/v2/team/app1/blobs/{layer}?ns=docker.io"),
        &["-r", &format!("{}-{}", size + 1, size + 100)],
    );
    assert_eq!(r.status, 416);
    // Meanwhile, a real client is served.
    let mut args = vec!["inspect", "--raw", "--tls-verify=false"];
    let reference = format!("docker://{}/team/multi:1.0", s.addr);
    args.push(&reference);
    let raw = skopeo(&args);
    assert_eq!(format!("sha256:{}", sha256_hex(&raw)), *multi);
    // The slow clients are closed once their headers are late, without an answer body.
    for c in &mut slow {
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let start = Instant::now();
        let mut buf = Vec::new();
        let got = c.read_to_end(&mut buf);
        assert!(got.is_ok(), "a slow client was not closed: {got:?}");
        assert!(start.elapsed() < Duration::from_secs(30));
        let text = String::from_utf8_lossy(&buf);
        assert!(buf.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
    }
    let r = s.curl(&format!("/v2/team/multi/manifests/{multi}"), &[]);
    assert_eq!(r.status, 200);
    let (ok, log) = s.stop();
    assert!(ok, "{log}");
}

#[test]
fn a_bundle_changed_after_start_has_its_responses_cut_and_the_log_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let (bundle, layout) = layout_bundle(tmp.path());
    let s = Server::start(&[&bundle], &[], Access::default());
    let (layer, size) = big_layer(&layout);
    let bytes = blob_bytes(tmp.path(), &layer);
    let path = format!("/v2/team/app1/blobs/{layer}?ns=docker.io");
    assert!(s.curl(&path, &[]).body == bytes);
    // Change one byte of the layer inside the bundle file, in place (stored blocks keep
    // layer bytes verbatim, so a run of them is found in the file).
    let file = std::fs::read(&bundle).unwrap();
    let probe = &bytes[300_000..300_064];
    let at = file
        .windows(probe.len())
        .position(|w| w == probe)
        .expect("the layer is stored verbatim");
    {
        use std::io::{Seek, SeekFrom};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&bundle)
            .unwrap();
        f.seek(SeekFrom::Start(at as u64 + 10)).unwrap();
        f.write_all(&[file[at + 10] ^ 0xff]).unwrap();
    }
    let r = s.curl(&path, &[]);
    assert_eq!(r.status, 200);
    assert!((r.body.len() as u64) < size, "the whole blob was sent");
    assert_ne!(r.curl_exit, 0, "curl saw a complete response");
    let r = s.curl(&path, &["-r", "0-99"]);
    assert_eq!(r.status, 500);
    assert!(
        r.message().contains("changed after it was verified"),
        "{}",
        r.message()
    );
    // Manifests and configs are held in memory, checked at start: still served.
    let r = s.curl("/v2/team/multi/manifests/1.0", &[]);
    assert_eq!(r.status, 200);
    let (_, log) = s.stop();
    assert!(
        log.contains(&format!(
            "cut the response of blob {layer}: its bytes no longer match"
        )),
        "{log}"
    );
    assert!(log.contains("changed after it was verified"), "{log}");
    assert!(
        log.contains(&format!("refused a Range response of {layer}")),
        "{log}"
    );
}

#[test]
fn sixteen_pulls_at_once_complete_and_memory_stays_flat() {
    let tmp = tempfile::tempdir().unwrap();
    let (bundle, layout) = layout_bundle(tmp.path());
    let s = Server::start(&[&bundle], &[], Access::default());
    let pull = |n: usize| {
        let dest = tmp.path().join(format!("pulled-{n}"));
        Command::new("skopeo")
            .args([
                "copy",
                "--all",
                "--quiet",
                "--insecure-policy",
                "--src-tls-verify=false",
            ])
            .arg(format!("docker://{}/team/multi:1.0", s.addr))
            .arg(format!("oci:{}:multi", dest.display()))
            .spawn()
            .unwrap()
    };
    let mut first = pull(100);
    assert!(first.wait().unwrap().success());
    let after_one = s.peak_rss_kib();
    let children: Vec<Child> = (0..16).map(pull).collect();
    for (n, mut c) in children.into_iter().enumerate() {
        assert!(c.wait().unwrap().success(), "pull {n} failed: {}", s.log());
    }
    let after_sixteen = s.peak_rss_kib();
    for n in 0..16 {
        let index = std::fs::read(tmp.path().join(format!("pulled-{n}/index.json"))).unwrap();
        let index: Value = serde_json::from_slice(&index).unwrap();
        assert_eq!(
            index["manifests"][0]["digest"],
            layout.images[2].digest.as_str()
        );
    }
    assert!(
        after_sixteen < after_one + 16 * 1024,
        "peak RSS grew from {after_one} KiB to {after_sixteen} KiB"
    );
}

#[test]
fn two_bundles_that_disagree_on_a_tag_are_refused_naming_both() {
    let tmp = tempfile::tempdir().unwrap();
    let (one, _) = layout_bundle(&tmp.path().join("one"));
    let two_dir = tmp.path().join("two");
    std::fs::create_dir_all(&two_dir).unwrap();
    write_layout(&two_dir.join("layout"), 4);
    std::fs::write(
        two_dir.join("ferry.yaml"),
        "name: other\nversion: '2'\nimages:\n  - ref: registry.example.com/team/multi:1.0\n    from: oci:layout:multi\n",
    )
    .unwrap();
    let two = two_dir.join("other-2.tar.gz");
    build_spec(&two_dir.join("ferry.yaml"), &two, 0);
    let out = crate::harness::ferry()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg(&one)
        .arg(&two)
        .assert()
        .code(1)
        .get_output()
        .clone();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("registry.example.com/team/multi:1.0"), "{err}");
    assert!(
        err.contains(one.to_str().unwrap()) && err.contains(two.to_str().unwrap()),
        "{err}"
    );
    // Bundles that agree merge: the fixture and the layout bundle.
    let fixture_bundle = tmp.path().join("fixture.tar.gz");
    build_fixture(&fixture_bundle, 0);
    let s = Server::start(&[&one, &fixture_bundle], &[], Access::default());
    assert_eq!(s.doc["bundles"].as_array().unwrap().len(), 2);
    assert_eq!(
        s.curl("/v2/agent-security/platform/manifests/1.4.0", &[])
            .status,
        200
    );
    assert_eq!(s.curl("/v2/team/multi/manifests/1.0", &[]).status, 200);
}

#[test]
fn the_bundle_is_verified_at_start_as_verify_does() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("b.tar.gz");
    build_fixture(&bundle, 0);
    // Unsigned, and a signature required: refused before listening.
    let out = crate::harness::ferry()
        .args(["serve", "--listen", "127.0.0.1:0", "--require-signature"])
        .arg(&bundle)
        .assert()
        .code(1)
        .get_output()
        .clone();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not signed") || err.contains("signature"),
        "{err}"
    );
    // One byte changed in the middle of the file: the verifying pass finds it.
    let mut bytes = std::fs::read(&bundle).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&bundle, bytes).unwrap();
    crate::harness::ferry()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg(&bundle)
        .assert()
        .code(1);
}

#[test]
fn listening_beyond_loopback_without_tls_needs_a_flag_and_says_why() {
    let out = crate::harness::ferry()
        .args(["serve", "--listen", "0.0.0.0:0"])
        .arg(fixture().join("ferry.yaml"))
        .assert()
        .code(2)
        .get_output()
        .clone();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("without TLS") && err.contains("--allow-insecure-listen"),
        "{err}"
    );
}

#[test]
fn containerd_fetches_by_the_original_reference_through_the_mirror_config() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("b.tar.gz");
    build_fixture(&bundle, 0);
    let ctd = Containerd::start();
    let s = Server::start(&[&bundle], &[], Access::default());
    let hosts = ctd.dir().join("hosts");
    crate::harness::ferry()
        .args([
            "serve",
            "--mirror-config",
            "containerd",
            "--mirror-endpoint",
            &s.addr,
        ])
        .arg("--mirror-dir")
        .arg(&hosts)
        .arg(&bundle)
        .assert()
        .success();
    let toml = std::fs::read_to_string(hosts.join("registry.permit.io/hosts.toml")).unwrap();
    assert!(
        toml.contains(&format!("[host.\"http://{}\"]", s.addr)),
        "{toml}"
    );
    let hosts_arg = hosts.to_str().unwrap();
    for (reference, extra) in [
        ("registry.permit.io/agent-security/gateway:1.4.0", None),
        (
            "registry.permit.io/agent-security/platform:1.4.0",
            Some("--all-platforms"),
        ),
    ] {
        let mut args = vec![
            "-n",
            "ferry-test",
            "content",
            "fetch",
            "--hosts-dir",
            hosts_arg,
        ];
        args.extend(extra);
        args.push(reference);
        let out = ctd.ctr(&args);
        assert!(
            out.status.success(),
            "ctr content fetch {reference} failed: {}\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            s.log(),
            ctd.log()
        );
    }
    let images = ctd.ctr(&["-n", "ferry-test", "images", "ls"]);
    let listed = String::from_utf8_lossy(&images.stdout);
    for (_, path, tag, digest) in images_of(&s) {
        if path.ends_with("gateway") || path.ends_with("platform") {
            let line = listed
                .lines()
                .find(|l| l.starts_with(&format!("registry.permit.io/{path}:{tag} ")))
                .unwrap_or_else(|| panic!("{path}:{tag} not in {listed}"));
            assert!(line.contains(&digest), "{line}");
        }
    }
    // Every layer came from ferry serve, asked for with containerd's `ns`.
    let log = s.log();
    assert!(
        log.contains("/v2/agent-security/platform/manifests/1.4.0?ns=registry.permit.io"),
        "{log}"
    );
    assert!(!log.contains("\" 404 "), "{log}");
}
