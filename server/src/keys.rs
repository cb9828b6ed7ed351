//! Key material: the Ed25519 keys that sign JWTs and the separate AES-256-GCM key that
//! encrypts secrets at rest. The two are never derived from each other.
//!
//! * Signing keys live in the `signing_keys` table (private half sealed with the encryption
//!   key) so every replica sharing the database signs and verifies alike, and a restart keeps
//!   every issued token valid. With `JWT_SECRET` set, the key is derived from it instead.
//! * The encryption key comes from `ENCRYPTION_KEY`, or is generated once into
//!   `KEY_DIR/encryption.key` (mode 0600). It is not in the database on purpose, nor by
//!   default beside it (`KEY_DIR` is `./keys`, `DATA_DIR` `./data`): a stolen database, its
//!   volume or its backups alone must not reveal the secrets stored in it.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use anyhow::{Context, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use shared::auth::{Jwk, Jwks};

use crate::config::Config;
use crate::db::{self, Db};

/// Retired signing keys keep verifying this long after retirement: longer than any token
/// the gateway issues lives.
pub const RETIRED_KEY_GRACE_SECS: i64 = 7 * 24 * 3600;

const SEALED_VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
/// PKCS#8 v1 prefix of an Ed25519 private key; the 32-byte seed follows.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Fills a fresh array from the operating system's CSPRNG.
/// Compares two secrets in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn random_bytes<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| anyhow!("the OS random generator failed: {e}"))?;
    Ok(buf)
}

/// Authenticated encryption for secrets at rest. The `context` of each call is bound into
/// the ciphertext (AEAD associated data), so a value cannot be moved to another row or field.
pub struct SecretBox {
    cipher: Aes256Gcm,
}

impl SecretBox {
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            cipher: Aes256Gcm::new(key.into()),
        }
    }

    /// `version (1) || nonce (12) || ciphertext+tag`.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> anyhow::Result<Vec<u8>> {
        let nonce: [u8; NONCE_LEN] = random_bytes()?;
        let ciphertext = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| anyhow!("encryption failed"))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(SEALED_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    pub fn open(&self, sealed: &[u8], context: &str) -> anyhow::Result<Vec<u8>> {
        let (version, rest) = sealed
            .split_first()
            .ok_or_else(|| anyhow!("empty ciphertext"))?;
        if *version != SEALED_VERSION || rest.len() < NONCE_LEN {
            bail!("unknown ciphertext format");
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into()?;
        self.cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| {
                anyhow!("decryption failed: the encryption key does not match the one this value was stored with")
            })
    }
}

/// The encryption key, and where a key generated just now is to be written once the database
/// has taken it (`confirm`).
pub struct EncryptionKey {
    pub key: [u8; 32],
    new_file: Option<std::path::PathBuf>,
}

/// Where the database keeps a value sealed with its encryption key.
const KEY_CHECK: &str = "encryption_key_check";
const KEY_CHECK_CONTEXT: &str = "encryption-key-check";

impl EncryptionKey {
    /// Holds the key to the database before anything is sealed with it: a database sealed with
    /// another key (a key lost from `KEY_DIR` and generated anew, a wrong `ENCRYPTION_KEY`) stops
    /// start-up here, and no new key is written; otherwise a key generated just now is written
    /// to its file (before the database holds anything sealed with it).
    pub async fn check(
        &self,
        db: &crate::db::Db,
        secret_box: &SecretBox,
        config: &Config,
    ) -> anyhow::Result<()> {
        let stored = crate::db::limits::get_setting(&db.pool, KEY_CHECK).await?;
        if let Some(stored) = stored {
            let opens = base64::engine::general_purpose::STANDARD
                .decode(stored.trim())
                .ok()
                .is_some_and(|sealed| secret_box.open(&sealed, KEY_CHECK_CONTEXT).is_ok());
            if !opens {
                match &self.new_file {
                    Some(_) => bail!(
                        "KEY_DIR {} holds no encryption key, but this database was sealed with one: put that key back into KEY_DIR (or pass it as ENCRYPTION_KEY or ENCRYPTION_KEY_FILE); no new key was written",
                        config.key_dir.display()
                    ),
                    None => bail!(
                        "the encryption key is not the one this database was sealed with: give the gateway its key (ENCRYPTION_KEY, ENCRYPTION_KEY_FILE or KEY_DIR/encryption.key)"
                    ),
                }
            }
        }
        if let Some(path) = &self.new_file {
            write_key_file(path, &self.key)?;
            tracing::info!(path = %path.display(), "generated a new encryption key for secrets at rest");
        }
        Ok(())
    }

