//! The node's Ethereum key on disk: a hex key file (mode 0600), or an Ethereum V3
//! keystore JSON decrypted with a password from the environment or a file.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use alloy_signer_local::PrivateKeySigner;
use demls_core::identity::EthSigner;

use crate::config::NodeConfig;

/// Why the key could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// `keygen` never overwrites a key.
    #[error("{0} already exists; refusing to overwrite a key file")]
    Exists(PathBuf),
    /// Reading, writing or creating the directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The key file may be read by other users.
    #[error(
        "key file {path} is readable by group or others (mode {mode:04o}); run `chmod 600 {path}`"
    )]
    Permissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file does not hold a hex secp256k1 key.
    #[error("key file {path}: {reason}")]
    Malformed {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The keystore could not be decrypted.
    #[error("keystore {path}: {reason}")]
    Keystore {
        /// The keystore file.
        path: PathBuf,
        /// What went wrong (wrong password, bad JSON, …).
        reason: String,
    },
    /// The keystore password is not available.
    #[error("keystore password: {0}")]
    Password(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyFileError + '_ {
    move |source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A fresh random key from the operating system's RNG.
pub fn generate() -> EthSigner {
    EthSigner::random_with(&mut rand::rngs::OsRng)
}

/// Writes `signer` to a new file at `path` with mode 0600 (parent directories are
/// created with mode 0700). Fails with [`KeyFileError::Exists`] if the file exists.
pub fn write_new(path: &Path, signer: &EthSigner) -> Result<(), KeyFileError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        let mut b = fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(dir).map_err(io(dir))?;
    }
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            KeyFileError::Exists(path.to_path_buf())
        } else {
            io(path)(e)
        }
    })?;
    let text = format!("0x{}\n", hex::encode(signer.secret_bytes()));
    f.write_all(text.as_bytes()).map_err(io(path))?;
    f.sync_all().map_err(io(path))?;
    Ok(())
}

/// Reads a key file: `0x`-prefixed or bare hex of 32 bytes, surrounding whitespace
/// ignored. Refuses a file that group or others may read.
pub fn read(path: &Path) -> Result<EthSigner, KeyFileError> {
    let meta = fs::metadata(path).map_err(io(path))?;
    if !meta.is_file() {
        return Err(KeyFileError::Malformed {
            path: path.to_path_buf(),
            reason: "not a regular file".into(),
        });
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    let text = fs::read_to_string(path).map_err(io(path))?;
    let malformed = |reason: &str| KeyFileError::Malformed {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let t = text.trim();
    let h = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    let bytes = hex::decode(h).map_err(|_| malformed("expected 64 hex digits"))?;
    if bytes.len() != 32 {
        return Err(malformed("expected a 32-byte key (64 hex digits)"));
    }
    EthSigner::from_secret(&bytes).map_err(|e| malformed(&e.to_string()))
}

/// Reads the key file, or creates one with a new key if it does not exist. The flag
/// says whether it was created.
pub fn load_or_create(path: &Path) -> Result<(EthSigner, bool), KeyFileError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok((read(path)?, false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let signer = generate();
            write_new(path, &signer)?;
            Ok((signer, true))
        }
        Err(e) => Err(io(path)(e)),
    }
}

/// Decrypts an Ethereum V3 keystore JSON.
pub fn import_keystore(path: &Path, password: &[u8]) -> Result<EthSigner, KeyFileError> {
    if !path.is_file() {
        return Err(KeyFileError::Keystore {
            path: path.to_path_buf(),
            reason: "no such file".into(),
        });
    }
    PrivateKeySigner::decrypt_keystore(path, password)
        .map(EthSigner::new)
        .map_err(|e| KeyFileError::Keystore {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

/// Where the node's key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// An existing key file.
    KeyFile(PathBuf),
    /// A key file created just now.
    NewKeyFile(PathBuf),
    /// A keystore JSON.
    Keystore(PathBuf),
}

/// Loads the identity the configuration asks for: the keystore if one is set, else the
/// key file (created on first run).
pub fn load_identity(cfg: &NodeConfig) -> Result<(EthSigner, KeySource), KeyFileError> {
    let id = &cfg.identity;
    if let Some(ks) = &id.keystore {
        let password = if let Some(var) = &id.keystore_password_env {
            std::env::var(var).map_err(|_| {
                KeyFileError::Password(format!("environment variable {var} is not set"))
            })?
        } else if let Some(file) = &id.keystore_password_file {
            let text = fs::read_to_string(file).map_err(io(file))?;
            text.lines().next().unwrap_or("").to_string()
        } else {
            return Err(KeyFileError::Password(
                "set identity.keystore_password_env or identity.keystore_password_file".into(),
            ));
        };
        let signer = import_keystore(ks, password.as_bytes())?;
        return Ok((signer, KeySource::Keystore(ks.clone())));
    }
    let path = cfg.key_file();
    let (signer, created) = load_or_create(&path)?;
    let src = if created {
        KeySource::NewKeyFile(path)
    } else {
        KeySource::KeyFile(path)
    };
    Ok((signer, src))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("sub/key");
        let (a, created) = load_or_create(&p).unwrap();
        assert!(created);
        let (b, created) = load_or_create(&p).unwrap();
        assert!(!created);
        assert_eq!(a.member_id(), b.member_id());
        assert!(matches!(write_new(&p, &a), Err(KeyFileError::Exists(_))));

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
            let e = read(&p).unwrap_err();
            assert!(e.to_string().contains("chmod 600"), "{e}");
        }

        let bad = tmp.path().join("bad");
        write_new(&bad, &a).unwrap();
        fs::write(&bad, "0x1234\n").unwrap();
        assert!(matches!(read(&bad), Err(KeyFileError::Malformed { .. })));
        fs::write(&bad, "zz").unwrap();
        assert!(matches!(read(&bad), Err(KeyFileError::Malformed { .. })));
        // Bare hex with whitespace is fine.
        fs::write(&bad, format!("  {}  \n", hex::encode(a.secret_bytes()))).unwrap();
        assert_eq!(read(&bad).unwrap().member_id(), a.member_id());
    }

    #[test]
    fn keystore_import() {
        let tmp = tempfile::tempdir().unwrap();
        let key = generate();
        let mut rng = rand::rngs::OsRng;
        PrivateKeySigner::encrypt_keystore(
            tmp.path(),
            &mut rng,
            key.secret_bytes(),
            "hunter2",
            Some("ks.json"),
        )
        .unwrap();
        let ks = tmp.path().join("ks.json");
        let got = import_keystore(&ks, b"hunter2").unwrap();
        assert_eq!(got.member_id(), key.member_id());
        let e = import_keystore(&ks, b"wrong").unwrap_err();
        assert!(matches!(e, KeyFileError::Keystore { .. }), "{e}");
        let e = import_keystore(&tmp.path().join("missing.json"), b"x").unwrap_err();
        assert!(e.to_string().contains("no such file"), "{e}");

        // Through the config, with the password in a file.
        fs::write(tmp.path().join("pw"), "hunter2\n").unwrap();
        let text = "[identity]\nkeystore = \"ks.json\"\nkeystore_password_file = \"pw\"\n";
        let cfg = NodeConfig::from_toml(text, "t", tmp.path(), Some(Default::default())).unwrap();
        let (signer, src) = load_identity(&cfg).unwrap();
        assert_eq!(signer.member_id(), key.member_id());
        assert_eq!(src, KeySource::Keystore(ks));
    }
}
