//! Secrets at rest. Every secret column holds a [`Sealed`] value: AES-256-GCM under
//! the master key with a fresh 96-bit nonce, tagged with the key's id, so a key
//! ring that still holds an older key opens what was sealed before a rotation.
//! Only [`Sealer::seal`] makes a `Sealed`, so a secret cannot reach a column unsealed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use diesel_derive_newtype::DieselNewType;
use secrecy::SecretString;
use sha2::{Digest, Sha256};

use crate::config::MasterKeySource;

/// Marks a sealed value and its format: `wps1:<key id>:<base64 of nonce ‖ ciphertext ‖ tag>`.
const PREFIX: &str = "wps1:";
const NONCE_BYTES: usize = 12;
/// How often a key file is checked for a rotation made by `keys rotate`.
const FILE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// A secret as stored: opens only with the key ring it was sealed under.
#[derive(Debug, Clone, PartialEq, Eq, DieselNewType)]
pub struct Sealed(String);

impl Sealed {
    /// The stored text: key id, nonce and ciphertext, nothing to open it with.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of the key it is sealed under; `None` for a value stored before sealing existed.
    pub fn key_id(&self) -> Option<&str> {
        self.0.strip_prefix(PREFIX)?.split_once(':').map(|(id, _)| id)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("a secret is sealed under key {0}, which the configured master key ring does not hold")]
    UnknownKey(String),
    #[error("a sealed secret does not open: it was altered, or sealed under another key with the same id")]
    Corrupt,
    #[error("a secret is stored unsealed")]
    Unsealed,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("{0}: {1}")]
    File(PathBuf, String),
    #[error("{0} holds no key")]
    Empty(PathBuf),
    #[error("{0}: line {1} is not base64 of 32 bytes")]
    BadLine(PathBuf, usize),
    #[error("MASTER_KEY or MASTER_KEY_FILE is required with PostgreSQL (make one with: wecom-provider keys generate)")]
    Missing,
}

/// One AES-256 key and its id (the first 8 bytes of a SHA-256 over it, in hex: it
/// names the key in stored values without revealing it).
pub struct MasterKey {
    id: String,
    cipher: Aes256Gcm,
}

