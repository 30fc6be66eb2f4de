//! Pushing images to a real registry: round trip against skopeo, auth, TLS, faults and
//! retries, dry runs, idempotence, resumption of interrupted pushes, and a bundle's blobs read
//! back in place with their digests.

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry::oci::digest::Digest;
use ferry::registry::push::{
    push, push_async, BlobAction, BlobSource, ImageToPush, LayoutSource, NoProgress, PushError,
    PushOptions, PushProgress, PushReport,
};
use ferry::registry::{CredentialSource, RegistryError, RegistryOptions, RetryPolicy};
use sha2::{Digest as _, Sha256};

use crate::util::faultproxy::{BearerGate, Fault, FaultProxy, Rule};
use crate::util::oci::{write_layout, TestLayout};
use crate::util::registry::{Registry, Setup};
use crate::util::skopeo;

fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

/// Options for a plain-HTTP registry with quick retries.
fn opts(host: &str) -> PushOptions {
    let mut r = RegistryOptions::new(host);
    r.plain_http = true;
    r.credentials = CredentialSource::Anonymous;
    r.retry = RetryPolicy {
        max_attempts: 6,
        base_delay: Duration::from_millis(50),
        max_delay: Duration::from_secs(2),
    };
    r.read_timeout = Duration::from_secs(5);
    PushOptions::new(r)
}

fn fixture(salt: u64) -> (tempfile::TempDir, TestLayout, Arc<LayoutSource>) {
    let dir = tempfile::tempdir().unwrap();
    let layout = write_layout(dir.path(), salt);
    let source = Arc::new(LayoutSource::open(dir.path()).unwrap());
    (dir, layout, source)
}

fn run(o: &PushOptions, src: Arc<dyn BlobSource>, images: &[ImageToPush]) -> PushReport {
    push(o, src, images, Arc::new(NoProgress)).unwrap_or_else(|e| panic!("push failed: {e}"))
}

fn unique_bytes(layout: &TestLayout) -> u64 {
    layout.unique_blobs().iter().map(|b| b.1).sum()
}

/// Every image resolves in `host` to its digest, and skopeo pulls back identical blobs.
fn assert_round_trip(host: &str, layout: &TestLayout, images: &[ImageToPush], src: &Path) {
    let pulled = tempfile::tempdir().unwrap();
    for (img, want) in images.iter().zip(&layout.images) {
        let reference = format!("{host}/{}:{}", img.target_repo, img.tag);
        let raw = skopeo::inspect_raw(&reference);
        assert_eq!(sha256(&raw), want.digest, "{reference}");
        assert_eq!(
            raw,
            std::fs::read(src.join("blobs/sha256").join(&want.digest[7..])).unwrap()
        );
        skopeo::pull_all(&reference, pulled.path(), &want.name);
    }
    for (digest, size) in layout.unique_blobs() {
        let p = pulled.path().join("blobs/sha256").join(&digest[7..]);
        let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{digest} not pulled: {e}"));
        assert_eq!((sha256(&bytes), bytes.len() as u64), (digest, size));
    }
}

#[derive(Default)]
struct Recorder {
    planned: AtomicU64,
    sent: AtomicU64,
    done: Mutex<Vec<(String, BlobAction)>>,
    manifests: Mutex<Vec<String>>,
}

impl PushProgress for Recorder {
    fn planned(&self, total: u64, _blobs: usize) {
        self.planned.store(total, Ordering::SeqCst);
    }
    fn blob_bytes(&self, _d: &Digest, n: u64) {
        self.sent.fetch_add(n, Ordering::SeqCst);
    }
    fn blob_done(&self, d: &Digest, _size: u64, a: BlobAction) {
        self.done.lock().unwrap().push((d.to_string(), a));
    }
    fn manifest_pushed(&self, r: &str, _d: &Digest) {
        self.manifests.lock().unwrap().push(r.to_string());
    }
}

