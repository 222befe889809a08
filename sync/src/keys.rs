//! # The post's signing key, and the posts' public keys at central
//!
//! Each post seals its records with its own Ed25519 key (see [`bcp_record::seal`]).
//!
//! ## Files
//! - The **secret key** file holds the 32-byte seed as one line of lowercase hex, written with
//!   mode 0600 and `create_new` (an existing key is never overwritten: that would fork the post's
//!   chain identity). By default it lives beside the outbox: `<outbox file>.key`
//!   ([`default_key_path`]).
//! - A **public key** file holds the 32-byte public key as one line of hex (what
//!   `bcpctl keys show` prints and what central is given with `--post-key POST=FILE` or a keys
//!   folder of `<POST>.pub` files).
//!
//! Key generation takes 32 bytes from the operating system's CSPRNG.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use bcp_record::seal::PostSigner;
use bcp_record::seal::{from_hex, to_hex};
use ed25519_dalek::SigningKey;

/// Errors reading or writing key files; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write key file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("key file {path} already exists; refusing to overwrite a post's key")]
    Exists { path: PathBuf },
    #[error("key file {path} does not hold 32 bytes of hex")]
    Malformed { path: PathBuf },
    #[error("the operating system's random source failed: {0}")]
    Random(String),
}

/// A post's signing key.
pub struct PostKey {
    /// The key, as the outbox signs records with it (AWS-LC) and as ed25519-dalek holds it.
    signer: PostSigner,
}

impl std::fmt::Debug for PostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("PostKey")
            .field("public", &self.public_hex())
            .finish()
    }
}

/// Where the key of the outbox at `outbox` lives unless configured otherwise.
pub fn default_key_path(outbox: &Path) -> PathBuf {
    let mut name = outbox.as_os_str().to_owned();
    name.push(".key");
    PathBuf::from(name)
}

impl PostKey {
    /// A key from a 32-byte seed (tests, benches).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            signer: PostSigner::new(&SigningKey::from_bytes(&seed)),
        }
    }

    /// A fresh key from the OS random source.
    pub fn generate() -> Result<Self, KeyError> {
        use rand::TryRngCore as _;
        let mut seed = [0u8; 32];
        rand::rngs::OsRng
            .try_fill_bytes(&mut seed)
            .map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self::from_seed(seed))
    }

    /// Reads a secret key file.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.to_owned(),
            source,
        })?;
        let seed = from_hex::<32>(&text).ok_or_else(|| KeyError::Malformed {
            path: path.to_owned(),
        })?;
        Ok(Self::from_seed(seed))
    }

    /// Generates a key and writes it to `path` (mode 0600); refuses to overwrite.
    pub fn init(path: &Path) -> Result<Self, KeyError> {
        let key = Self::generate()?;
        key.write_new(path)?;
        Ok(key)
    }

    /// Loads `path`, or generates and writes a key there if there is none.
    pub fn load_or_init(path: &Path) -> Result<(Self, bool), KeyError> {
        match Self::init(path) {
            Ok(key) => Ok((key, true)),
            Err(KeyError::Exists { .. }) => Ok((Self::load(path)?, false)),
            Err(e) => Err(e),
        }
    }

    /// Writes the secret to a new file (mode 0600), atomically: a temporary file is written and
    /// fsynced, then hard-linked to `path` (which fails if `path` exists) and the folder fsynced,
    /// so a crash leaves either no key or the whole key, never an empty file.
    pub fn write_new(&self, path: &Path) -> Result<(), KeyError> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let write_err = |source| KeyError::Write {
            path: path.to_owned(),
            source,
        };
        if path.exists() {
            return Err(KeyError::Exists {
                path: path.to_owned(),
            });
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".tmp-{}", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let _ = std::fs::remove_file(&tmp); // a leftover of an earlier crash of this pid
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(write_err)?;
        let written = writeln!(file, "{}", to_hex(self.signing_key().as_bytes()))
            .and_then(|()| file.sync_all())
            .and_then(|()| std::fs::hard_link(&tmp, path));
        let _ = std::fs::remove_file(&tmp);
        match written {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(KeyError::Exists {
                    path: path.to_owned(),
                })
            }
            Err(e) => return Err(write_err(e)),
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(write_err)?;
        }
        Ok(())
    }

    /// The Ed25519 key (ed25519-dalek): for signed lists, or to sign anything not a record.
    pub fn signing_key(&self) -> &SigningKey {
        self.signer.signing_key()
    }

    /// The key as records are sealed with it ([`bcp_record::seal::seal`]): AWS-LC's Ed25519,
    /// the same signatures as [`PostKey::signing_key`] 2.4 times as fast.
    pub fn record_signer(&self) -> &PostSigner {
        &self.signer
    }

    /// The public key.
    pub fn public(&self) -> [u8; 32] {
        *self.signing_key().verifying_key().as_bytes()
    }

    /// The public key as hex (the public key file's content).
    pub fn public_hex(&self) -> String {
        to_hex(&self.public())
    }
}

/// Reads a public key file (one line of 64 hex digits).
pub fn read_public_key(path: &Path) -> Result<[u8; 32], KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.to_owned(),
        source,
    })?;
    from_hex::<32>(&text).ok_or_else(|| KeyError::Malformed {
        path: path.to_owned(),
    })
}

/// Every `<POST>.pub` in `dir`, as `(post, public key)`.
pub fn read_keys_dir(dir: &Path) -> Result<Vec<(String, [u8; 32])>, KeyError> {
    let read_err = |source| KeyError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        if path.extension().is_some_and(|e| e == "pub") {
            if let Some(post) = path.file_stem().and_then(|s| s.to_str()) {
                out.push((post.to_owned(), read_public_key(&path)?));
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is the failure report
    use super::*;

    #[test]
    fn init_writes_0600_refuses_to_overwrite_and_loads_back() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = default_key_path(&dir.path().join("outbox.db"));
        assert!(path.ends_with("outbox.db.key"));
        let key = PostKey::init(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(matches!(PostKey::init(&path), Err(KeyError::Exists { .. })));
        assert_eq!(PostKey::load(&path).unwrap().public(), key.public());
        let (again, created) = PostKey::load_or_init(&path).unwrap();
        assert!(!created);
        assert_eq!(again.public(), key.public());
        assert!(!format!("{key:?}").contains(&to_hex(key.signing_key().as_bytes())));
    }

    #[test]
    fn public_keys_from_files_and_folders() {
        let dir = tempfile::tempdir().unwrap();
        let key = PostKey::from_seed([3; 32]);
        std::fs::write(dir.path().join("TJDYU-01.pub"), key.public_hex() + "\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        let keys = read_keys_dir(dir.path()).unwrap();
        assert_eq!(keys, vec![("TJDYU-01".to_owned(), key.public())]);
        std::fs::write(dir.path().join("BAD.pub"), "zz").unwrap();
        assert!(matches!(
            read_keys_dir(dir.path()),
            Err(KeyError::Malformed { .. })
        ));
    }
}