impl MasterKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        let digest = Sha256::new_with_prefix(b"wecom-provider master key id\0").chain_update(bytes).finalize();
        MasterKey { id: hex::encode(&digest[..8]), cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(bytes)) }
    }

    /// A new random key and its base64 text, as key files and `MASTER_KEY` hold it.
    pub fn generate() -> (Self, String) {
        let bytes: [u8; 32] = Aes256Gcm::generate_key(&mut OsRng).into();
        (Self::from_bytes(&bytes), STANDARD.encode(bytes))
    }

    pub fn from_base64(text: &str) -> Option<Self> {
        let bytes: [u8; 32] = STANDARD.decode(text.trim()).ok()?.try_into().ok()?;
        Some(Self::from_bytes(&bytes))
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

struct Keyring {
    /// Seals; the first key of the file.
    current: Arc<MasterKey>,
    /// Opens: the current key and the older ones a rotation keeps.
    keys: Vec<Arc<MasterKey>>,
}

impl Keyring {
    fn new(keys: Vec<MasterKey>) -> Option<Self> {
        let keys: Vec<Arc<MasterKey>> = keys.into_iter().map(Arc::new).collect();
        Some(Keyring { current: keys.first()?.clone(), keys })
    }

    fn find(&self, id: &str) -> Option<&MasterKey> {
        self.keys.iter().find(|key| key.id == id).map(|key| &**key)
    }
}

/// The key ring, shared by every user of one database; cheap to clone.
#[derive(Clone)]
pub struct Sealer {
    ring: Arc<RwLock<Keyring>>,
    file: Option<Arc<WatchedFile>>,
}

/// A key file and when it was last looked at, so a rotation on another process
/// reaches this one without a restart.
struct WatchedFile {
    path: PathBuf,
    state: Mutex<(Instant, Option<SystemTime>)>,
}

impl Sealer {
    /// A ring of fixed keys, the first sealing.
    pub fn with_keys(keys: Vec<MasterKey>) -> Option<Self> {
        Some(Sealer { ring: Arc::new(RwLock::new(Keyring::new(keys)?)), file: None })
    }

    /// Loads the key ring the configuration names. The embedded default creates its
    /// key file on first start (0600, in the database's 0700 folder) and says so once.
    pub fn load(source: &MasterKeySource) -> Result<Self, KeyringError> {
        match source {
            MasterKeySource::Inline(key) => {
                let key = MasterKey::from_base64(secrecy::ExposeSecret::expose_secret(key))
                    .ok_or_else(|| KeyringError::BadLine(PathBuf::from("MASTER_KEY"), 1))?;
                Ok(Self::with_keys(vec![key]).ok_or(KeyringError::Missing)?)
            }
            MasterKeySource::File(path) => Self::from_file(path),
            MasterKeySource::BesideDatabase(path) => {
                if !path.exists() {
                    create_key_file(path)?;
                    tracing::warn!(
                        path = %path.display(),
                        "created the master key file: back it up, the stored secrets cannot be opened without it"
                    );
                }
                Self::from_file(path)
            }
            MasterKeySource::Required => Err(KeyringError::Missing),
        }
    }

    fn from_file(path: &Path) -> Result<Self, KeyringError> {
        let (keys, modified) = read_key_file(path)?;
        let ring = Keyring::new(keys).ok_or_else(|| KeyringError::Empty(path.to_owned()))?;
        Ok(Sealer {
            ring: Arc::new(RwLock::new(ring)),
            file: Some(Arc::new(WatchedFile { path: path.to_owned(), state: Mutex::new((Instant::now(), modified)) })),
        })
    }

    /// The key file, when the ring comes from one (rotation rewrites it).
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref().map(|file| file.path.as_path())
    }

    pub fn current_key_id(&self) -> String {
        self.refresh(false);
        read(&self.ring).current.id.clone()
    }

    pub fn seal(&self, plaintext: &str) -> Sealed {
        self.refresh(false);
        let ring = read(&self.ring);
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        // Encrypting into memory cannot fail for inputs under 64 GiB.
        let ciphertext = ring.current.cipher.encrypt(&nonce, plaintext.as_bytes()).unwrap_or_default();
        let mut body = nonce.to_vec();
        body.extend_from_slice(&ciphertext);
        Sealed(format!("{PREFIX}{}:{}", ring.current.id, STANDARD_NO_PAD.encode(body)))
    }

    pub fn open(&self, sealed: &Sealed) -> Result<SecretString, SealError> {
        let rest = sealed.0.strip_prefix(PREFIX).ok_or(SealError::Unsealed)?;
        let (id, body) = rest.split_once(':').ok_or(SealError::Corrupt)?;
        let body = STANDARD_NO_PAD.decode(body).map_err(|_| SealError::Corrupt)?;
        if body.len() < NONCE_BYTES {
            return Err(SealError::Corrupt);
        }
        let (nonce, ciphertext) = body.split_at(NONCE_BYTES);
        let open_with =
            |ring: &Keyring| ring.find(id).map(|key| key.cipher.decrypt(Nonce::from_slice(nonce), ciphertext));
        let mut opened = open_with(&read(&self.ring));
        if opened.is_none() && self.refresh(true) {
            opened = open_with(&read(&self.ring));
        }
        let plaintext = opened.ok_or_else(|| SealError::UnknownKey(id.to_owned()))?.map_err(|_| SealError::Corrupt)?;
        String::from_utf8(plaintext).map(SecretString::from).map_err(|_| SealError::Corrupt)
    }

    /// Re-reads the key file when it changed (at most once a second, or now when
    /// `urgent`: a value names a key this ring lacks). Whether the ring changed.
    fn refresh(&self, urgent: bool) -> bool {
        let Some(file) = &self.file else {
            return false;
        };
        let mut state = lock(&file.state);
        if !urgent && state.0.elapsed() < FILE_CHECK_INTERVAL {
            return false;
        }
        state.0 = Instant::now();
        let modified = std::fs::metadata(&file.path).and_then(|meta| meta.modified()).ok();
        if modified == state.1 && !urgent {
            return false;
        }
        match read_key_file(&file.path) {
            Ok((keys, modified)) => match Keyring::new(keys) {
                Some(ring) => {
                    state.1 = modified;
                    *write(&self.ring) = ring;
                    true
                }
                None => false,
            },
            Err(error) => {
                tracing::warn!(%error, "cannot re-read the master key file; keeping the keys loaded");
                false
            }
        }
    }

    /// Writes `key` as the file's current key, keeping the others after it for what
    /// is still sealed under them (or dropping them with `retire_others`). Atomic: the
    /// new file replaces the old by rename.
    pub fn write_key_file(path: &Path, key_text: &str, retire_others: bool) -> Result<(), KeyringError> {
        let file_error = |e: std::io::Error| KeyringError::File(path.to_owned(), e.to_string());
        let existing = std::fs::read_to_string(path).map_err(file_error)?;
        let mut text = format!("{key_text}\n");
        if !retire_others {
            for line in existing.lines().filter(|line| is_key_line(line)) {
                text.push_str(line.trim());
                text.push('\n');
            }
        }
        let staging = path.with_extension("key-new");
        write_owner_only(&staging, &text, true).map_err(file_error)?;
        std::fs::rename(&staging, path).map_err(file_error)
    }
}