    /// Stores the value `check` tries, once the key has opened what the database held (the
    /// stored signing key): the first key the database is known to work with.
    pub async fn remember(&self, db: &crate::db::Db, secret_box: &SecretBox) -> anyhow::Result<()> {
        let sealed = secret_box.seal(b"authmcp-gateway", KEY_CHECK_CONTEXT)?;
        crate::db::limits::insert_setting(
            &db.pool,
            KEY_CHECK,
            &base64::engine::general_purpose::STANDARD.encode(sealed),
            crate::db::now(),
        )
        .await?;
        Ok(())
    }
}

/// Reads `ENCRYPTION_KEY`, or the key file in `KEY_DIR`, or makes a new key for that file
/// (written by `EncryptionKey::confirm`). A key generated by an earlier version into `DATA_DIR`
/// is still read from there (with a warning to move it), never replaced by a new one.
pub fn load_encryption_key(config: &Config) -> anyhow::Result<EncryptionKey> {
    if let Some(key) = &config.encryption_key {
        return Ok(EncryptionKey {
            key: *key.expose(),
            new_file: None,
        });
    }
    let path = config.key_dir.join("encryption.key");
    let legacy = config.data_dir.join("encryption.key");
    if path != legacy
        && !path.exists()
        && let Some(key) = read_key_file(&legacy)?
    {
        tracing::warn!(
            path = %legacy.display(),
            key_dir = %config.key_dir.display(),
            "the encryption key is in DATA_DIR, beside the database it protects: move it into KEY_DIR (or pass it as ENCRYPTION_KEY or ENCRYPTION_KEY_FILE)"
        );
        if read_key_file(&path).ok().flatten().is_some() {
            tracing::warn!(path = %path.display(), "KEY_DIR also holds an encryption key; the one in DATA_DIR is used");
        }
        return Ok(EncryptionKey {
            key,
            new_file: None,
        });
    }
    crate::files::secure_dir(&config.key_dir)
        .with_context(|| format!("creating KEY_DIR {}", config.key_dir.display()))?;
    match read_key_file(&path)? {
        Some(key) => Ok(EncryptionKey {
            key,
            new_file: None,
        }),
        None => Ok(EncryptionKey {
            key: random_bytes()?,
            new_file: Some(path),
        }),
    }
}

fn read_key_file(path: &Path) -> anyhow::Result<Option<[u8; 32]>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "the encryption key file is readable by other users; chmod 600 it");
        }
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| anyhow!("{} does not hold a base64 32-byte key", path.display()))?;
    Ok(Some(bytes))
}

fn write_key_file(path: &Path, key: &[u8; 32]) -> anyhow::Result<()> {
    let mut options = crate::files::private_file();
    options.write(true).create_new(true);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    writeln!(
        file,
        "{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )?;
    file.sync_all()?;
    Ok(())
}

/// One Ed25519 key: its id, the `jsonwebtoken` keys and the public half for the JWKS.
struct SigningKey {
    kid: String,
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
    public_x: String,
}

impl SigningKey {
    fn from_seed(seed: &[u8; 32]) -> anyhow::Result<Self> {
        let public = ed25519_dalek::SigningKey::from_bytes(seed)
            .verifying_key()
            .to_bytes();
        let public_x = URL_SAFE_NO_PAD.encode(public);
        let mut pkcs8 = ED25519_PKCS8_PREFIX.to_vec();
        pkcs8.extend_from_slice(seed);
        Ok(Self {
            kid: kid_for(&public),
            encoding: Some(EncodingKey::from_ed_der(&pkcs8)),
            decoding: DecodingKey::from_ed_components(&public_x)?,
            public_x,
        })
    }
}

/// The key id is derived from the public key, so the same key always has the same `kid`.
fn kid_for(public: &[u8]) -> String {
    let digest = Sha256::digest(public);
    URL_SAFE_NO_PAD.encode(&digest[..12])
}

/// Why a token was refused. Callers answer every variant with the same 401.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("token signed by an unknown key")]
    UnknownKey,
    #[error("token rejected: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
}

/// Unknown `kid`s trigger a reload from the database at most this often (another replica may
/// have rotated the key).
const RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// The live set of signing keys, reloadable without a restart (key rotation, or a rotation
/// done by another replica).
pub struct KeyRing {
    db: Db,
    config: Arc<Config>,
    secret_box: Arc<SecretBox>,
    keys: RwLock<Arc<SigningKeys>>,
    last_reload: Mutex<Instant>,
}

impl KeyRing {
    pub async fn load(
        db: Db,
        config: Arc<Config>,
        secret_box: Arc<SecretBox>,
    ) -> anyhow::Result<KeyRing> {
        let keys = SigningKeys::load_or_create(&db, &config, &secret_box).await?;
        Ok(KeyRing {
            db,
            config,
            secret_box,
            keys: RwLock::new(Arc::new(keys)),
            last_reload: Mutex::new(Instant::now()),
        })
    }

