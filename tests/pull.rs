//! Pulling from a real registry with ferry's client: manifests by tag and digest, blobs as a
//! resumable synchronous stream through resets, stalls, 429s and servers that ignore
//! `Range`, with bounded memory, and the errors a pull can meet.

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry::oci::digest::Digest;
use ferry::registry::push::{push, LayoutSource, NoProgress, PushOptions};
use ferry::registry::{
    BlobProgress, CredentialSource, RegistryClient, RegistryError, RegistryOptions, RetryPolicy,
};

use crate::util::faultproxy::{Fault, FaultProxy, Rule};
use crate::util::oci::{noise, write_layout};
use crate::util::registry::{Registry, Setup};

/// Options for a plain-HTTP registry with quick retries and a 1 s read timeout.
pub fn options(host: &str) -> RegistryOptions {
    let mut r = RegistryOptions::new(host);
    r.plain_http = true;
    r.credentials = CredentialSource::Anonymous;
    r.retry = RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_secs(2),
    };
    r.read_timeout = Duration::from_secs(1);
    r
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

struct Quiet;
impl BlobProgress for Quiet {
    fn sent(&self, _n: u64) {}
    fn restart(&self) {}
}

/// Uploads `bytes` as a blob of `repo` with ferry's push side; returns its digest.
pub fn upload(rt: &tokio::runtime::Runtime, host: &str, repo: &str, bytes: Vec<u8>) -> Digest {
    let digest = Digest::of(&bytes);
    let client = RegistryClient::new(options(host)).unwrap();
    let bytes = Arc::new(bytes);
    let open =
        move || Ok(Box::new(std::io::Cursor::new(bytes.as_ref().clone())) as Box<dyn Read + Send>);
    rt.block_on(async {
        client.ping().await.unwrap();
        client
            .upload_blob(repo, &digest, None, &open, None, Arc::new(Quiet))
            .await
            .unwrap()
    });
    digest
}

fn read_all(r: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    r.read_to_end(&mut out)?;
    Ok(out)
}

#[test]
fn manifests_and_blobs_come_back_byte_identical() {
    let reg = Registry::start(Setup::Plain);
    let dir = tempfile::tempdir().unwrap();
    let layout = write_layout(dir.path(), 31);
    let images = layout.to_push("pull");
    let src = Arc::new(LayoutSource::open(dir.path()).unwrap());
    let mut o = PushOptions::new(options(&reg.host()));
    o.registry.read_timeout = Duration::from_secs(10);
    push(&o, src, &images, Arc::new(NoProgress)).unwrap();

    let rt = runtime();
    let client = Arc::new(RegistryClient::new(options(&reg.host())).unwrap());
    let file = |d: &str| std::fs::read(dir.path().join("blobs/sha256").join(&d[7..])).unwrap();
    for (img, want) in images.iter().zip(&layout.images) {
        let repo = &img.target_repo;
        let by_tag = rt.block_on(client.get_manifest(repo, "1.0")).unwrap();
        assert_eq!(by_tag.bytes, file(&want.digest));
        assert_eq!(by_tag.digest.to_string(), want.digest);
        assert_eq!(by_tag.media_type, want.media_type);
        let by_digest = rt
            .block_on(client.get_manifest(repo, &want.digest))
            .unwrap();
        assert_eq!(by_digest.bytes, by_tag.bytes);
        let head = rt.block_on(client.resolve_tag(repo, "1.0")).unwrap();
        assert_eq!(
            (head.digest.to_string(), head.media_type, head.size),
            (
                want.digest.clone(),
                want.media_type.clone(),
                by_tag.bytes.len() as u64
            )
        );
        for (d, size) in &want.blobs {
            let digest: Digest = d.parse().unwrap();
            let mut r = client.blob_reader(rt.handle(), repo, &digest, *size);
            assert_eq!(read_all(&mut r).unwrap(), file(d), "{repo}@{d}");
        }
    }

    // A tag that is not there: MANIFEST_UNKNOWN naming registry, repository and tag.
    let e = rt
        .block_on(client.get_manifest("pull/team/app1", "2.0"))
        .unwrap_err();
    assert!(
        matches!(
            &e,
            RegistryError::NotFound {
                code: "MANIFEST_UNKNOWN",
                ..
            }
        ),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains(&reg.host()) && msg.contains("pull/team/app1:2.0"),
        "{msg}"
    );
    assert_eq!(e.exit_code(), 2);
    let e = rt
        .block_on(client.resolve_tag("pull/team/app1", "2.0"))
        .unwrap_err();
    assert!(matches!(&e, RegistryError::NotFound { .. }), "{e:?}");

    // A blob that is not there, and blobs asked for with the wrong size.
    let (d, size) = &layout.images[0].blobs[1];
    let digest: Digest = d.parse().unwrap();
    let absent = Digest::of(b"absent");
    let e =
        read_all(&mut client.blob_reader(rt.handle(), "pull/team/app1", &absent, 6)).unwrap_err();
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<RegistryError>());
    assert!(
        matches!(
            inner,
            Some(RegistryError::NotFound {
                code: "BLOB_UNKNOWN",
                ..
            })
        ),
        "{e:?}"
    );
    for wrong in [size + 1, size - 1] {
        let mut r = client.blob_reader(rt.handle(), "pull/team/app1", &digest, wrong);
        let e = read_all(&mut r).unwrap_err().to_string();
        assert!(e.contains(d) && e.contains("pull/team/app1"), "{e}");
    }
    // A digest reference that is not a sha256 digest is refused before any request.
    let e = rt
        .block_on(client.get_manifest("pull/team/app1", "sha256:XYZ"))
        .unwrap_err();
    assert!(matches!(e, RegistryError::InvalidReference { .. }), "{e:?}");
}