/// A column that holds secrets, and the columns that find its row.
struct SecretColumn {
    table: &'static str,
    keys: &'static [&'static str],
    column: &'static str,
}

const fn secret(table: &'static str, keys: &'static [&'static str], column: &'static str) -> SecretColumn {
    SecretColumn { table, keys, column }
}

/// Every column that holds a secret: what sealing on first start and `keys rotate` visit.
const SECRET_COLUMNS: &[SecretColumn] = &[
    secret("providers", &["provider_corpid"], "provider_secret"),
    secret("providers", &["provider_corpid"], "callback_token"),
    secret("providers", &["provider_corpid"], "encoding_aes_key"),
    secret("suites", &["suite_id"], "suite_secret"),
    secret("suites", &["suite_id"], "callback_token"),
    secret("suites", &["suite_id"], "encoding_aes_key"),
    secret("suites", &["suite_id"], "ticket"),
    secret("corps", &["suite_id", "corpid"], "permanent_code"),
    secret("tokens", &["scope", "key"], "access_token"),
    secret("webhooks", &["id"], "secret"),
    secret("events", &["id"], "plaintext"),
    secret("registrations", &["event_id"], "contact_sync_token"),
];

const RESEAL_BATCH: i64 = 500;

#[derive(Debug, thiserror::Error)]
pub enum ResealError {
    #[error(transparent)]
    Store(#[from] super::StoreError),
    #[error("the master key does not open the stored secrets ({0}); start with the key they were sealed under")]
    WrongKey(SealError),
}

impl From<diesel::result::Error> for ResealError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Store(error.into())
    }
}

#[derive(diesel::QueryableByName)]
struct StoredSecret {
    #[diesel(sql_type = diesel::sql_types::Text)]
    first_key: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    second_key: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    value: String,
}

/// Values re-sealed, per column (`table.column`), and of them how many were stored unsealed.
#[derive(Debug, Default)]
pub struct ResealReport {
    pub resealed: Vec<(String, u64)>,
    pub were_unsealed: u64,
}

/// Seals under the current key every secret that is not: values stored before
/// sealing existed, and values under an older key of the ring. Each write replaces
/// only the value it read, so a secret the service changes meanwhile is kept.
pub fn reseal_all(conn: &mut super::Conn, sealer: &Sealer) -> Result<ResealReport, ResealError> {
    use diesel::RunQueryDsl;
    let current = sealer.current_key_id();
    let mut report = ResealReport::default();
    for column in SECRET_COLUMNS {
        let mut resealed = 0u64;
        loop {
            let select = select_outdated(column, &current);
            let batch: Vec<StoredSecret> = crate::with_backend!(conn, c => diesel::sql_query(&select).load(c)?);
            if batch.is_empty() {
                break;
            }
            for stored in batch {
                let value = Sealed(stored.value.clone());
                let plaintext = match sealer.open(&value) {
                    Ok(plaintext) => plaintext,
                    Err(SealError::Unsealed) => {
                        report.were_unsealed += 1;
                        SecretString::from(stored.value.clone())
                    }
                    Err(error) => return Err(ResealError::WrongKey(error)),
                };
                let fresh = sealer.seal(secrecy::ExposeSecret::expose_secret(&plaintext));
                resealed += replace_value(conn, column, &stored, &fresh.0)?;
            }
        }
        if resealed > 0 {
            report.resealed.push((format!("{}.{}", column.table, column.column), resealed));
        }
    }
    Ok(report)
}

