//! Credentials go to the registry's own origin only: an upload session or a blob download
//! on another origin (a storage back end, a CDN) gets no `Authorization`, and the load or
//! pull still succeeds. And Bearer tokens are asked for with one `scope` per parameter.

use std::sync::Arc;

use ferry::oci::digest::Digest;
use ferry::registry::{CredentialSource, RegistryClient};

use crate::harness::{build_fixture, ferry};
use crate::pull::{options, runtime, upload};
use crate::util::faultproxy::{BearerGate, FaultProxy};
use crate::util::oci::noise;
use crate::util::registry::{Registry, Setup};
use crate::util::splitorigin::{Side, SplitOrigin};

fn basic_registry() -> Registry {
    Registry::start(Setup::Basic {
        user: "lab".into(),
        password: "s3cret".into(),
    })
}

/// Requests the back received, none of which may carry credentials.
fn back_requests(split: &SplitOrigin) -> Vec<String> {
    let seen = split.seen();
    let leaked: Vec<_> = seen
        .iter()
        .filter(|s| s.side == Side::Back && s.authorization.is_some())
        .collect();
    assert!(
        leaked.is_empty(),
        "credentials sent to another origin: {leaked:#?}"
    );
    seen.into_iter()
        .filter(|s| s.side == Side::Back)
        .map(|s| s.request)
        .collect()
}

#[test]
fn load_sends_no_credentials_to_an_upload_location_on_another_origin() {
    let reg = basic_registry();
    let split = SplitOrigin::start(reg.port, Some(("lab", "s3cret")));
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("b.tar.gz");
    build_fixture(&bundle, 0);
    // The auth file names the front, the address ferry is given.
    let text = std::fs::read_to_string(reg.auth_file.as_ref().unwrap())
        .unwrap()
        .replace(&reg.host(), &split.host());
    let authfile = tmp.path().join("auth.json");
    std::fs::write(&authfile, text).unwrap();
    ferry()
        .arg("load")
        .arg(&bundle)
        .args(["--registry", &split.host(), "--plain-http", "--authfile"])
        .arg(&authfile)
        .assert()
        .success();

    let back = back_requests(&split);
    assert!(
        back.iter()
            .any(|r| r.starts_with("PUT ") && r.contains("/blobs/uploads/")),
        "the uploads went to the other origin: {back:#?}"
    );
    // The front got the credentials, for every request after the first challenge.
    let front_auth = split
        .seen()
        .iter()
        .filter(|s| s.side == Side::Front && s.authorization.is_some())
        .count();
    assert!(front_auth > 3, "{:#?}", split.seen());
}

#[test]
fn a_blob_redirected_to_another_origin_is_fetched_without_credentials() {
    let reg = basic_registry();
    let rt = runtime();
    let data = noise(91, 3 * 1024 * 1024 + 5);
    let digest = {
        let mut o = options(&reg.host());
        o.credentials = CredentialSource::Explicit {
            username: "lab".into(),
            password: "s3cret".into(),
        };
        let c = RegistryClient::new(o).unwrap();
        let d = Digest::of(&data);
        let bytes = Arc::new(data.clone());
        let open = move || {
            Ok(Box::new(std::io::Cursor::new(bytes.as_ref().clone()))
                as Box<dyn std::io::Read + Send>)
        };
        rt.block_on(async {
            c.ping().await.unwrap();
            c.upload_blob("cdn/blob", &d, None, &open, None, Arc::new(Quiet))
                .await
                .unwrap();
        });
        d
    };
    let split = SplitOrigin::start(reg.port, Some(("lab", "s3cret")));
    let mut o = options(&split.host());
    o.credentials = CredentialSource::Explicit {
        username: "lab".into(),
        password: "s3cret".into(),
    };
    let client = Arc::new(RegistryClient::new(o).unwrap());
    rt.block_on(client.ping()).unwrap();
    let mut got = Vec::new();
    let mut r = client.blob_reader(rt.handle(), "cdn/blob", &digest, data.len() as u64);
    std::io::Read::read_to_end(&mut r, &mut got).unwrap();
    assert!(got == data, "the redirected blob differs");
    let small = rt
        .block_on(client.get_blob("cdn/blob", &digest, 8 * 1024 * 1024))
        .unwrap();
    assert!(small == data);

    let back = back_requests(&split);
    assert_eq!(back.len(), 2, "{back:#?}");
    let front_get = split
        .seen()
        .into_iter()
        .filter(|s| s.side == Side::Front && s.request.starts_with("GET /v2/cdn/blob/blobs/"))
        .collect::<Vec<_>>();
    assert!(
        front_get.iter().all(|s| s.authorization.is_some()),
        "the registry's own origin gets the credentials: {front_get:#?}"
    );
}

struct Quiet;
impl ferry::registry::BlobProgress for Quiet {
    fn sent(&self, _n: u64) {}
    fn restart(&self) {}
}

#[test]
fn pulls_ask_for_pull_scopes_one_per_parameter() {
    let reg = Registry::start(Setup::Plain);
    let rt = runtime();
    let data = noise(92, 100_000);
    let digest = upload(&rt, &reg.host(), "scoped/app", data.clone());
    let proxy = FaultProxy::start_bearer(
        reg.port,
        BearerGate {
            user: "lab".into(),
            password: "s3cret".into(),
            token_uses: None,
        },
    );
    // The gate refuses a token request with two scopes in one parameter.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
    use std::io::{Read, Write};
    s.write_all(
        b"GET /token?service=ferry-test&scope=repository%3Aa%3Apull%20repository%3Ab%3Apull HTTP/1.0\r\n\
          Authorization: Basic bGFiOnMzY3JldA==\r\n\r\n",
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

    let mut o = options(&proxy.host());
    o.credentials = CredentialSource::Explicit {
        username: "lab".into(),
        password: "s3cret".into(),
    };
    let client = Arc::new(RegistryClient::new(o).unwrap());
    let mut got = Vec::new();
    let mut r = client.blob_reader(rt.handle(), "scoped/app", &digest, data.len() as u64);
    r.read_to_end(&mut got).unwrap();
    assert!(got == data);
    // After the refused request above, one token request: to read, and only to read.
    let scopes = proxy.token_scopes();
    assert_eq!(
        scopes[1..],
        [vec!["repository:scoped/app:pull".to_string()]],
        "{scopes:?}"
    );
}
