//! Credentials (flags, Docker `config.json`, containers `auth.json`, credential helpers) and
//! `WWW-Authenticate` challenges (Basic, Bearer).

use std::path::PathBuf;

use super::RegistryError;

/// A secret to present to one registry.
#[derive(Clone)]
pub enum Credential {
    /// User name and password: sent as Basic, or to a Bearer token endpoint.
    UserPassword {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// A Docker identity (refresh) token, exchanged at a Bearer token endpoint.
    IdentityToken(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::UserPassword { username, .. } => f
                .debug_struct("UserPassword")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credential::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
        }
    }
}

/// Where the credentials for the target registry come from.
#[derive(Debug, Clone, Default)]
pub enum CredentialSource {
    /// No credentials at all.
    Anonymous,
    /// `--username` with the password read from `--password-stdin`.
    Explicit {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// `--authfile PATH`: a Docker `config.json` or containers `auth.json` (same shape),
    /// including `credHelpers` / `credsStore`.
    AuthFile(PathBuf),
    /// The default places, first hit wins: `$DOCKER_CONFIG/config.json` (or
    /// `~/.docker/config.json`), then `$REGISTRY_AUTH_FILE`,
    /// `$XDG_RUNTIME_DIR/containers/auth.json`, `~/.docker/containers/auth.json`.
    /// Nothing found means anonymous.
    #[default]
    Default,
}

/// Resolves `source` to a credential for `registry` (`HOST[:PORT]`).
///
/// A missing config file or a file without an entry for the registry is anonymous access,
/// not an error; an unreadable or malformed explicit `--authfile`, or a failing credential
/// helper, is.
pub fn resolve_credentials(
    source: &CredentialSource,
    registry: &str,
) -> Result<Option<Credential>, RegistryError> {
    use docker_credential::CredentialRetrievalError as E;
    let convert = |c: docker_credential::DockerCredential| match c {
        docker_credential::DockerCredential::UsernamePassword(username, password) => {
            Credential::UserPassword { username, password }
        }
        docker_credential::DockerCredential::IdentityToken(t) => Credential::IdentityToken(t),
    };
    let err = |origin: String, e: E| RegistryError::Credentials {
        registry: registry.to_string(),
        origin,
        detail: e.to_string(),
    };
    match source {
        CredentialSource::Anonymous => Ok(None),
        CredentialSource::Explicit { username, password } => Ok(Some(Credential::UserPassword {
            username: username.clone(),
            password: password.clone(),
        })),
        CredentialSource::AuthFile(path) => {
            let file = std::fs::File::open(path).map_err(|e| RegistryError::Credentials {
                registry: registry.to_string(),
                origin: path.display().to_string(),
                detail: e.to_string(),
            })?;
            match docker_credential::get_credential_from_reader(
                std::io::BufReader::new(file),
                registry,
            ) {
                Ok(c) => Ok(Some(convert(c))),
                Err(E::NoCredentialConfigured) => Ok(None),
                Err(e) => Err(err(path.display().to_string(), e)),
            }
        }
        CredentialSource::Default => {
            for (origin, found) in [
                (
                    "Docker config.json",
                    docker_credential::get_credential(registry),
                ),
                (
                    "containers auth.json",
                    docker_credential::get_podman_credential(registry),
                ),
            ] {
                match found {
                    Ok(c) => return Ok(Some(convert(c))),
                    Err(E::NoCredentialConfigured | E::ConfigNotFound | E::ConfigReadError) => {}
                    Err(e) => return Err(err(origin.to_string(), e)),
                }
            }
            Ok(None)
        }
    }
}

/// One parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    /// `Basic realm="…"`.
    Basic,
    /// `Bearer realm="…",service="…",scope="…"`.
    Bearer {
        /// Token endpoint URL.
        realm: String,
        /// `service` parameter, if any.
        service: Option<String>,
        /// `scope` parameter, if any.
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` header value (one challenge; quoted or bare parameters).
pub(crate) fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
    let params = parse_params(rest);
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    if scheme.eq_ignore_ascii_case("basic") {
        Some(Challenge::Basic)
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Some(Challenge::Bearer {
            realm: get("realm")?,
            service: get("service"),
            scope: get("scope"),
        })
    } else {
        None
    }
}

fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(c) if c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            name.push(c);
            chars.next();
        }
        if chars.next().is_none() {
            break;
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            val.push(n)
                        }
                    }
                    '"' => break,
                    c => val.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                val.push(c);
                chars.next();
            }
        }
        out.push((name.trim().to_string(), val.trim().to_string()));
    }
    out
}

/// What one request needs from a Bearer token service: its scopes, e.g.
/// `repository:team/app:pull`. Each scope goes to the token service as its own `scope`
/// query parameter, as the Docker CLI and skopeo send them; tokens are kept per `Access`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct Access(Vec<String>);

impl Access {
    /// No repository: the ping's token.
    pub(crate) fn none() -> Access {
        Access(Vec::new())
    }

    /// Reading `repo`.
    pub(crate) fn pull(repo: &str) -> Access {
        Access(vec![format!("repository:{repo}:pull")])
    }

    /// Writing `repo` (a push also reads it: HEAD before upload).
    pub(crate) fn push(repo: &str) -> Access {
        Access(vec![format!("repository:{repo}:pull,push")])
    }

    /// A cross-repository mount: writing `repo` and reading `from`.
    pub(crate) fn mount(repo: &str, from: &str) -> Access {
        let mut a = Access::push(repo);
        if from != repo {
            a.0.push(format!("repository:{from}:pull"));
        }
        a
    }

    /// The scopes to ask for: this access's, then those of a challenge's `scope` parameter
    /// (which registries write space-separated). A challenge scope for a resource already
    /// asked for adds its actions to that scope rather than a second one.
    pub(crate) fn scopes_with(&self, challenge: Option<&str>) -> Vec<String> {
        let mut out = self.0.clone();
        for s in challenge.unwrap_or_default().split_whitespace() {
            let Some((resource, actions)) = s.rsplit_once(':') else {
                continue;
            };
            let same = out
                .iter_mut()
                .find(|o| o.rsplit_once(':').is_some_and(|(r, _)| r == resource));
            match same {
                Some(o) => {
                    let mut have: Vec<String> = o
                        .rsplit_once(':')
                        .map(|(_, a)| a.split(',').map(str::to_string).collect())
                        .unwrap_or_default();
                    for a in actions.split(',') {
                        if !a.is_empty() && !have.iter().any(|h| h == a) {
                            have.push(a.to_string());
                        }
                    }
                    *o = format!("{resource}:{}", have.join(","));
                }
                None => out.push(s.to_string()),
            }
        }
        out
    }
}

/// The JSON a Bearer token endpoint answers.
#[derive(serde::Deserialize)]
pub(crate) struct TokenResponse {
    pub token: Option<String>,
    pub access_token: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let cases = [
            (r#"Basic realm="oci-lab""#, Some(Challenge::Basic)),
            (
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
                Some(Challenge::Bearer {
                    realm: "https://auth.example/token".into(),
                    service: Some("registry.example".into()),
                    scope: Some("repository:a/b:pull,push".into()),
                }),
            ),
            (
                "bearer realm=http://127.0.0.1:1/t, service=x",
                Some(Challenge::Bearer {
                    realm: "http://127.0.0.1:1/t".into(),
                    service: Some("x".into()),
                    scope: None,
                }),
            ),
            ("Bearer service=x", None),
            ("Negotiate abc", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_challenge(input), want, "{input}");
        }
    }

    #[test]
    fn scopes_are_separate_and_merged_with_the_challenge() {
        assert_eq!(
            Access::pull("a/b").scopes_with(None),
            ["repository:a/b:pull"]
        );
        assert_eq!(
            Access::mount("a", "b").scopes_with(Some("repository:a:pull  repository:c:pull")),
            [
                "repository:a:pull,push",
                "repository:b:pull",
                "repository:c:pull"
            ]
        );
        assert_eq!(
            Access::pull("a").scopes_with(Some("repository:a:push,pull")),
            ["repository:a:pull,push"]
        );
        assert!(Access::none().scopes_with(None).is_empty());
        assert_eq!(Access::mount("a", "a"), Access::push("a"));
    }

    #[test]
    fn authfile_shapes() {
        use base64::Engine;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("lab:s3cret");
        std::fs::write(
            &path,
            format!(r#"{{"auths":{{"127.0.0.1:5001":{{"auth":"{auth}"}}}}}}"#),
        )
        .unwrap();
        let src = CredentialSource::AuthFile(path.clone());
        match resolve_credentials(&src, "127.0.0.1:5001").unwrap() {
            Some(Credential::UserPassword { username, password }) => {
                assert_eq!((username.as_str(), password.as_str()), ("lab", "s3cret"))
            }
            other => panic!("{other:?}"),
        }
        assert!(resolve_credentials(&src, "other:1").unwrap().is_none());
        // credHelpers: `docker-credential-NAME get` answers on stdout.
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let helper = bin.join("docker-credential-ferrytest");
        std::fs::write(
            &helper,
            "#!/bin/sh\nread host\nprintf '{\"ServerURL\":\"%s\",\"Username\":\"helper\",\"Secret\":\"from-helper\"}' \"$host\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![bin.clone()];
        dirs.extend(std::env::split_paths(&path));
        // The only test in this binary that touches the environment.
        std::env::set_var("PATH", std::env::join_paths(dirs).unwrap());
        let helpers = dir.path().join("helpers.json");
        std::fs::write(
            &helpers,
            r#"{"credHelpers":{"harbor.local:8443":"ferrytest"}}"#,
        )
        .unwrap();
        match resolve_credentials(&CredentialSource::AuthFile(helpers), "harbor.local:8443")
            .unwrap()
        {
            Some(Credential::UserPassword { username, password }) => {
                assert_eq!(
                    (username.as_str(), password.as_str()),
                    ("helper", "from-helper")
                )
            }
            other => panic!("{other:?}"),
        }

        let missing = CredentialSource::AuthFile(dir.path().join("nope.json"));
        let e = resolve_credentials(&missing, "x").unwrap_err().to_string();
        assert!(e.contains("nope.json"), "{e}");
    }
}