#[test]
fn round_trip_multi_arch_and_shared_layer_then_idempotent() {
    let reg = Registry::start(Setup::Plain);
    let (dir, layout, src) = fixture(1);
    let images = layout.to_push("mirror");
    let o = opts(&reg.host());
    let rec = Arc::new(Recorder::default());
    let report = push(&o, src.clone(), &images, rec.clone()).unwrap();

    assert_eq!(report.pushed.len(), 3);
    for (p, img) in report.pushed.iter().zip(&layout.images) {
        assert_eq!(p.digest.to_string(), img.digest);
        assert!(p
            .reference
            .starts_with(&format!("{}/mirror/team/", reg.host())));
    }
    // The 512 KiB base layer is shared by app1 and app2: sent once, mounted once.
    let unique = layout.unique_blobs();
    assert_eq!(report.blobs_mounted, 1, "{report:#?}");
    assert_eq!(report.blobs_uploaded as usize, unique.len());
    assert_eq!(report.bytes_uploaded, unique_bytes(&layout));
    assert_eq!(report.bytes_sent, report.bytes_uploaded);
    assert_eq!(rec.sent.load(Ordering::SeqCst), report.bytes_sent);
    // 2 + 2 single manifests (by digest and tag) + 2 children + index by digest and tag.
    assert_eq!(report.manifests_pushed, 8);
    assert_round_trip(&reg.host(), &layout, &images, dir.path());

    // Second push: every blob is a HEAD hit, nothing is sent, digests unchanged.
    let again = run(&o, src, &images);
    assert_eq!(
        (again.bytes_sent, again.blobs_uploaded),
        (0, 0),
        "{again:#?}"
    );
    assert_eq!(again.blobs_skipped, report.plan.blobs as u64);
    assert_eq!(again.pushed, report.pushed);
}

#[test]
fn chunked_uploads_round_trip() {
    let reg = Registry::start(Setup::Plain);
    let (dir, layout, src) = fixture(2);
    let images = layout.to_push("");
    let mut o = opts(&reg.host());
    o.registry.plain_http = false;
    let err = push(&o, src.clone(), &images, Arc::new(NoProgress)).unwrap_err();
    assert!(err.to_string().contains("--plain-http"), "{err}");
    o.registry.plain_http = true;
    o.registry.chunk_size = Some(256 * 1024);
    o.concurrency = 2;
    let report = run(&o, src, &images);
    assert_eq!(report.bytes_uploaded, unique_bytes(&layout));
    assert_round_trip(&reg.host(), &layout, &images, dir.path());
}

#[test]
fn dry_run_plans_without_network() {
    let (_dir, layout, src) = fixture(3);
    let images = layout.to_push("p");
    let closed = crate::util::ClosedPort::new();
    let mut o = opts(&closed.host());
    o.dry_run = true;
    let report = run(&o, src, &images);
    assert!(report.pushed.is_empty());
    let plan = &report.plan;
    assert_eq!(plan.images.len(), 3);
    let multi = &plan.images[2];
    assert_eq!(multi.manifests.len(), 3, "two children and the index");
    assert_eq!(
        multi.manifests.last().unwrap().digest.to_string(),
        layout.images[2].digest
    );
    assert_eq!(multi.blobs.len(), 4);
    // The shared base layer counts once per repository.
    let base_size = 512 * 1024;
    assert!(plan.total_bytes > unique_bytes(&layout));
    assert!(plan.total_bytes - unique_bytes(&layout) >= base_size);
}

#[test]
fn basic_auth_right_password_works_wrong_one_fails_once() {
    let reg = Registry::start(Setup::Basic {
        user: "lab".into(),
        password: "s3cret".into(),
    });
    let proxy = FaultProxy::start(reg.port, vec![]);
    let (_dir, layout, src) = fixture(4);
    let images = layout.to_push("");

    let mut o = opts(&proxy.host());
    o.registry.credentials = CredentialSource::Explicit {
        username: "lab".into(),
        password: "s3cret".into(),
    };
    let report = run(&o, src.clone(), &images);
    assert_eq!(report.pushed.len(), 3);

    // The same through a containers auth.json (keyed by the proxy's address).
    let authfile = reg.auth_file.clone().unwrap();
    let text = std::fs::read_to_string(&authfile)
        .unwrap()
        .replace(&reg.host(), &proxy.host());
    let authfile2 = authfile.with_file_name("auth-proxy.json");
    std::fs::write(&authfile2, text).unwrap();
    o.registry.credentials = CredentialSource::AuthFile(authfile2);
    let again = run(&o, src.clone(), &images);
    assert_eq!(again.bytes_sent, 0);

    for creds in [
        CredentialSource::Explicit {
            username: "lab".into(),
            password: "wrong".into(),
        },
        CredentialSource::Anonymous,
    ] {
        o.registry.credentials = creds.clone();
        let before = proxy.requests();
        let err = push(&o, src.clone(), &images, Arc::new(NoProgress)).unwrap_err();
        let sent = proxy.requests() - before;
        match &err {
            PushError::Registry(RegistryError::AuthFailed { registry, .. }) => {
                assert_eq!(registry, &proxy.host())
            }
            other => panic!("{creds:?}: expected AuthFailed, got {other:?}"),
        }
        assert_eq!(err.exit_code(), 2);
        let msg = err.to_string();
        assert!(
            msg.contains(&proxy.host()) && msg.contains("--password-stdin"),
            "{msg}"
        );
        assert!(sent <= 2, "{creds:?}: {sent} requests, expected no retries");
    }
}

