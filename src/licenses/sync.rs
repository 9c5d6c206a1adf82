//! `licenses sync`: reads what WeCom knows of each corp's licenses (the app's trial
//! and auto-activation, every activated member's codes, every order and its codes)
//! into the database, for a deployment that starts after licenses were bought.
//!
//! Paced: at most `calls_per_minute` WeCom calls. Resumable: each corp's step and
//! WeCom's cursor within it are saved after every page, so a run that stops is
//! continued by the next one; a run over corps that were all synced whole starts
//! them all again. What it stores reports derived events like the callbacks do,
//! each once.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::{Interval, MissedTickBehavior};

use super::client::{CorpOf, ListOrder, Page};
use super::{LicenseError, Licenses, PAGE_LIMIT, now_secs};
use crate::model::{CorpId, CorpStatus, ProviderCorpId, SuiteId, UserId};
use crate::store::{corps, licenses as store};

const STEP_APP: &str = "app";
const STEP_ACCOUNTS: &str = "accounts";
const STEP_ORDERS: &str = "orders";
const STEP_DONE: &str = "done";

pub struct SyncJob {
    pub suite_id: Option<SuiteId>,
    pub corpid: Option<CorpId>,
    pub calls_per_minute: u32,
}

#[derive(Debug, Default)]
pub struct SyncSummary {
    pub corps: usize,
    /// Synced whole by an earlier, interrupted run.
    pub already_done: usize,
    pub members: usize,
    pub orders: usize,
}

/// One corp of one suite to sync.
struct Target {
    provider: ProviderCorpId,
    suite_id: SuiteId,
    corpid: CorpId,
}

impl Licenses {
    /// Runs a sync over the active corps of the chosen suites (all by default),
    /// telling `progress` what it does.
    pub async fn sync(&self, job: &SyncJob, progress: &mut dyn FnMut(String)) -> Result<SyncSummary, LicenseError> {
        let targets = self.sync_targets(job).await?;
        let states = {
            let keys: Vec<(SuiteId, CorpId)> = targets.iter().map(|t| (t.suite_id.clone(), t.corpid.clone())).collect();
            self.db
                .run(move |conn| keys.iter().map(|(s, c)| store::sync_state(conn, s, c)).collect::<Result<Vec<_>, _>>())
                .await?
        };
        // An unfinished corp means an interrupted run: continue it. Otherwise start anew.
        let resuming = states.iter().flatten().any(|state| state.finished_at.is_none());
        let mut pace = tokio::time::interval(Duration::from_secs(60) / job.calls_per_minute.max(1));
        pace.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut summary = SyncSummary::default();
        let total = targets.len();
        for (index, (target, state)) in targets.iter().zip(states).enumerate() {
            let label = format!("[{}/{total}] {} {}", index + 1, target.suite_id, target.corpid);
            let (step, cursor) = match state {
                Some(state) if resuming && state.finished_at.is_some() => {
                    progress(format!("{label}: synced by the interrupted run"));
                    summary.already_done += 1;
                    continue;
                }
                Some(state) if resuming => (state.step, state.cursor),
                _ => (STEP_APP.to_owned(), String::new()),
            };
            progress(format!("{label}: from step {step}"));
            self.sync_corp(target, &step, cursor, &mut pace, &mut summary).await?;
            progress(format!("{label}: done"));
            summary.corps += 1;
        }
        Ok(summary)
    }

    async fn sync_targets(&self, job: &SyncJob) -> Result<Vec<Target>, LicenseError> {
        let mut targets = Vec::new();
        for suite in self.registry.suites() {
            if !suite.enabled || job.suite_id.as_ref().is_some_and(|wanted| *wanted != suite.suite_id) {
                continue;
            }
            let suite_id = suite.suite_id.clone();
            let corps = self.db.run(move |conn| corps::list(conn, &suite_id)).await?;
            targets.extend(
                corps
                    .into_iter()
                    .filter(|corp| corp.status == CorpStatus::Active)
                    .filter(|corp| job.corpid.as_ref().is_none_or(|wanted| *wanted == corp.corpid))
                    .map(|corp| Target {
                        provider: suite.provider_corpid.clone(),
                        suite_id: corp.suite_id,
                        corpid: corp.corpid,
                    }),
            );
        }
        Ok(targets)
    }

    async fn save(&self, target: &Target, step: &str, cursor: &str) -> Result<(), LicenseError> {
        let (s, c, step, cursor) = (target.suite_id.clone(), target.corpid.clone(), step.to_owned(), cursor.to_owned());
        let finished = step == STEP_DONE;
        self.db.run(move |conn| store::save_sync(conn, &s, &c, &step, &cursor, finished)).await?;
        Ok(())
    }

    async fn sync_corp(
        &self,
        target: &Target,
        step: &str,
        mut cursor: String,
        pace: &mut Interval,
        summary: &mut SyncSummary,
    ) -> Result<(), LicenseError> {
        let (provider, corpid) = (&target.provider, &target.corpid);
        let client = &self.client;
        let mut step = step.to_owned();
        if step == STEP_APP {
            pace.tick().await;
            self.refresh_app(provider, &target.suite_id, corpid).await?;
            pace.tick().await;
            let request = CorpOf { corpid };
            let request = &request;
            match self.call(provider, |token| async move { client.get_auto_active_status(&token, request).await }).await
            {
                Ok(answer) => {
                    let (s, c) = (target.suite_id.clone(), corpid.clone());
                    self.db.run(move |conn| store::store_auto_active(conn, &s, &c, answer.auto_active_status)).await?;
                }
                // Never bought for: there is no switch to read.
                Err(LicenseError::Refused { errcode: 701071, .. }) => {}
                Err(error) => return Err(error),
            }
            (step, cursor) = (STEP_ACCOUNTS.to_owned(), String::new());
            self.save(target, &step, &cursor).await?;
        }
        while step == STEP_ACCOUNTS {
            pace.tick().await;
            let page = Page { order_id: None, corpid: Some(corpid), limit: PAGE_LIMIT, cursor: &cursor };
            let page = &page;
            let answer =
                self.call(provider, |token| async move { client.list_actived_account(&token, page).await }).await?;
            let now = now_secs();
            let members: BTreeSet<UserId> =
                answer.account_list.into_iter().filter(|a| a.expire_time > now).map(|a| a.userid).collect();
            for userid in &members {
                pace.tick().await;
                self.sync_member(provider, corpid, userid).await?;
            }
            summary.members += members.len();
            if answer.has_more && !answer.next_cursor.is_empty() {
                cursor = answer.next_cursor;
            } else {
                (step, cursor) = (STEP_ORDERS.to_owned(), String::new());
            }
            self.save(target, &step, &cursor).await?;
        }
        while step == STEP_ORDERS {
            pace.tick().await;
            let request = ListOrder {
                corpid: Some(corpid),
                cursor: (!cursor.is_empty()).then_some(cursor.as_str()),
                limit: Some(PAGE_LIMIT),
                ..ListOrder::default()
            };
            let request = &request;
            let answer = self.call(provider, |token| async move { client.list_order(&token, request).await }).await?;
            for order in &answer.order_list {
                pace.tick().await;
                self.fetch_order(provider, &order.order_id).await?;
            }
            summary.orders += answer.order_list.len();
            if answer.has_more && !answer.next_cursor.is_empty() {
                cursor = answer.next_cursor;
            } else {
                (step, cursor) = (STEP_DONE.to_owned(), String::new());
            }
            self.save(target, &step, &cursor).await?;
        }
        Ok(())
    }
}
