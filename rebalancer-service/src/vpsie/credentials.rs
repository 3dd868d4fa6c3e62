//! VPSie credentials: from a mounted Secret directory or the environment, never from flags, and
//! never printed: [`Secret`] and [`Credentials`] have redacting `Debug` and no `Display`.

use std::fmt;
use std::path::Path;

use super::error::VpsieError;

/// A secret string. `Debug` prints `Secret(<redacted>)`; there is no `Display`; the value is
/// reachable only through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for putting it on the wire. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_string())
    }
}

/// How the client authenticates (`vpsie-api.md`, "Auth").
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// Sent as `Vpsie-Auth: <token>` on every call.
    AccessToken(Secret),
    /// Exchanged at `POST {base}/auth/from/api` for a Bearer token.
    ClientCredentials {
        client_id: Secret,
        client_secret: Secret,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::AccessToken(_) => f.write_str("AccessToken(<redacted>)"),
            Credentials::ClientCredentials { .. } => f.write_str(
                "ClientCredentials { client_id: <redacted>, client_secret: <redacted> }",
            ),
        }
    }
}

/// File and variable names of the contract.
pub const TOKEN_FILE: &str = "token";
pub const CLIENT_ID_FILE: &str = "clientId";
pub const CLIENT_SECRET_FILE: &str = "clientSecret";
pub const TOKEN_ENV: &str = "VPSIE_TOKEN";
pub const CLIENT_ID_ENV: &str = "VPSIE_CLIENT_ID";
pub const CLIENT_SECRET_ENV: &str = "VPSIE_CLIENT_SECRET";

impl Credentials {
    pub fn access_token(token: impl Into<String>) -> Self {
        Credentials::AccessToken(Secret::new(token))
    }

    pub fn client_credentials(
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> Self {
        Credentials::ClientCredentials {
            client_id: Secret::new(client_id),
            client_secret: Secret::new(client_secret),
        }
    }

    /// The mode's name, safe to log.
    pub fn mode(&self) -> &'static str {
        match self {
            Credentials::AccessToken(_) => "access_token",
            Credentials::ClientCredentials { .. } => "client_credentials",
        }
    }

    /// Reads a mounted Secret: a `token` file, or `clientId` and `clientSecret` files (values are
    /// trimmed of surrounding whitespace). A `token` file wins when both forms are present.
    pub fn from_dir(dir: &Path) -> Result<Self, VpsieError> {
        let read = |name: &str| -> Result<Option<String>, VpsieError> {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(s) => Ok(Some(s.trim().to_string())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(VpsieError::Credentials(format!(
                    "cannot read {}: {}",
                    path.display(),
                    e.kind()
                ))),
            }
        };
        let empty =
            |name: &str| VpsieError::Credentials(format!("{} is empty", dir.join(name).display()));
        if let Some(token) = read(TOKEN_FILE)? {
            if token.is_empty() {
                return Err(empty(TOKEN_FILE));
            }
            return Ok(Credentials::access_token(token));
        }
        match (read(CLIENT_ID_FILE)?, read(CLIENT_SECRET_FILE)?) {
            (Some(id), Some(secret)) => {
                if id.is_empty() {
                    return Err(empty(CLIENT_ID_FILE));
                }
                if secret.is_empty() {
                    return Err(empty(CLIENT_SECRET_FILE));
                }
                Ok(Credentials::client_credentials(id, secret))
            }
            (Some(_), None) => Err(VpsieError::Credentials(format!(
                "{} has {CLIENT_ID_FILE} but no {CLIENT_SECRET_FILE}",
                dir.display()
            ))),
            (None, Some(_)) => Err(VpsieError::Credentials(format!(
                "{} has {CLIENT_SECRET_FILE} but no {CLIENT_ID_FILE}",
                dir.display()
            ))),
            (None, None) => Err(VpsieError::Credentials(format!(
                "{} holds neither {TOKEN_FILE} nor {CLIENT_ID_FILE} and {CLIENT_SECRET_FILE}",
                dir.display()
            ))),
        }
    }