#[test]
fn bearer_token_challenges_are_answered() {
    let reg = Registry::start(Setup::Plain);
    let proxy = FaultProxy::start_bearer(
        reg.port,
        BearerGate {
            user: "lab".into(),
            password: "s3cret".into(),
            token_uses: None,
        },
    );
    let (dir, layout, src) = fixture(10);
    let images = layout.to_push("b");
    let mut o = opts(&proxy.host());
    o.registry.credentials = CredentialSource::Explicit {
        username: "lab".into(),
        password: "s3cret".into(),
    };
    let report = run(&o, src.clone(), &images);
    assert_eq!(report.pushed.len(), 3);
    // One token for the ping and about one per repository, not one per request.
    assert!(
        proxy.tokens() <= 8,
        "{} tokens\n{:#?}",
        proxy.tokens(),
        proxy.log()
    );
    assert_round_trip(&reg.host(), &layout, &images, dir.path());
    // One scope per `scope` parameter (the gate refuses space-joined ones): a push asks for
    // pull,push on its repository, and the mount of the shared layer also for pull on the
    // repository it mounts from.
    let scopes = proxy.token_scopes();
    assert!(
        scopes.iter().flatten().all(|s| !s.contains(' ')),
        "{scopes:?}"
    );
    let mount = scopes
        .iter()
        .find(|s| s.len() >= 2)
        .unwrap_or_else(|| panic!("no token request for a mount: {scopes:?}"));
    assert!(
        mount[0].starts_with("repository:b/team/app")
            && mount[0].ends_with(":pull,push")
            && mount[1].starts_with("repository:b/team/app")
            && mount[1].ends_with(":pull")
            && mount[0] != format!("{}:pull,push", mount[1].trim_end_matches(":pull")),
        "{mount:?}"
    );

    o.registry.credentials = CredentialSource::Explicit {
        username: "lab".into(),
        password: "wrong".into(),
    };
    let before = proxy.requests();
    let err = push(&o, src, &images, Arc::new(NoProgress)).unwrap_err();
    assert!(
        matches!(&err, PushError::Registry(RegistryError::AuthFailed { registry, .. }) if *registry == proxy.host()),
        "{err:?}"
    );
    assert!(proxy.requests() - before <= 2);
}

#[test]
fn expired_bearer_tokens_are_renewed_mid_push() {
    let reg = Registry::start(Setup::Plain);
    // Every token is good for two requests only: with one blob at a time, each token runs out
    // right before the streamed PUT of an upload (HEAD, POST, PUT), which must then fetch a
    // new token and start the blob over.
    let proxy = FaultProxy::start_bearer(
        reg.port,
        BearerGate {
            user: "lab".into(),
            password: "s3cret".into(),
            token_uses: Some(2),
        },
    );
    let (dir, layout, src) = fixture(12);
    let images = layout.to_push("");
    let mut o = opts(&proxy.host());
    o.registry.retry.max_attempts = 10;
    o.concurrency = 1;
    o.registry.credentials = CredentialSource::Explicit {
        username: "lab".into(),
        password: "s3cret".into(),
    };
    let report = run(&o, src, &images);
    assert!(
        proxy.tokens() > 5,
        "tokens were renewed: {}",
        proxy.tokens()
    );
    // A mount asks for a token of its own (it also needs pull on the source repository),
    // so the blob after it starts with one use more on its repository's token and gets
    // through without a retry.
    assert!(
        report.retries >= report.blobs_uploaded - report.blobs_mounted,
        "{report:#?}"
    );
    assert_eq!(report.bytes_uploaded, unique_bytes(&layout));
    assert_round_trip(&reg.host(), &layout, &images, dir.path());
}