#[test]
fn a_digest_header_that_contradicts_the_bytes_is_refused() {
    let reg = Registry::start(Setup::Plain);
    let dir = tempfile::tempdir().unwrap();
    let layout = write_layout(dir.path(), 32);
    let images = layout.to_push("");
    let src = Arc::new(LayoutSource::open(dir.path()).unwrap());
    push(
        &PushOptions::new(options(&reg.host())),
        src,
        &images[..1],
        Arc::new(NoProgress),
    )
    .unwrap();
    let other = Digest::of(b"another manifest").to_string();
    let proxy = FaultProxy::start(
        reg.port,
        vec![Rule::new(
            "GET",
            "/manifests/",
            Fault::SetHeader {
                name: "Docker-Content-Digest",
                value: other.clone(),
            },
            1,
        )],
    );
    let rt = runtime();
    let client = RegistryClient::new(options(&proxy.host())).unwrap();
    let e = rt
        .block_on(client.get_manifest("team/app1", "1.0"))
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, RegistryError::ContentMismatch { .. }), "{e:?}");
    assert!(
        msg.contains(&proxy.host()) && msg.contains("team/app1:1.0") && msg.contains(&other),
        "{msg}"
    );
    // Without the tampering the same request passes.
    let m = rt
        .block_on(client.get_manifest("team/app1", "1.0"))
        .unwrap();
    assert_eq!(m.digest.to_string(), layout.images[0].digest);
}