fn key_expression(column: &SecretColumn, index: usize) -> String {
    match column.keys.get(index) {
        // Event ids are numbers; the others are text already.
        Some(&"id") if column.table == "events" => "CAST(id AS TEXT)".to_owned(),
        Some(key) => (*key).to_owned(),
        None => "''".to_owned(),
    }
}

fn select_outdated(column: &SecretColumn, current: &str) -> String {
    // Key ids are hex, so inlining the current one is safe.
    format!(
        "SELECT {} AS first_key, {} AS second_key, {col} AS value FROM {table} \
         WHERE {col} IS NOT NULL AND {col} NOT LIKE '{PREFIX}{current}:%' LIMIT {RESEAL_BATCH}",
        key_expression(column, 0),
        key_expression(column, 1),
        col = column.column,
        table = column.table,
    )
}

fn replace_value(
    conn: &mut super::Conn,
    column: &SecretColumn,
    stored: &StoredSecret,
    fresh: &str,
) -> Result<u64, ResealError> {
    use diesel::RunQueryDsl;
    use diesel::sql_types::Text;
    let placeholder = |conn: &super::Conn, n: usize| match conn {
        super::Conn::Sqlite(_) => "?".to_owned(),
        super::Conn::Pg(_) => format!("${n}"),
    };
    let first = if column.table == "events" {
        format!("id = CAST({} AS BIGINT)", placeholder(conn, 2))
    } else {
        format!("{} = {}", column.keys[0], placeholder(conn, 2))
    };
    let second = match column.keys.get(1) {
        Some(key) => format!("{key} = {}", placeholder(conn, 3)),
        None => format!("'' = {}", placeholder(conn, 3)),
    };
    let sql = format!(
        "UPDATE {table} SET {col} = {p1} WHERE {first} AND {second} AND {col} = {p4}",
        table = column.table,
        col = column.column,
        p1 = placeholder(conn, 1),
        p4 = placeholder(conn, 4),
    );
    let updated = crate::with_backend!(conn, c => diesel::sql_query(&sql)
        .bind::<Text, _>(fresh)
        .bind::<Text, _>(&stored.first_key)
        .bind::<Text, _>(&stored.second_key)
        .bind::<Text, _>(&stored.value)
        .execute(c)?);
    Ok(u64::try_from(updated).unwrap_or(0))
}

/// What the database says about sealing, checked before anything else runs.
pub fn sealed_under(conn: &mut super::Conn) -> super::StoreResult<Option<String>> {
    use super::schema::sealing_state;
    use diesel::prelude::*;
    Ok(crate::with_backend!(conn, c => sealing_state::table
        .find(1)
        .select(sealing_state::key_id)
        .first(c)
        .optional()?))
}

pub fn record_sealed_under(conn: &mut super::Conn, key_id: &str) -> super::StoreResult<()> {
    use super::schema::sealing_state;
    use diesel::prelude::*;
    let row =
        (sealing_state::id.eq(1), sealing_state::key_id.eq(key_id), sealing_state::updated_at.eq(super::now_ms()));
    crate::with_backend!(conn, c => diesel::insert_into(sealing_state::table)
        .values(row)
        .on_conflict(sealing_state::id)
        .do_update()
        .set((sealing_state::key_id.eq(key_id), sealing_state::updated_at.eq(super::now_ms())))
        .execute(c)?);
    Ok(())
}

/// Makes every stored secret sealed under the current key, unless the database
/// already records that it is. A ring without the recorded key is refused before
/// anything is touched.
pub fn ensure_sealed(conn: &mut super::Conn, sealer: &Sealer) -> Result<Option<ResealReport>, ResealError> {
    let current = sealer.current_key_id();
    match sealed_under(conn)? {
        Some(recorded) if recorded == current => return Ok(None),
        Some(recorded) if !read(&sealer.ring).keys.iter().any(|key| key.id == recorded) => {
            return Err(ResealError::WrongKey(SealError::UnknownKey(recorded)));
        }
        _ => {}
    }
    let report = reseal_all(conn, sealer)?;
    record_sealed_under(conn, &current)?;
    Ok(Some(report))
}

fn is_key_line(line: &str) -> bool {
    let line = line.trim();
    !line.is_empty() && !line.starts_with('#')
}