#[test]
fn tls_with_ca_file_works_and_unknown_ca_suggests_ca_file() {
    let reg = Registry::start(Setup::Tls);
    let (_dir, layout, src) = fixture(5);
    let images = layout.to_push("");
    let mut o = opts(&reg.host());
    o.registry.plain_http = false;

    o.registry.plain_http = true;
    let err = push(&o, src.clone(), &images, Arc::new(NoProgress)).unwrap_err();
    assert!(err.to_string().contains("drop --plain-http"), "{err}");
    o.registry.plain_http = false;

    let err = push(&o, src.clone(), &images, Arc::new(NoProgress)).unwrap_err();
    assert!(
        matches!(
            err,
            PushError::Registry(RegistryError::UntrustedCertificate { .. })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("--ca-file"), "{err}");

    o.registry.ca_file = reg.ca_file.clone();
    let report = run(&o, src, &images);
    let cert_dir = reg.cert_dir.clone().unwrap();
    for (p, img) in report.pushed.iter().zip(&layout.images) {
        let raw = skopeo::skopeo(&[
            "inspect",
            "--raw",
            "--cert-dir",
            cert_dir.to_str().unwrap(),
            &format!("docker://{}", p.reference),
        ]);
        assert_eq!(sha256(&raw), img.digest);
    }
}

#[test]
fn unreachable_registry_is_named() {
    let (_dir, layout, src) = fixture(6);
    let closed = crate::util::ClosedPort::new();
    let host = closed.host();
    let o = opts(&host);
    assert!(o.registry.retry.max_attempts > 1);
    let err = push(&o, src, &layout.to_push(""), Arc::new(NoProgress)).unwrap_err();
    // `Unreachable` itself, not `RetriesExhausted`: nobody listening is not retried.
    assert!(
        matches!(&err, PushError::Registry(RegistryError::Unreachable { registry, .. }) if *registry == host),
        "{err:?}"
    );
    assert!(err.to_string().contains(&host));
}

#[test]
fn faults_are_retried_and_digests_survive() {
    let reg = Registry::start(Setup::Plain);
    let rules = vec![
        // Connection reset in the middle of the 1 MiB layer, twice.
        Rule::new(
            "PUT",
            "/blobs/uploads/",
            Fault::Reset {
                after_body_bytes: 300_000,
            },
            2,
        ),
        Rule::new(
            "HEAD",
            "/blobs/",
            Fault::Status {
                code: 500,
                retry_after: None,
            },
            1,
        ),
        Rule::new(
            "POST",
            "/blobs/uploads/",
            Fault::Status {
                code: 503,
                retry_after: None,
            },
            2,
        ),
        Rule::new(
            "PUT",
            "/manifests/",
            Fault::Status {
                code: 429,
                retry_after: Some(1),
            },
            1,
        ),
        Rule::new("HEAD", "/blobs/", Fault::Stall(Duration::from_secs(3)), 1),
        // A registry that stops reading a 1 MiB body midway and never answers.
        Rule::new(
            "PUT",
            "/blobs/uploads/",
            Fault::Stall(Duration::from_secs(3)),
            1,
        ),
    ];
    let proxy = FaultProxy::start(reg.port, rules);
    let (dir, layout, src) = fixture(7);
    let images = layout.to_push("f");
    let mut o = opts(&proxy.host());
    o.registry.read_timeout = Duration::from_secs(1);
    let report = run(&o, src, &images);
    assert!(
        proxy.pending_rules().is_empty(),
        "{:?}",
        proxy.pending_rules()
    );
    assert!(report.retries >= 8, "{report:#?}\n{:#?}", proxy.log());
    assert!(
        report.bytes_sent > report.bytes_uploaded,
        "reset uploads were re-sent"
    );
    // Retry-After: 1 honoured: the manifest PUT that got the 429 came again at least a second
    // after the 429 was sent (measured by the proxy; a slow machine only makes it later).
    let log = proxy.timed_log();
    let (i, (refused_at, refused)) = log
        .iter()
        .enumerate()
        .find(|(_, (_, l))| l.starts_with("PUT ") && l.contains("code: 429"))
        .expect("the 429 was injected");
    let request = refused.split(" [").next().unwrap();
    let (again_at, _) = log[i + 1..]
        .iter()
        .find(|(_, l)| l == request)
        .unwrap_or_else(|| panic!("{request} was not retried: {log:#?}"));
    assert!(
        again_at.duration_since(*refused_at) >= Duration::from_secs(1),
        "retried {:?} after a 429 with Retry-After: 1",
        again_at.duration_since(*refused_at)
    );
    assert_round_trip(&reg.host(), &layout, &images, dir.path());
}

/// A source that refuses to open blobs after `limit` opens, as if the process died there.
struct Dying {
    inner: Arc<LayoutSource>,
    opens: AtomicU64,
    limit: u64,
}

impl BlobSource for Dying {
    fn open_blob(&self, digest: &Digest) -> std::io::Result<Box<dyn std::io::Read + Send>> {
        if self.opens.fetch_add(1, Ordering::SeqCst) >= self.limit {
            return Err(std::io::Error::other("simulated crash"));
        }
        self.inner.open_blob(digest)
    }
    fn blob_size(&self, digest: &Digest) -> Option<u64> {
        self.inner.blob_size(digest)
    }
    fn read_manifest(&self, digest: &Digest) -> std::io::Result<Vec<u8>> {
        self.inner.read_manifest(digest)
    }
}

#[test]
fn interrupted_push_resumes_sending_only_missing_blobs() {
    let reg = Registry::start(Setup::Plain);
    let (dir, layout, src) = fixture(8);
    let images = layout.to_push("");
    let mut o = opts(&reg.host());
    o.concurrency = 1;
    let dying = Arc::new(Dying {
        inner: src.clone(),
        opens: AtomicU64::new(0),
        limit: 3,
    });
    let rec = Arc::new(Recorder::default());
    let err = push(&o, dying, &images, rec.clone()).unwrap_err();
    assert!(err.to_string().contains("simulated crash"), "{err}");
    let first: u64 = rec
        .done
        .lock()
        .unwrap()
        .iter()
        .filter(|d| d.1 == BlobAction::Uploaded)
        .map(|d| layout.unique_blobs().iter().find(|b| b.0 == d.0).unwrap().1)
        .sum();
    assert_eq!(rec.done.lock().unwrap().len(), 3);
    assert_eq!(rec.sent.load(Ordering::SeqCst), first);

    o.concurrency = 4;
    let report = run(&o, src, &images);
    assert_eq!(
        report.bytes_sent,
        unique_bytes(&layout) - first,
        "{report:#?}"
    );
    assert!(report.blobs_skipped >= 3);
    assert_round_trip(&reg.host(), &layout, &images, dir.path());
}

#[test]
fn aborted_push_resumes() {
    let reg = Registry::start(Setup::Plain);
    let (dir, layout, src) = fixture(9);
    let images = layout.to_push("");
    let o = opts(&reg.host());

    struct Abort {
        uploaded: AtomicU64,
        notify: tokio::sync::Notify,
    }
    impl PushProgress for Abort {
        fn blob_done(&self, _d: &Digest, size: u64, a: BlobAction) {
            if a == BlobAction::Uploaded {
                self.uploaded.fetch_add(size, Ordering::SeqCst);
                self.notify.notify_one();
            }
        }
    }
    let abort = Arc::new(Abort {
        uploaded: AtomicU64::new(0),
        notify: tokio::sync::Notify::new(),
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let fut = push_async(&o, src.clone(), &images, abort.clone());
        tokio::pin!(fut);
        let mut done = 0;
        loop {
            tokio::select! {
                r = &mut fut => panic!("push finished before the abort: {:?}", r.map(|r| r.pushed)),
                _ = abort.notify.notified() => { done += 1; if done == 2 { break; } }
            }
        }
    });
    let before = abort.uploaded.load(Ordering::SeqCst);
    assert!(before > 0);
    let report = run(&o, src, &images);
    assert!(report.blobs_skipped >= 2);
    assert!(
        report.bytes_sent <= unique_bytes(&layout) - before,
        "{report:#?}"
    );
    assert_round_trip(&reg.host(), &layout, &images, dir.path());
}

/// A source whose blobs have one byte flipped: the bytes no longer match their digests.
struct Corrupt(Arc<LayoutSource>);

impl BlobSource for Corrupt {
    fn open_blob(&self, digest: &Digest) -> std::io::Result<Box<dyn std::io::Read + Send>> {
        let mut bytes = Vec::new();
        self.0.open_blob(digest)?.read_to_end(&mut bytes)?;
        bytes[0] ^= 1;
        Ok(Box::new(std::io::Cursor::new(bytes)))
    }
    fn blob_size(&self, digest: &Digest) -> Option<u64> {
        self.0.blob_size(digest)
    }
    fn read_manifest(&self, digest: &Digest) -> std::io::Result<Vec<u8>> {
        self.0.read_manifest(digest)
    }
}

#[test]
fn corrupt_source_blob_fails_without_retries() {
    let reg = Registry::start(Setup::Plain);
    let proxy = FaultProxy::start(reg.port, vec![]);
    let (_dir, layout, src) = fixture(11);
    let mut o = opts(&proxy.host());
    o.concurrency = 1;
    let err = push(
        &o,
        Arc::new(Corrupt(src)),
        &layout.to_push(""),
        Arc::new(NoProgress),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(&err, PushError::Registry(RegistryError::Source { .. }))
            && msg.contains("hashes to"),
        "{err:?}"
    );
    // ping, HEAD, POST, PUT: one attempt, no retry.
    assert!(proxy.requests() <= 4, "{:#?}", proxy.log());
}

/// Indexes a bundle file as `load` does, keeping at most `memory_budget` bytes of blobs in
/// memory, and reads every blob back through the source in odd-sized chunks. Returns how
/// many were read in place from stored members.
fn read_every_blob(bundle: &Path, memory_budget: u64) -> usize {
    use ferry::bundle::manifest::blob_hex;
    use ferry::registry::bundle_source::index_bundle;
    let indexed = index_bundle(
        &ferry::bundle::verify::VerifyOptions {
            input: bundle.to_path_buf(),
            limits: Default::default(),
            progress: ferry::progress::Progress::Hidden,
            check_head: None,
        },
        memory_budget,
    )
    .unwrap_or_else(|e| panic!("{}: {e}", bundle.display()));
    let mut in_place = 0;
    let mut blobs = 0;
    for file in &indexed.manifest.files {
        let Some(hex) = blob_hex(&file.path) else {
            continue;
        };
        blobs += 1;
        let digest = ferry::oci::digest::Digest::from_hex(hex).unwrap();
        assert_eq!(indexed.source.blob_size(&digest), Some(file.size));
        in_place += usize::from(indexed.source.is_in_place(&digest));
        let mut r = indexed.source.open_blob(&digest).unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 7_777];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got.len() as u64, file.size, "{digest}");
        assert_eq!(sha256(&got), file.digest.to_string(), "{digest}");
    }
    assert_eq!(indexed.source.digests().count(), blobs);
    in_place
}

