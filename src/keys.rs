//! `keys rotate`: a new master key made current and every secret re-sealed under
//! it while the service runs. Instances that share the key file read the new key
//! within a second of the file changing (and at once when they meet a value sealed
//! under a key they lack), so the pass waits for them before it re-seals.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use crate::store::audit::{self, ACTOR_CLI, NewAuditEntry};
use crate::store::sealing::{self, KeyringError, MasterKey, ResealError, ResealReport, Sealer};
use crate::store::{Db, StoreError};

/// Longer than the sealers' file check, so every running instance seals under the
/// new key before the pass looks for values under the old one.
const SETTLE: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error(
        "keys rotate needs the key in a file (MASTER_KEY_FILE, or the embedded default beside the SQLite database): running instances read the new key from it"
    )]
    NoKeyFile,
    #[error(transparent)]
    Keys(#[from] KeyringError),
    #[error(transparent)]
    Reseal(#[from] ResealError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Rotation {
    pub from: String,
    pub to: String,
    pub file: PathBuf,
    pub report: ResealReport,
}

pub async fn rotate(db: &Db, retire_old: bool) -> Result<Rotation, RotateError> {
    let sealer = db.sealer().clone();
    let file = sealer.file().ok_or(RotateError::NoKeyFile)?.to_owned();
    let from = sealer.current_key_id();
    let (new_key, new_text) = MasterKey::generate();
    Sealer::write_key_file(&file, &new_text, false)?;
    tokio::time::sleep(SETTLE).await;
    let to = sealer.current_key_id();
    if to != new_key.id() {
        return Err(KeyringError::File(file, "was rewritten, but the new key did not become current".into()).into());
    }
    let pass = sealer.clone();
    let report = db.run(move |conn| Ok(sealing::reseal_all(conn, &pass))).await??;
    let entry = NewAuditEntry::new(
        ACTOR_CLI,
        "keys.rotate",
        &to,
        json!({ "from": from, "resealed": report.resealed.iter().map(|(_, n)| n).sum::<u64>(), "retire_old": retire_old }),
    );
    let recorded = to.clone();
    db.run(move |conn| {
        sealing::record_sealed_under(conn, &recorded)?;
        audit::append(conn, &entry)
    })
    .await?;
    if retire_old {
        Sealer::write_key_file(&file, &new_text, true)?;
    }
    Ok(Rotation { from, to, file, report })
}
