//! Key files: generation from the OS RNG, PEM encoding, crash-safe no-overwrite writes.

use artifact::PublicKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: already exists; refusing to overwrite a key")]
    Exists { path: PathBuf },
    #[error("{path}: not an Ed25519 {what} key in PEM form")]
    Format { path: PathBuf, what: &'static str },
    #[error("{path}: {source}")]
    Invalid {
        path: PathBuf,
        source: artifact::Error,
    },
    #[error("key name {0:?} must be 1-64 characters of [A-Za-z0-9._-]")]
    Name(String),
    #[error("the operating system's random source failed: {0}")]
    Random(getrandom::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A fresh key from the operating system's random source.
pub fn generate() -> Result<SigningKey, KeyError> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(KeyError::Random)?;
    let key = SigningKey::from_bytes(&seed);
    seed.fill(0);
    Ok(key)
}

/// Writes `dir/name.key` (PKCS#8 PEM, mode 0600) and `dir/name.pub` (SPKI PEM).
/// Returns the two paths. Refuses to replace an existing file.
pub fn write_keypair(
    dir: &Path,
    name: &str,
    key: &SigningKey,
) -> Result<(PathBuf, PathBuf), KeyError> {
    let valid = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !name.starts_with('.');
    if !valid {
        return Err(KeyError::Name(name.to_owned()));
    }
    fs::create_dir_all(dir).map_err(io(dir))?;
    let secret_path = dir.join(format!("{name}.key"));
    let public_path = dir.join(format!("{name}.pub"));
    for p in [&secret_path, &public_path] {
        if p.exists() {
            return Err(KeyError::Exists { path: p.clone() });
        }
    }
    let secret_pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|_| KeyError::Format {
            path: secret_path.clone(),
            what: "private",
        })?;
    let public_pem = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|_| KeyError::Format {
            path: public_path.clone(),
            what: "public",
        })?;
    write_new(&secret_path, secret_pem.as_bytes(), 0o600)?;
    write_new(&public_path, public_pem.as_bytes(), 0o644)?;
    Ok((secret_path, public_path))
}

/// Creates `path` with `contents`, atomically and without replacing anything: the bytes go to
/// a temporary file created with `mode`, synced, then hard-linked to the final name (which fails
/// if the name exists), and the directory is synced.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), KeyError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(contents).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        fs::hard_link(&tmp, path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError::Exists {
                    path: path.to_owned(),
                }
            } else {
                io(path)(e)
            }
        })?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
    })();
    let _ = fs::remove_file(&tmp);
    result
}

/// Reads a PKCS#8 PEM Ed25519 secret key.
pub fn read_secret(path: &Path) -> Result<SigningKey, KeyError> {
    let pem = fs::read_to_string(path).map_err(io(path))?;
    SigningKey::from_pkcs8_pem(&pem).map_err(|_| KeyError::Format {
        path: path.to_owned(),
        what: "private",
    })
}

/// Reads an SPKI PEM Ed25519 public key and checks it is usable.
pub fn read_public(path: &Path) -> Result<PublicKey, KeyError> {
    let pem = fs::read_to_string(path).map_err(io(path))?;
    let vk = VerifyingKey::from_public_key_pem(&pem).map_err(|_| KeyError::Format {
        path: path.to_owned(),
        what: "public",
    })?;
    PublicKey::from_bytes(vk.to_bytes()).map_err(|source| KeyError::Invalid {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn keypair_round_trips_with_private_mode_and_refuses_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let key = generate().unwrap();
        let (sk, pk) = write_keypair(dir.path(), "release-1", &key).unwrap();
        let mode = fs::metadata(&sk).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_secret(&sk).unwrap().to_bytes(), key.to_bytes());
        assert_eq!(read_public(&pk).unwrap(), crate::public_of(&key));
        assert!(
            fs::read_to_string(&sk)
                .unwrap()
                .starts_with("-----BEGIN PRIVATE KEY-----\n")
        );
        assert!(
            fs::read_to_string(&pk)
                .unwrap()
                .starts_with("-----BEGIN PUBLIC KEY-----\n")
        );
        let again = write_keypair(dir.path(), "release-1", &generate().unwrap());
        assert!(matches!(again, Err(KeyError::Exists { .. })), "{again:?}");
        assert_eq!(
            read_secret(&sk).unwrap().to_bytes(),
            key.to_bytes(),
            "old key kept"
        );
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn bad_names_and_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = generate().unwrap();
        for name in ["", "../evil", "a/b", ".hidden"] {
            assert!(matches!(
                write_keypair(dir.path(), name, &key),
                Err(KeyError::Name(_))
            ));
        }
        let junk = dir.path().join("junk.pub");
        fs::write(
            &junk,
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        )
        .unwrap();
        assert!(matches!(
            read_public(&junk),
            Err(KeyError::Format { what: "public", .. })
        ));
        assert!(matches!(
            read_secret(&junk),
            Err(KeyError::Format {
                what: "private",
                ..
            })
        ));
        assert!(matches!(
            read_secret(&dir.path().join("none")),
            Err(KeyError::Io { .. })
        ));
    }
}