#[test]
fn bundle_blobs_are_read_back_in_place_with_their_digests() {
    let tmp = tempfile::tempdir().unwrap();
    // The fixture: every stored member is one block.
    let fixture = tmp.path().join("fixture.tar.gz");
    crate::harness::build_fixture(&fixture, 0);
    assert_eq!(read_every_blob(&fixture, u64::MAX), 0, "all in memory");
    assert!(read_every_blob(&fixture, 0) > 0);
    // Layers of 256 KiB to 1 MiB: each starts 512 bytes into its stored member, so reads
    // start mid-block and cross many block frames.
    let layout = tmp.path().join("layout");
    let images = write_layout(&layout, 11);
    let mut spec = String::from("name: big\nversion: '1'\nimages:\n");
    for img in &images.images {
        spec.push_str(&format!(
            "  - ref: example.com/big/{0}:1\n    from: oci:layout:{0}\n",
            img.name
        ));
    }
    std::fs::write(tmp.path().join("ferry.yaml"), spec).unwrap();
    let bundle = tmp.path().join("big.tar.gz");
    crate::harness::build_spec(&tmp.path().join("ferry.yaml"), &bundle, 0);
    let layers = images
        .unique_blobs()
        .iter()
        .filter(|b| b.1 > 65_535)
        .count();
    assert!(layers >= 5);
    assert!(read_every_blob(&bundle, 0) >= layers);
}
