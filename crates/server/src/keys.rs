//! Signing and verification keys. With no key configured consultd still
//! starts, but never with a guessable secret: it generates a random one once
//! and keeps it beside the default database, readable by its owner only.

use std::io::Write;
use std::path::{Path, PathBuf};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

use crate::config::{Config, JwtAlgorithm};

/// The file, inside the data directory, that holds a generated HS256 secret.
pub const SECRET_FILE: &str = "jwt-secret";

/// Where the verification key came from, for the start-up log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Configured,
    Generated(PathBuf),
    Loaded(PathBuf),
}

pub struct Keys {
    pub algorithm: Algorithm,
    pub decoding: DecodingKey,
    /// Present when this process can mint tokens (`consultd token`, tests).
    pub encoding: Option<EncodingKey>,
    pub source: KeySource,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("JWT_PUBLIC_KEY is required for {0}")]
    MissingPublicKey(&'static str),
    #[error("JWT_SECRET is for HS256; {0} verifies with JWT_PUBLIC_KEY")]
    SecretWithAsymmetric(&'static str),
    #[error("JWT_PUBLIC_KEY is for RS256/ES256; set JWT_ALGORITHM or use JWT_SECRET")]
    PublicKeyWithHs256,
    #[error("the JWT secret must not be empty")]
    EmptySecret,
    #[error("could not read {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid {what}: {source}")]
    BadKey {
        what: &'static str,
        #[source]
        source: jsonwebtoken::errors::Error,
    },
    #[error("could not generate a random secret: {0}")]
    Random(String),
}

impl Keys {
    pub fn load(config: &Config) -> Result<Self, KeyError> {
        match config.jwt_algorithm {
            JwtAlgorithm::Hs256 => Self::hs256(config),
            JwtAlgorithm::Rs256 => Self::asymmetric(config, Algorithm::RS256, "RS256"),
            JwtAlgorithm::Es256 => Self::asymmetric(config, Algorithm::ES256, "ES256"),
        }
    }

    fn hs256(config: &Config) -> Result<Self, KeyError> {
        if config.jwt_public_key.is_some() {
            return Err(KeyError::PublicKeyWithHs256);
        }
        let (secret, source) = match &config.jwt_secret {
            Some(s) if s.is_empty() => return Err(KeyError::EmptySecret),
            Some(s) => (s.clone().into_bytes(), KeySource::Configured),
            None => load_or_generate_secret(&config.data_dir)?,
        };
        if source == KeySource::Configured && secret.len() < 32 {
            tracing::warn!(
                "JWT_SECRET is shorter than 32 bytes; HS256 secrets that short can be guessed"
            );
        }
        Ok(Self {
            algorithm: Algorithm::HS256,
            decoding: DecodingKey::from_secret(&secret),
            encoding: Some(EncodingKey::from_secret(&secret)),
            source,
        })
    }

    fn asymmetric(
        config: &Config,
        algorithm: Algorithm,
        name: &'static str,
    ) -> Result<Self, KeyError> {
        if config.jwt_secret.is_some() {
            return Err(KeyError::SecretWithAsymmetric(name));
        }
        let public = config
            .jwt_public_key
            .as_deref()
            .ok_or(KeyError::MissingPublicKey(name))?;
        let public = pem_text(public, "JWT_PUBLIC_KEY")?;
        let decoding = match algorithm {
            Algorithm::RS256 => DecodingKey::from_rsa_pem(public.as_bytes()),
            _ => DecodingKey::from_ec_pem(public.as_bytes()),
        }
        .map_err(|source| KeyError::BadKey {
            what: "JWT_PUBLIC_KEY",
            source,
        })?;
        let encoding = match config.jwt_private_key.as_deref() {
            None => None,
            Some(private) => {
                let private = pem_text(private, "JWT_PRIVATE_KEY")?;
                Some(
                    match algorithm {
                        Algorithm::RS256 => EncodingKey::from_rsa_pem(private.as_bytes()),
                        _ => EncodingKey::from_ec_pem(private.as_bytes()),
                    }
                    .map_err(|source| KeyError::BadKey {
                        what: "JWT_PRIVATE_KEY",
                        source,
                    })?,
                )
            }
        };
        Ok(Self {
            algorithm,
            decoding,
            encoding,
            source: KeySource::Configured,
        })
    }
}

/// PEM given inline, or the path of a file holding it.
fn pem_text(value: &str, what: &str) -> Result<String, KeyError> {
    if value.trim_start().starts_with("-----BEGIN") {
        return Ok(value.to_owned());
    }
    std::fs::read_to_string(value).map_err(|source| KeyError::Io {
        what: format!("{what} file {value}"),
        source,
    })
}

fn load_or_generate_secret(dir: &Path) -> Result<(Vec<u8>, KeySource), KeyError> {
    let path = dir.join(SECRET_FILE);
    let io = |what: String| move |source| KeyError::Io { what, source };
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => {
            return Ok((text.trim().as_bytes().to_vec(), KeySource::Loaded(path)));
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(path.display().to_string())(e)),
    }
    std::fs::create_dir_all(dir).map_err(io(dir.display().to_string()))?;
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| KeyError::Random(e.to_string()))?;
    let secret: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(&path) {
        Ok(mut file) => {
            file.write_all(secret.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(io(path.display().to_string()))?;
            Ok((secret.into_bytes(), KeySource::Generated(path)))
        }
        // Another process (a `consultd token` run) created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(&path).map_err(io(path.display().to_string()))?;
            Ok((text.trim().as_bytes().to_vec(), KeySource::Loaded(path)))
        }
        Err(e) => Err(io(path.display().to_string())(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> PathBuf {
        std::env::temp_dir().join(format!("consultd-keys-{}", uuid::Uuid::new_v4()))
    }

    #[test]
    fn a_generated_secret_is_random_private_and_reused() {
        let dir = temp_dir();
        let config = Config {
            data_dir: dir.clone(),
            ..Config::default()
        };
        let first = Keys::load(&config).unwrap();
        assert!(matches!(first.source, KeySource::Generated(_)));
        let text = std::fs::read_to_string(dir.join(SECRET_FILE)).unwrap();
        assert_eq!(text.len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(SECRET_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let second = Keys::load(&config).unwrap();
        assert!(matches!(second.source, KeySource::Loaded(_)));

        let other = temp_dir();
        Keys::load(&Config {
            data_dir: other.clone(),
            ..Config::default()
        })
        .unwrap();
        assert_ne!(
            text,
            std::fs::read_to_string(other.join(SECRET_FILE)).unwrap()
        );
        std::fs::remove_dir_all(dir).unwrap();
        std::fs::remove_dir_all(other).unwrap();
    }

    #[test]
    fn inconsistent_key_settings_are_refused() {
        let hs_with_public = Config {
            jwt_public_key: Some("x".into()),
            ..Config::default()
        };
        assert!(matches!(
            Keys::load(&hs_with_public),
            Err(KeyError::PublicKeyWithHs256)
        ));
        let rs_without = Config {
            jwt_algorithm: JwtAlgorithm::Rs256,
            ..Config::default()
        };
        assert!(matches!(
            Keys::load(&rs_without),
            Err(KeyError::MissingPublicKey("RS256"))
        ));
        let rs_with_secret = Config {
            jwt_algorithm: JwtAlgorithm::Es256,
            jwt_secret: Some("s".into()),
            ..Config::default()
        };
        assert!(matches!(
            Keys::load(&rs_with_secret),
            Err(KeyError::SecretWithAsymmetric("ES256"))
        ));
        let empty = Config {
            jwt_secret: Some(String::new()),
            ..Config::default()
        };
        assert!(matches!(Keys::load(&empty), Err(KeyError::EmptySecret)));
        let garbage = Config {
            jwt_algorithm: JwtAlgorithm::Rs256,
            jwt_public_key: Some(
                "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----".into(),
            ),
            ..Config::default()
        };
        assert!(matches!(Keys::load(&garbage), Err(KeyError::BadKey { .. })));
        let missing_file = Config {
            jwt_algorithm: JwtAlgorithm::Rs256,
            jwt_public_key: Some("/nonexistent/key.pem".into()),
            ..Config::default()
        };
        assert!(matches!(
            Keys::load(&missing_file),
            Err(KeyError::Io { .. })
        ));
    }
}