#[test]
fn a_blob_stream_resumes_with_range_through_faults() {
    let reg = Registry::start(Setup::Plain);
    let rt = runtime();
    let data = noise(77, 6 * 1024 * 1024 + 123);
    let digest = upload(&rt, &reg.host(), "big/blob", data.clone());
    let mib = 1024 * 1024;
    let rules = vec![
        Rule::new(
            "GET",
            "/blobs/",
            Fault::ResetResponse { after_bytes: mib },
            1,
        ),
        Rule::new(
            "GET",
            "/blobs/",
            Fault::Status {
                code: 429,
                retry_after: Some(1),
            },
            1,
        ),
        Rule::new(
            "GET",
            "/blobs/",
            Fault::StallResponse {
                after_bytes: 2 * mib,
                stall: Duration::from_secs(4),
            },
            1,
        ),
        Rule::new(
            "GET",
            "/blobs/",
            Fault::Status {
                code: 503,
                retry_after: None,
            },
            1,
        ),
        Rule::new(
            "GET",
            "/blobs/",
            Fault::ResetResponse {
                after_bytes: mib + mib / 2,
            },
            1,
        ),
        // Last, a server that ignores Range: a 200 with the whole blob, whose first bytes
        // the reader has already had.
        Rule::new("GET", "/blobs/", Fault::DropRange, 1),
    ];
    let proxy = FaultProxy::start(reg.port, rules);
    let client = Arc::new(RegistryClient::new(options(&proxy.host())).unwrap());
    let mut r = client.blob_reader(rt.handle(), "big/blob", &digest, data.len() as u64);
    let got = read_all(&mut r).unwrap();
    assert!(got == data, "the stream differs from the blob");
    assert!(proxy.pending_rules().is_empty(), "{:?}", proxy.log());
    let gets: Vec<_> = proxy
        .header_log("Range")
        .into_iter()
        .filter(|(r, _)| r.starts_with("GET /v2/big/blob/blobs/"))
        .collect();
    assert_eq!(gets.len(), 6, "{gets:?}");
    assert_eq!(gets[0].1, None, "the first request asks for the whole blob");
    let offsets: Vec<u64> = gets[1..]
        .iter()
        .map(|(_, r)| {
            let r = r
                .as_deref()
                .unwrap_or_else(|| panic!("a retry without Range: {gets:?}"));
            r.trim_start_matches("bytes=")
                .trim_end_matches('-')
                .parse()
                .unwrap()
        })
        .collect();
    assert!(offsets[0] > 0, "{offsets:?}");
    assert!(offsets.windows(2).all(|w| w[0] <= w[1]), "{offsets:?}");
    assert!(
        client
            .stats()
            .retries
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 5
    );

    // A registry that keeps failing before any byte of the body ends the stream with an
    // error naming the blob, not a short read. (Failures with progress do not count
    // against the attempts.)
    proxy.add_rule(Rule::new(
        "GET",
        "/blobs/",
        Fault::ResetResponse { after_bytes: 10 },
        50,
    ));
    let mut r = client.blob_reader(rt.handle(), "big/blob", &digest, data.len() as u64);
    let Err(e) = read_all(&mut r) else {
        panic!("a failing registry gave a whole blob")
    };
    let e = e.to_string();
    assert!(
        e.contains(&digest.to_string()) && e.contains("4 attempts"),
        "{e}"
    );
}

#[test]
fn a_blob_stream_holds_a_few_mib_however_large_the_blob() {
    let reg = Registry::start(Setup::Plain);
    let rt = runtime();
    let data = noise(78, 64 * 1024 * 1024);
    let digest = upload(&rt, &reg.host(), "huge/blob", data.clone());
    let proxy = FaultProxy::start(reg.port, vec![]);
    let client = Arc::new(RegistryClient::new(options(&proxy.host())).unwrap());
    let mut r = client.blob_reader(rt.handle(), "huge/blob", &digest, data.len() as u64);
    let mut one = [0u8; 1];
    r.read_exact(&mut one).unwrap();
    // Wait until the transfer stands still: back-pressure, not the end of the blob.
    let mut last = proxy.response_bytes();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = proxy.response_bytes();
        if now == last || Instant::now() > deadline {
            break;
        }
        last = now;
    }
    // Socket buffers on both sides hold some MiB too; the reader's own share is small.
    assert!(
        last < 24 * 1024 * 1024,
        "{last} bytes left the registry while the reader had taken one"
    );
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    assert!(one[0] == data[0] && rest[..] == data[1..]);
}

#[test]
fn a_refused_pull_names_the_registry_and_is_an_environment_error() {
    let reg = Registry::start(Setup::Basic {
        user: "lab".into(),
        password: "s3cret".into(),
    });
    let rt = runtime();
    for creds in [
        CredentialSource::Anonymous,
        CredentialSource::Explicit {
            username: "lab".into(),
            password: "wrong".into(),
        },
    ] {
        let mut o = options(&reg.host());
        o.credentials = creds.clone();
        let client = Arc::new(RegistryClient::new(o).unwrap());
        let e = rt
            .block_on(client.get_manifest("team/app", "1.0"))
            .unwrap_err();
        assert!(
            matches!(&e, RegistryError::AuthFailed { registry, .. } if *registry == reg.host()),
            "{creds:?}: {e:?}"
        );
        assert_eq!(e.exit_code(), 2);
        let digest = Digest::of(b"x");
        let Err(e) = read_all(&mut client.blob_reader(rt.handle(), "team/app", &digest, 1)) else {
            panic!("{creds:?}: a refused blob read succeeded")
        };
        let inner = e.get_ref().and_then(|i| i.downcast_ref::<RegistryError>());
        assert!(
            matches!(inner, Some(RegistryError::AuthFailed { .. })),
            "{creds:?}: {e:?}"
        );
    }
}
