//! Starts a real CNCF distribution registry (`docker-registry serve CONFIG`) on a free
//! 127.0.0.1 port with temporary storage: plain HTTP, htpasswd (bcrypt) basic auth, or TLS
//! with a CA made by the test. The child is killed on drop.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;

/// Which kind of registry to start.
#[derive(Debug, Clone)]
pub enum Setup {
    /// Plain HTTP, anonymous.
    Plain,
    /// Plain HTTP with htpasswd basic auth for one user.
    Basic {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
    /// HTTPS with a certificate for IP:127.0.0.1 and DNS:localhost signed by a fresh CA.
    Tls,
}

/// A running registry.
pub struct Registry {
    child: Child,
    dir: tempfile::TempDir,
    /// Listening port on 127.0.0.1.
    pub port: u16,
    /// The CA certificate (PEM) for [`Setup::Tls`].
    pub ca_file: Option<PathBuf>,
    /// A directory with `ca.crt`, as skopeo's `--cert-dir` wants it.
    pub cert_dir: Option<PathBuf>,
    /// A containers `auth.json` for [`Setup::Basic`].
    pub auth_file: Option<PathBuf>,
}

/// Why a start attempt did not give a running registry.
enum NotStarted {
    /// Another process took the port between choosing it and the registry binding it.
    PortTaken,
}

impl Registry {
    /// Starts a registry and waits until it serves on its own port. The port is picked free
    /// and may be taken by someone else before the registry binds it: then the registry exits
    /// saying so, and it is started again on another port.
    pub fn start(setup: Setup) -> Registry {
        let bin = super::require_tool("docker-registry", "docker-registry skopeo");
        for _ in 0..20 {
            match Self::try_start(&setup, &bin, super::free_port()) {
                Ok(reg) => return reg,
                Err(NotStarted::PortTaken) => continue,
            }
        }
        panic!("docker-registry found no free port in 20 attempts");
    }

    fn try_start(setup: &Setup, bin: &Path, port: u16) -> Result<Registry, NotStarted> {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("data")).unwrap();
        let mut cfg = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\n\
             validation:\n  manifests:\n    urls:\n      allow:\n        - ^https://\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: ferry-test-{port}\n",
            data = root.join("data").display()
        );
        let (mut ca_file, mut cert_dir, mut auth_file) = (None, None, None);
        match setup {
            Setup::Plain => {}
            Setup::Basic { user, password } => {
                let hash = bcrypt::hash(password, 5).unwrap();
                let htpasswd = root.join("htpasswd");
                std::fs::write(&htpasswd, format!("{user}:{hash}\n")).unwrap();
                cfg.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: ferry-test\n    path: {}\n",
                    htpasswd.display()
                ));
                let auth =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                let f = root.join("auth.json");
                std::fs::write(
                    &f,
                    format!(r#"{{"auths":{{"127.0.0.1:{port}":{{"auth":"{auth}"}}}}}}"#),
                )
                .unwrap();
                auth_file = Some(f);
            }
            Setup::Tls => {
                let (ca_pem, cert_pem, key_pem) = make_tls();
                let tls = root.join("tls");
                std::fs::create_dir_all(tls.join("certs.d")).unwrap();
                std::fs::write(tls.join("ca.crt"), &ca_pem).unwrap();
                std::fs::write(tls.join("certs.d/ca.crt"), &ca_pem).unwrap();
                std::fs::write(tls.join("server.crt"), cert_pem).unwrap();
                std::fs::write(tls.join("server.key"), key_pem).unwrap();
                cfg.push_str(&format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    tls.join("server.crt").display(),
                    tls.join("server.key").display()
                ));
                ca_file = Some(tls.join("ca.crt"));
                cert_dir = Some(tls.join("certs.d"));
            }
        }
        let config = root.join("config.yml");
        std::fs::write(&config, cfg).unwrap();
        let log = std::fs::File::create(root.join("registry.log")).unwrap();
        let child = Command::new(bin)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn docker-registry");
        let mut reg = Registry {
            child,
            dir,
            port,
            ca_file,
            cert_dir,
            auth_file,
        };
        reg.wait_ready()?;
        Ok(reg)
    }

    /// Waits until the registry says it listens on its port and answers there. A registry
    /// that could not bind its port exits, and the caller tries another port.
    fn wait_ready(&mut self) -> Result<(), NotStarted> {
        let listening = format!("listening on 127.0.0.1:{}", self.port);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                let log = self.log();
                if log.contains("address already in use") {
                    return Err(NotStarted::PortTaken);
                }
                panic!("docker-registry exited with {status}:\n{log}");
            }
            // Until the registry logs that it listens, whatever answers on the port is not it.
            if !self.log().contains(&listening) {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                if self.ca_file.is_some() {
                    return Ok(()); // a TCP accept is enough for TLS; the handshake is the test's job
                }
                let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                let _ = s.write_all(b"GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
                let mut buf = [0u8; 12];
                if s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.") {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "docker-registry did not start on port {}:\n{}",
            self.port,
            self.log()
        );
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The storage root (`…/docker/registry/v2/…` below it).
    pub fn storage(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_taken_port_is_noticed_and_another_one_used() {
    let bin = super::require_tool("docker-registry", "docker-registry skopeo");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    assert!(matches!(
        Registry::try_start(&Setup::Plain, &bin, port),
        Err(NotStarted::PortTaken)
    ));
    let reg = Registry::start(Setup::Plain);
    assert_ne!(reg.port, port);
}

/// A CA and a server certificate for 127.0.0.1/localhost: (ca pem, cert pem, key pem).
pub fn make_tls() -> (String, String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose, SanType,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(DnType::CommonName, "ferry test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    p.subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    p.distinguished_name.push(DnType::CommonName, "127.0.0.1");
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let cert = p.signed_by(&key, &issuer).unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}
