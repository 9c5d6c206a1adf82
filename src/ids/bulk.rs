//! `wecom-provider ids convert`: a CSV column of plaintext IDs converted in bulk,
//! for a provider migrating to ciphertext IDs.
//!
//! Resumable by construction: every batch WeCom answers is stored before the next
//! is asked, and stored IDs cost no call, so running the same command again after
//! an interruption (a crash, WeCom's frequency limit) continues where it stopped.
//! The output files are written once every ID has an answer.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::{Conversion, CorpScope, IdError, IdKind, Ids, Pacer};
use crate::model::{CorpId, ProviderCorpId, SuiteId, UserId};

/// IDs handed to the conversion at a time: progress is reported between blocks.
const BLOCK: usize = 1_000;
/// Without a terminal, a progress line at most this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// What to convert, from which file, for whom.
#[derive(Debug, Clone)]
pub struct ConvertJob {
    pub kind: IdKind,
    pub provider_corpid: Option<ProviderCorpId>,
    pub suite_id: Option<SuiteId>,
    pub corpid: Option<CorpId>,
    pub input: PathBuf,
    pub column: String,
    pub output: PathBuf,
    pub rejects: PathBuf,
    pub calls_per_minute: u32,
}

/// How a finished run went.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub rows: usize,
    pub converted: usize,
    pub rejected: usize,
    pub upstream_calls: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum BulkError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot read {path}: {message}")]
    Input { path: String, message: String },
    #[error("cannot write {path}: {message}")]
    Output { path: String, message: String },
    #[error(
        "stopped after {done} of {total} ids: {cause}. Every converted id is stored; run the same command again to resume."
    )]
    Interrupted { done: usize, total: usize, cause: String },
    #[error("database: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// Runs `job` with the caller's ID service (the CLI builds it on the prepared database).
pub async fn run(ids: &Ids, job: &ConvertJob) -> Result<Summary, BulkError> {
    let (headers, rows, column) = read_input(job)?;
    let target = Target::resolve(ids, job).await?;

    let sources: Vec<String> = rows.iter().map(|row| row[column].to_owned()).filter(|id| !id.is_empty()).collect();
    let pacer = Pacer::per_minute(job.calls_per_minute);
    let progress = Progress::new(sources.len() as u64);
    let mut all = Conversion::default();
    for (block_index, block) in sources.chunks(BLOCK).enumerate() {
        let converted = target.convert(ids, block, &pacer).await.map_err(|error| BulkError::Interrupted {
            done: block_index * BLOCK,
            total: sources.len(),
            cause: error.to_string(),
        })?;
        all.upstream_calls += converted.upstream_calls;
        all.items.extend(converted.items);
        all.invalid.extend(converted.invalid);
        progress.advance(block.len() as u64, all.upstream_calls, all.invalid.len());
    }
    progress.finish();

    let converted: std::collections::HashMap<String, String> = all.items.into_iter().collect();
    let invalid: std::collections::HashMap<String, String> = all.invalid.into_iter().collect();
    let mut output = writer(&job.output)?;
    let mut rejects = writer(&job.rejects)?;
    let written = |path: &PathBuf| {
        let path = path.display().to_string();
        move |error: csv::Error| BulkError::Output { path: path.clone(), message: error.to_string() }
    };
    let mut out_headers = headers.clone();
    out_headers.push_field(job.kind.target_name());
    output.write_record(&out_headers).map_err(written(&job.output))?;
    let mut reject_headers = headers;
    reject_headers.push_field("reason");
    rejects.write_record(&reject_headers).map_err(written(&job.rejects))?;

    let mut summary = Summary { rows: rows.len(), upstream_calls: all.upstream_calls, ..Summary::default() };
    for mut row in rows {
        let id = row[column].to_owned();
        match converted.get(&id) {
            Some(target) => {
                row.push_field(target);
                output.write_record(&row).map_err(written(&job.output))?;
                summary.converted += 1;
            }
            None => {
                let reason = invalid.get(&id).map(String::as_str).unwrap_or("empty id");
                row.push_field(reason);
                rejects.write_record(&row).map_err(written(&job.rejects))?;
                summary.rejected += 1;
            }
        }
    }
    output.flush().map_err(|e| BulkError::Output { path: job.output.display().to_string(), message: e.to_string() })?;
    rejects
        .flush()
        .map_err(|e| BulkError::Output { path: job.rejects.display().to_string(), message: e.to_string() })?;
    Ok(summary)
}