    /// Reads `VPSIE_TOKEN`, or `VPSIE_CLIENT_ID` and `VPSIE_CLIENT_SECRET`, through `get` (so tests
    /// need not touch the process environment).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self, VpsieError> {
        let var = |name: &str| {
            get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        if let Some(token) = var(TOKEN_ENV) {
            return Ok(Credentials::access_token(token));
        }
        match (var(CLIENT_ID_ENV), var(CLIENT_SECRET_ENV)) {
            (Some(id), Some(secret)) => Ok(Credentials::client_credentials(id, secret)),
            (Some(_), None) => Err(VpsieError::Credentials(format!(
                "{CLIENT_ID_ENV} is set but {CLIENT_SECRET_ENV} is not"
            ))),
            (None, Some(_)) => Err(VpsieError::Credentials(format!(
                "{CLIENT_SECRET_ENV} is set but {CLIENT_ID_ENV} is not"
            ))),
            (None, None) => Err(VpsieError::Credentials(format!(
                "none of {TOKEN_ENV}, or {CLIENT_ID_ENV} with {CLIENT_SECRET_ENV}, is set"
            ))),
        }
    }

    /// Reads the process environment (see [`Credentials::from_vars`]).
    pub fn from_env() -> Result<Self, VpsieError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// The service's rule: the directory when one is given (`--vpsie-credentials`), else the
    /// environment.
    pub fn load(dir: Option<&Path>) -> Result<Self, VpsieError> {
        match dir {
            Some(dir) => Self::from_dir(dir),
            None => Self::from_env(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "vpsie-creds-{tag}-{}-{}",
                std::process::id(),
                rand::random::<u64>()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn debug_redacts() {
        let c = Credentials::client_credentials("the-id-123", "the-secret-456");
        let s = format!("{c:?} {:?} {:#?}", Secret::new("tok-789"), c);
        assert!(
            !s.contains("the-id-123") && !s.contains("the-secret-456") && !s.contains("tok-789"),
            "{s}"
        );
        let t = Credentials::access_token("tok-789");
        assert!(!format!("{t:?}").contains("tok-789"));
    }

    #[test]
    fn dir_token_wins_and_is_trimmed() {
        let d = TempDir::new("token");
        std::fs::write(d.0.join("token"), "abc\n").unwrap();
        std::fs::write(d.0.join("clientId"), "id").unwrap();
        assert_eq!(
            Credentials::from_dir(&d.0).unwrap(),
            Credentials::access_token("abc")
        );
    }

    #[test]
    fn dir_client_credentials() {
        let d = TempDir::new("client");
        std::fs::write(d.0.join("clientId"), " id-1 \n").unwrap();
        std::fs::write(d.0.join("clientSecret"), "s3cr3t\n").unwrap();
        assert_eq!(
            Credentials::from_dir(&d.0).unwrap(),
            Credentials::client_credentials("id-1", "s3cr3t")
        );
    }

    #[test]
    fn dir_errors_name_files_not_values() {
        let d = TempDir::new("partial");
        std::fs::write(d.0.join("clientId"), "visible-id").unwrap();
        let e = Credentials::from_dir(&d.0).unwrap_err();
        assert_eq!(e.kind(), "credentials");
        assert!(e.to_string().contains("clientSecret") && !e.to_string().contains("visible-id"));
        let empty = TempDir::new("empty");
        assert!(Credentials::from_dir(&empty.0).is_err());
        std::fs::write(empty.0.join("token"), "  \n").unwrap();
        assert!(
            Credentials::from_dir(&empty.0)
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
    }

    #[test]
    fn vars() {
        let env = |pairs: &[(&str, &str)]| {
            let m: HashMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            move |k: &str| m.get(k).cloned()
        };
        assert_eq!(
            Credentials::from_vars(env(&[("VPSIE_TOKEN", "t")])).unwrap(),
            Credentials::access_token("t")
        );
        assert_eq!(
            Credentials::from_vars(env(&[
                ("VPSIE_CLIENT_ID", "i"),
                ("VPSIE_CLIENT_SECRET", "s")
            ]))
            .unwrap(),
            Credentials::client_credentials("i", "s")
        );
        assert!(Credentials::from_vars(env(&[("VPSIE_CLIENT_ID", "i")])).is_err());
        assert!(Credentials::from_vars(env(&[("VPSIE_TOKEN", " ")])).is_err());
        assert!(Credentials::from_vars(env(&[])).is_err());
    }
}