    pub fn get(&self) -> Arc<SigningKeys> {
        match self.keys.read() {
            Ok(keys) => keys.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub async fn reload(&self) -> anyhow::Result<()> {
        self.reload_from(&self.db).await
    }

    /// `reload` reading (and, if no key is usable, writing) through `db` (the periodic reload
    /// passes `Db::background`).
    pub async fn reload_from(&self, db: &Db) -> anyhow::Result<()> {
        let keys = SigningKeys::load_or_create(db, &self.config, &self.secret_box).await?;
        match self.keys.write() {
            Ok(mut slot) => *slot = Arc::new(keys),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(keys),
        }
        Ok(())
    }

    /// Generates a new signing key, retires the others (they keep verifying for
    /// `RETIRED_KEY_GRACE_SECS`) and starts signing with the new one.
    pub async fn rotate(&self) -> anyhow::Result<String> {
        if self.config.jwt_secret.is_some() {
            bail!("the signing key is derived from JWT_SECRET; change JWT_SECRET to rotate it");
        }
        let mut tx = self.db.begin().await?;
        let kid = SigningKeys::generate_in(&mut *tx, &self.secret_box).await?;
        db::keys::retire_all_except(&mut *tx, &kid, db::now()).await?;
        tx.commit().await?;
        self.reload().await?;
        tracing::info!(%kid, "rotated the JWT signing key");
        Ok(kid)
    }

    pub fn sign<T: Serialize>(&self, claims: &T) -> anyhow::Result<String> {
        self.get().sign(claims)
    }

    pub fn current_kid(&self) -> String {
        self.get().current_kid().to_string()
    }

    pub fn jwks(&self) -> Jwks {
        self.get().jwks()
    }

    /// Verifies with the current set; on an unknown `kid`, reloads (rate-limited) and retries.
    pub async fn verify<T: DeserializeOwned>(
        &self,
        token: &str,
        issuer: &str,
        audience: &[&str],
    ) -> Result<T, TokenError> {
        match self.get().verify(token, issuer, audience) {
            Err(TokenError::UnknownKey) if self.may_reload() => {
                if let Err(e) = self.reload().await {
                    tracing::warn!(error = format!("{e:#}"), "reloading signing keys failed");
                }
                self.get().verify(token, issuer, audience)
            }
            other => other,
        }
    }

    fn may_reload(&self) -> bool {
        let Ok(mut last) = self.last_reload.lock() else {
            return false;
        };
        if last.elapsed() < RELOAD_INTERVAL {
            return false;
        }
        *last = Instant::now();
        true
    }
}

/// The keys that sign (the newest active one) and verify (all usable ones) JWTs.
pub struct SigningKeys {
    current: String,
    keys: HashMap<String, SigningKey>,
}

impl SigningKeys {
    /// Loads the usable keys from the database, generating and storing one when there is none;
    /// or derives the single key from `JWT_SECRET` when it is set.
    pub async fn load_or_create(
        db: &Db,
        config: &Config,
        secret_box: &SecretBox,
    ) -> anyhow::Result<SigningKeys> {
        if let Some(secret) = &config.jwt_secret {
            let hkdf =
                hkdf::Hkdf::<Sha256>::new(Some(b"authmcp-gateway"), secret.expose().as_bytes());
            let mut seed = [0u8; 32];
            hkdf.expand(b"jwt-signing-ed25519-v1", &mut seed)
                .map_err(|_| anyhow!("deriving the signing key"))?;
            let key = SigningKey::from_seed(&seed)?;
            return Ok(SigningKeys {
                current: key.kid.clone(),
                keys: HashMap::from([(key.kid.clone(), key)]),
            });
        }
        let mut rows = db::keys::list_usable(&db.pool, db::now() - RETIRED_KEY_GRACE_SECS).await?;
        if !rows.iter().any(|r| r.retired_at.is_none()) {
            Self::generate(db, secret_box).await?;
            rows = db::keys::list_usable(&db.pool, db::now() - RETIRED_KEY_GRACE_SECS).await?;
        }
        let mut keys = HashMap::new();
        let mut current = None;
        for row in rows {
            let context = format!("signing_keys:{}", row.kid);
            let seed: [u8; 32] = secret_box
                .open(&row.private_key, &context)
                .with_context(|| format!("unsealing signing key {}", row.kid))?
                .try_into()
                .map_err(|_| anyhow!("signing key {} has the wrong length", row.kid))?;
            let mut key = SigningKey::from_seed(&seed)?;
            if key.kid != row.kid || key.public_x != row.public_key {
                bail!(
                    "signing key {} does not match its stored public key",
                    row.kid
                );
            }
            // Rows are newest first: the first active one signs, retired ones only verify.
            if row.retired_at.is_none() && current.is_none() {
                current = Some(row.kid.clone());
            } else if row.retired_at.is_some() {
                key.encoding = None;
            }
            keys.insert(row.kid, key);
        }
        let current = current.ok_or_else(|| anyhow!("no active signing key"))?;
        Ok(SigningKeys { current, keys })
    }

    /// Generates a key, stores it sealed, and returns its kid. Two replicas racing here both
    /// insert a key; both keys verify and the newest signs, which is harmless.
    pub async fn generate(db: &Db, secret_box: &SecretBox) -> anyhow::Result<String> {
        Self::generate_in(&db.pool, secret_box).await
    }

    async fn generate_in(
        db: impl sqlx::AnyExecutor<'_>,
        secret_box: &SecretBox,
    ) -> anyhow::Result<String> {
        let seed: [u8; 32] = random_bytes()?;
        let key = SigningKey::from_seed(&seed)?;
        let context = format!("signing_keys:{}", key.kid);
        db::keys::insert(
            db,
            &db::keys::SigningKeyRow {
                kid: key.kid.clone(),
                algorithm: "EdDSA".into(),
                private_key: secret_box.seal(&seed, &context)?,
                public_key: key.public_x.clone(),
                created_at: db::now(),
                retired_at: None,
            },
        )
        .await?;
        tracing::info!(kid = %key.kid, "generated a new JWT signing key");
        Ok(key.kid)
    }

    pub fn current_kid(&self) -> &str {
        &self.current
    }

    /// Signs `claims` with the current key (`alg: EdDSA`, `kid` header).
    pub fn sign<T: Serialize>(&self, claims: &T) -> anyhow::Result<String> {
        let key = self
            .keys
            .get(&self.current)
            .and_then(|k| k.encoding.as_ref())
            .ok_or_else(|| anyhow!("the current signing key is missing"))?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.current.clone());
        Ok(jsonwebtoken::encode(&header, claims, key)?)
    }

    /// Verifies signature, `exp`, `iss` and `aud`. Only `EdDSA` with a known `kid` is accepted
    /// (so `alg: none` and HMAC confusion are impossible).
    pub fn verify<T: DeserializeOwned>(
        &self,
        token: &str,
        issuer: &str,
        audience: &[&str],
    ) -> Result<T, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Malformed);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.get(kid))
            .ok_or(TokenError::UnknownKey)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_audience(audience);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;
        Ok(jsonwebtoken::decode::<T>(token, &key.decoding, &validation)?.claims)
    }

    /// The public keys, for `/.well-known/jwks.json`.
    pub fn jwks(&self) -> Jwks {
        let mut keys: Vec<Jwk> = self
            .keys
            .values()
            .map(|k| Jwk {
                kty: "OKP".into(),
                crv: "Ed25519".into(),
                alg: "EdDSA".into(),
                key_use: "sig".into(),
                kid: k.kid.clone(),
                x: k.public_x.clone(),
            })
            .collect();
        keys.sort_by(|a, b| (a.kid != self.current, &a.kid).cmp(&(b.kid != self.current, &b.kid)));
        Jwks { keys }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_context() {
        let key = [7u8; 32];
        let sealed = SecretBox::new(&key)
            .seal(b"backend-token", "row:1")
            .unwrap();
        assert!(!sealed.windows(13).any(|w| w == b"backend-token"));
        assert_eq!(
            SecretBox::new(&key).open(&sealed, "row:1").unwrap(),
            b"backend-token"
        );
        assert!(SecretBox::new(&key).open(&sealed, "row:2").is_err());
        assert!(SecretBox::new(&[8u8; 32]).open(&sealed, "row:1").is_err());
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(SecretBox::new(&key).open(&tampered, "row:1").is_err());
    }

    #[test]
    fn tokens_verify_with_the_signing_key_only() {
        let a = SigningKey::from_seed(&[1u8; 32]).unwrap();
        let b = SigningKey::from_seed(&[2u8; 32]).unwrap();
        let keys = SigningKeys {
            current: a.kid.clone(),
            keys: HashMap::from([(a.kid.clone(), a)]),
        };
        let other = SigningKeys {
            current: b.kid.clone(),
            keys: HashMap::from([(b.kid.clone(), b)]),
        };
        let claims = serde_json::json!({"iss": "i", "aud": "a", "sub": "1", "exp": db::now() + 60});
        let token = keys.sign(&claims).unwrap();
        let back: serde_json::Value = keys.verify(&token, "i", &["a"]).unwrap();
        assert_eq!(back["sub"], "1");
        assert!(
            keys.verify::<serde_json::Value>(&token, "i", &["other"])
                .is_err()
        );
        assert!(
            keys.verify::<serde_json::Value>(&token, "other", &["a"])
                .is_err()
        );
        assert!(matches!(
            other.verify::<serde_json::Value>(&token, "i", &["a"]),
            Err(TokenError::UnknownKey)
        ));
    }
}