type Rows = (csv::StringRecord, Vec<csv::StringRecord>, usize);

fn read_input(job: &ConvertJob) -> Result<Rows, BulkError> {
    let path = job.input.display().to_string();
    let fail = |message: String| BulkError::Input { path: path.clone(), message };
    let mut reader = csv::Reader::from_path(&job.input).map_err(|e| fail(e.to_string()))?;
    let headers = reader.headers().map_err(|e| fail(e.to_string()))?.clone();
    let column = headers.iter().position(|name| name == job.column).ok_or_else(|| {
        fail(format!("no column named {:?} (columns: {})", job.column, headers.iter().collect::<Vec<_>>().join(", ")))
    })?;
    let rows = reader.records().collect::<Result<Vec<_>, _>>().map_err(|e| fail(e.to_string()))?;
    Ok((headers, rows, column))
}

fn writer(path: &PathBuf) -> Result<csv::Writer<std::fs::File>, BulkError> {
    csv::Writer::from_path(path)
        .map_err(|e| BulkError::Output { path: path.display().to_string(), message: e.to_string() })
}

/// Whose IDs: a provider's corpids, or the userids/external_userids of one corp.
enum Target {
    Provider(ProviderCorpId),
    Corp(CorpScope, IdKind),
}

impl Target {
    async fn resolve(ids: &Ids, job: &ConvertJob) -> Result<Self, BulkError> {
        let usage = |message: &str| BulkError::Usage(message.to_owned());
        match job.kind {
            IdKind::Corpid => {
                let provider = job.provider_corpid.clone().ok_or_else(|| usage("--kind corpid needs --provider"))?;
                Ok(Target::Provider(provider))
            }
            IdKind::Userid | IdKind::ExternalUserid => {
                let (Some(suite_id), Some(corpid)) = (&job.suite_id, &job.corpid) else {
                    return Err(usage("--kind userid and external_userid need --suite and --corp"));
                };
                let scope = ids.corp_scope(suite_id, corpid).await.map_err(|error| match error {
                    IdError::Store(store) => BulkError::Store(store),
                    other => BulkError::Usage(format!("{suite_id}/{corpid}: {other}")),
                })?;
                Ok(Target::Corp(scope, job.kind))
            }
        }
    }

    async fn convert(&self, ids: &Ids, block: &[String], pacer: &Pacer) -> Result<Conversion, IdError> {
        match self {
            Target::Provider(provider) => ids.open_corpids(provider, block, Some(pacer)).await,
            Target::Corp(scope, IdKind::Userid) => {
                let userids: Vec<UserId> = block.iter().map(|id| UserId::from(id.as_str())).collect();
                ids.open_userids(scope, &userids, Some(pacer)).await
            }
            Target::Corp(scope, _) => ids.new_external_userids(scope, block, None, Some(pacer)).await,
        }
    }
}

/// A progress bar on a terminal; otherwise a line now and then (logs, CI).
struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    done: std::cell::Cell<u64>,
    last_line: std::cell::Cell<Instant>,
}

impl Progress {
    fn new(total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} ids  {per_sec}  eta {eta}  {msg}") {
                bar.set_style(style);
            }
            bar
        });
        Progress { bar, total, done: 0.into(), last_line: Instant::now().into() }
    }

    fn advance(&self, ids: u64, upstream_calls: usize, rejected: usize) {
        self.done.set(self.done.get() + ids);
        match &self.bar {
            Some(bar) => {
                bar.set_position(self.done.get());
                bar.set_message(format!("{upstream_calls} calls, {rejected} rejected"));
            }
            None if self.last_line.get().elapsed() >= PROGRESS_EVERY || self.done.get() == self.total => {
                self.last_line.set(Instant::now());
                eprintln!(
                    "{}/{} ids, {upstream_calls} upstream calls, {rejected} rejected",
                    self.done.get(),
                    self.total
                );
            }
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}