/// One base64 key per line, the current one first; blank lines and `#` comments skipped.
fn read_key_file(path: &Path) -> Result<(Vec<MasterKey>, Option<SystemTime>), KeyringError> {
    let text = std::fs::read_to_string(path).map_err(|e| KeyringError::File(path.to_owned(), e.to_string()))?;
    let modified = std::fs::metadata(path).and_then(|meta| meta.modified()).ok();
    let mut keys = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if is_key_line(line) {
            keys.push(MasterKey::from_base64(line).ok_or_else(|| KeyringError::BadLine(path.to_owned(), number + 1))?);
        }
    }
    Ok((keys, modified))
}

fn create_key_file(path: &Path) -> Result<(), KeyringError> {
    let (_, text) = MasterKey::generate();
    let file_error = |e: std::io::Error| KeyringError::File(path.to_owned(), e.to_string());
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(parent).map_err(file_error)?;
    }
    write_owner_only(path, &format!("{text}\n"), false).map_err(file_error)
}

fn write_owner_only(path: &Path, text: &str, replace: bool) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(0o600);
    if replace {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn sealer() -> (Sealer, String) {
        let (key, text) = MasterKey::generate();
        (Sealer::with_keys(vec![key]).expect("one key"), text)
    }

    #[test]
    fn a_sealed_value_opens_and_hides_its_plaintext() {
        let (sealer, _) = sealer();
        let sealed = sealer.seal("permanent-code-123");
        assert!(!sealed.0.contains("permanent-code-123"));
        assert_eq!(sealed.key_id(), Some(sealer.current_key_id().as_str()));
        assert_eq!(sealer.open(&sealed).expect("opens").expose_secret(), "permanent-code-123");
        assert_ne!(sealer.seal("permanent-code-123"), sealed, "each seal has its own nonce");
    }

    #[test]
    fn another_key_or_an_altered_value_does_not_open() {
        let (sealer, _) = sealer();
        let (other, _) = self::sealer();
        let sealed = sealer.seal("secret");
        assert!(matches!(other.open(&sealed), Err(SealError::UnknownKey(_))));
        let mut altered = sealed.0.clone();
        let last = altered.pop().expect("not empty");
        altered.push(if last == 'A' { 'B' } else { 'A' });
        assert_eq!(sealer.open(&Sealed(altered)).err(), Some(SealError::Corrupt));
        assert_eq!(sealer.open(&Sealed("plain".into())).err(), Some(SealError::Unsealed));
    }

    proptest::proptest! {
        #[test]
        fn any_text_round_trips_and_any_flipped_character_is_refused(text in ".{0,200}", at in 0usize..400) {
            let (sealer, _) = sealer();
            let sealed = sealer.seal(&text);
            let opened = sealer.open(&sealed).expect("opens");
            proptest::prop_assert_eq!(opened.expose_secret(), text.as_str());
            let body_start = sealed.0.rfind(':').expect("has a body") + 1;
            let mut chars: Vec<char> = sealed.0.chars().collect();
            let index = body_start + at % (chars.len() - body_start);
            chars[index] = if chars[index] == 'A' { 'B' } else { 'A' };
            let altered = Sealed(chars.into_iter().collect());
            proptest::prop_assert!(sealer.open(&altered).is_err());
        }
    }

    #[test]
    fn a_rotated_key_file_reaches_a_running_ring_and_old_values_still_open() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("master.key");
        let sealer = Sealer::load(&MasterKeySource::BesideDatabase(path.clone())).expect("created");
        let before = sealer.seal("ticket");
        let old_id = sealer.current_key_id();
        let (new_key, new_text) = MasterKey::generate();
        Sealer::write_key_file(&path, &new_text, false).expect("rotated");
        // An unknown id forces a re-read at once; sealing then uses the new key.
        let other = Sealer::load(&MasterKeySource::File(path.clone())).expect("loads");
        let after = other.seal("ticket");
        assert_eq!(after.key_id(), Some(new_key.id()));
        assert_eq!(sealer.open(&after).expect("re-reads the file").expose_secret(), "ticket");
        assert_eq!(sealer.open(&before).expect("old key kept").expose_secret(), "ticket");
        assert_eq!(sealer.current_key_id(), new_key.id());
        assert_ne!(old_id, new_key.id());
        Sealer::write_key_file(&path, &new_text, true).expect("retired");
        let retired = Sealer::load(&MasterKeySource::File(path)).expect("loads");
        assert!(matches!(retired.open(&before), Err(SealError::UnknownKey(_))));
    }
}
