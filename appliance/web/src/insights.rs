//! Insights: the themes of a person's recent captures (grouped by meaning with
//! `cv_semantic::themes`, each shown with its items as evidence) and the open tasks due
//! soon, on the dashboard.
//!
//! Computed from the unlocked vault's in-RAM indexes only (the full-text index for the
//! recent items and the tasks, the vector index for the items' meaning), so nothing is
//! read or decrypted again and nothing is stored: the result lives beside the indexes
//! and goes with them at lock.
//!
//! **Never stale.** Each result remembers the indexes' [`Generation`] (their write
//! counters) and the day it was computed for. Any capture, edit, task change or
//! deletion (a write to the full-text index) and any new or dropped embedding (a change
//! of the vectors) moves the generation, and so does midnight; a view that finds the
//! stored result of another generation computes it again before showing it. The
//! `insights` task also computes it for every unlocked vault each `[insights]
//! interval_minutes`, so a dashboard after a quiet hour does not wait.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actix_web::web;
use cv_control::InsightSettings;
use cv_search::{Kind, Query, Sort, TaskStatus};
use cv_semantic::{ThemeInput, ThemeOptions};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::index::VaultIndex;
use crate::state::AppState;

/// The most recent items considered for themes (the clustering is quadratic).
const MAX_RECENT: usize = cv_semantic::MAX_THEME_INPUTS;
/// Items shown as a theme's evidence.
const EVIDENCE: usize = 5;
/// Tasks listed as due soon.
const DUE_LISTED: usize = 20;

/// What the indexes looked like when insights were computed: the full-text index's
/// write count and the vectors' change count. Equal generations mean nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Generation {
    writes: u64,
    vectors: u64,
}

impl Generation {
    pub fn of(index: &VaultIndex) -> Generation {
        Generation {
            writes: index.index.writes(),
            vectors: index.semantic.changes(),
        }
    }
}

/// One vault's insights, as computed at `computed_at`.
#[derive(Clone)]
pub(crate) struct Insights {
    pub computed_at: OffsetDateTime,
    /// The indexes they were computed from (taken before reading them: a write during
    /// the computation makes them out of date, never silently included).
    pub generation: Generation,
    /// Recent items, and how many of them have vectors (only those can form themes).
    pub recent: usize,
    pub recent_with_meaning: usize,
    pub themes: Vec<ThemeView>,
    pub due_soon: Vec<DueView>,
}

impl std::fmt::Debug for Insights {
    // Labels and snippets are the person's words: counts only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Insights")
            .field("recent", &self.recent)
            .field("themes", &self.themes.len())
            .field("due_soon", &self.due_soon.len())
            .finish()
    }
}

#[derive(Clone)]
pub(crate) struct ThemeView {
    pub label: String,
    pub keywords: Vec<String>,
    pub size: usize,
    /// The most central items: id and the start of their text.
    pub evidence: Vec<(Uuid, String)>,
}

#[derive(Clone)]
pub(crate) struct DueView {
    pub id: Uuid,
    pub title: String,
    pub due: time::Date,
    pub overdue: bool,
}

/// The insights slot of one unlocked vault.
#[derive(Default)]
pub(crate) struct Slot(Mutex<Option<Arc<Insights>>>);

impl Slot {
    pub fn get(&self) -> Option<Arc<Insights>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, insights: Arc<Insights>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(insights);
    }
}

/// Computes the insights of one vault (blocking: clustering takes up to a second on
/// 2,000 items) and keeps them in its slot. `now` carries the appliance's offset
/// (`crate::zone::in_zone`), so that "today" for tasks due soon is the household's.
pub(crate) fn compute(
    index: &VaultIndex,
    settings: &InsightSettings,
    now: OffsetDateTime,
) -> Result<Arc<Insights>, cv_search::SearchError> {
    let generation = Generation::of(index);
    let since = now - time::Duration::days(i64::from(settings.recent_days));
    let mut recent = Vec::new();
    while recent.len() < MAX_RECENT {
        let page = index.index.search(&Query {
            created_from: Some(since),
            sort: Sort::Newest,
            limit: cv_search::MAX_LIMIT,
            offset: recent.len(),
            ..Query::default()
        })?;
        let got = page.hits.len();
        recent.extend(page.hits);
        if got == 0 || recent.len() >= page.total {
            break;
        }
    }
    let vectors: Vec<(usize, Vec<f32>)> = recent
        .iter()
        .enumerate()
        .filter_map(|(i, hit)| index.semantic.item_vector(hit.id).map(|v| (i, v)))
        .collect();
    let inputs: Vec<ThemeInput<'_>> = vectors
        .iter()
        .map(|(i, vector)| ThemeInput {
            item: recent[*i].id,
            vector,
            text: &recent[*i].snippet.text,
            captured_at: recent[*i].created.unix_timestamp(),
        })
        .collect();
    let snippet_of = |id: Uuid| {
        recent
            .iter()
            .find(|h| h.id == id)
            .map(|h| h.snippet.text.clone())
            .unwrap_or_default()
    };
    let themes = cv_semantic::themes(&inputs, &ThemeOptions::default())
        .into_iter()
        .map(|theme| ThemeView {
            label: theme.label,
            keywords: theme.keywords,
            size: theme.items.len(),
            evidence: theme
                .items
                .iter()
                .take(EVIDENCE)
                .map(|(id, _)| (*id, snippet_of(*id)))
                .collect(),
        })
        .collect();

    let today = now.date();
    let horizon = today + time::Duration::days(i64::from(settings.due_soon_days));
    let tasks = index.index.search(&Query {
        kind: Some(Kind::Task),
        sort: Sort::Due,
        limit: cv_search::MAX_LIMIT,
        ..Query::default()
    })?;
    let due_soon = tasks
        .hits
        .into_iter()
        .filter(|h| h.status != Some(TaskStatus::Done))
        .filter_map(|h| {
            let due = h.due?;
            (due <= horizon).then(|| DueView {
                id: h.id,
                title: h.snippet.text,
                due,
                overdue: due < today,
            })
        })
        .take(DUE_LISTED)
        .collect();

    let insights = Arc::new(Insights {
        computed_at: now,
        generation,
        recent: recent.len(),
        recent_with_meaning: inputs.len(),
        themes,
        due_soon,
    });
    index.insights.set(Arc::clone(&insights));
    Ok(insights)
}

/// Whether `insights` still describe `index` on the day of `now`.
pub(crate) fn is_current(insights: &Insights, index: &VaultIndex, now: OffsetDateTime) -> bool {
    insights.generation == Generation::of(index) && insights.computed_at.date() == now.date()
}

/// The vault's insights: the stored ones if nothing changed since they were computed,
/// else computed now (off the async workers). `None` while the index is being built.
pub(crate) async fn current(
    state: &web::Data<AppState>,
    index: Arc<VaultIndex>,
) -> Option<Arc<Insights>> {
    // In the appliance's zone, so that "today" for tasks due soon is the household's.
    let now = crate::zone::in_zone(OffsetDateTime::now_utc(), &state.time_zone().await);
    if let Some(insights) = index.insights.get()
        && is_current(&insights, &index, now)
    {
        return Some(insights);
    }
    if index.is_building() {
        return None;
    }
    let settings = state.insights.clone();
    web::block(move || compute(&index, &settings, now).ok())
        .await
        .ok()
        .flatten()
}

/// Task `insights`: every interval, computes the insights of each unlocked vault whose
/// index is built.
pub(crate) fn spawn(state: web::Data<AppState>) {
    actix_web::rt::spawn(async move {
        let interval = Duration::from_secs(state.insights.interval_secs.max(60));
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            for index in state.keyring.indexes() {
                if index.is_building() {
                    continue;
                }
                let settings = state.insights.clone();
                let now = crate::zone::in_zone(OffsetDateTime::now_utc(), &state.time_zone().await);
                let done =
                    web::block(move || compute(&index, &settings, now).map(|i| i.themes.len()))
                        .await;
                match done {
                    Ok(Ok(themes)) => {
                        tracing::debug!(task = "insights", themes, "insights computed")
                    }
                    Ok(Err(e)) => tracing::warn!(task = "insights", error = %e, "insights failed"),
                    Err(e) => tracing::warn!(task = "insights", error = %e, "insights failed"),
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use cv_search::Document;
    use cv_vault::embeddings::{EmbeddedChunk, Embeddings};
    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-06-15 12:00 UTC);

    /// A unit vector near axis `axis` (8 dimensions), slightly different per `n`.
    fn near(axis: usize, n: usize) -> Vec<f32> {
        let mut v = vec![0.02 * n as f32; 8];
        v[axis] = 1.0;
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / norm).collect()
    }

    fn add(index: &VaultIndex, n: u64, text: &str, days_ago: i64, vector: Option<Vec<f32>>) {
        let id = Uuid::from_u64_pair(0, n);
        let created = NOW - time::Duration::days(days_ago);
        index.index.upsert(Document {
            id,
            text: text.into(),
            tags: Vec::new(),
            kind: Kind::Note,
            status: None,
            due: None,
            created,
            updated: created,
            pinned: false,
            archived: false,
        });
        if let Some(vector) = vector {
            let chunks = vec![EmbeddedChunk {
                range: 0..text.len(),
                vector,
            }];
            index.semantic.upsert(id, &Embeddings { chunks });
        }
    }

    fn task(index: &VaultIndex, n: u64, due: Option<time::Date>, status: TaskStatus) {
        index.index.upsert(Document {
            id: Uuid::from_u64_pair(1, n),
            text: format!("task {n}"),
            tags: Vec::new(),
            kind: Kind::Task,
            status: Some(status),
            due,
            created: NOW - time::Duration::days(30),
            updated: NOW,
            pinned: false,
            archived: false,
        });
    }

    fn settings() -> InsightSettings {
        InsightSettings {
            interval_secs: 3600,
            recent_days: 14,
            due_soon_days: 7,
        }
    }

    #[test]
    fn recent_notes_group_into_themes_and_due_tasks_are_listed() {
        let index = VaultIndex::new().unwrap();
        for n in 0..4 {
            add(
                &index,
                n,
                &format!("tomato garden bed {n}"),
                1,
                Some(near(0, n as usize)),
            );
        }
        for n in 10..14 {
            add(
                &index,
                n,
                &format!("dentist molar visit {n}"),
                2,
                Some(near(3, n as usize - 10)),
            );
        }
        // Too old to count, and a recent note with no vector yet.
        add(&index, 20, "tomato garden bed old", 30, Some(near(0, 5)));
        add(&index, 21, "tomato garden unembedded", 1, None);
        let today = NOW.date();
        task(
            &index,
            1,
            Some(today - time::Duration::days(2)),
            TaskStatus::Open,
        );
        task(
            &index,
            2,
            Some(today + time::Duration::days(3)),
            TaskStatus::Doing,
        );
        task(
            &index,
            3,
            Some(today + time::Duration::days(30)),
            TaskStatus::Open,
        );
        task(&index, 4, Some(today), TaskStatus::Done);
        task(&index, 5, None, TaskStatus::Open);
        index.index.flush();

        let insights = compute(&index, &settings(), NOW).unwrap();
        assert_eq!(insights.recent, 9, "8 themed notes and the unembedded one");
        assert_eq!(insights.recent_with_meaning, 8);
        assert_eq!(insights.themes.len(), 2);
        let labels: Vec<&str> = insights.themes.iter().map(|t| t.label.as_str()).collect();
        assert!(
            labels
                .iter()
                .any(|l| l.contains("tomato") || l.contains("garden")),
            "{labels:?}"
        );
        assert!(
            labels
                .iter()
                .any(|l| l.contains("dentist") || l.contains("molar")),
            "{labels:?}"
        );
        assert!(
            insights
                .themes
                .iter()
                .all(|t| t.size == 4 && t.evidence.len() == 4)
        );
        let due: Vec<(Uuid, bool)> = insights
            .due_soon
            .iter()
            .map(|d| (d.id, d.overdue))
            .collect();
        assert_eq!(
            due,
            [
                (Uuid::from_u64_pair(1, 1), true),
                (Uuid::from_u64_pair(1, 2), false)
            ]
        );
        assert!(index.insights.get().is_some(), "kept beside the indexes");
        let debug = format!("{insights:?}");
        assert!(!debug.contains("tomato"), "{debug}");
    }

    #[test]
    fn any_write_a_new_vector_or_a_new_day_makes_insights_out_of_date() {
        let index = VaultIndex::new().unwrap();
        add(&index, 1, "tomato garden bed", 1, Some(near(0, 1)));
        let insights = compute(&index, &settings(), NOW).unwrap();
        assert_eq!(insights.recent, 1);
        assert_eq!(insights.generation, Generation::of(&index));
        assert!(is_current(&insights, &index, NOW));
        // A capture a moment later: out of date, and the next computation counts it.
        add(&index, 2, "another tomato bed", 0, None);
        assert!(!is_current(&insights, &index, NOW));
        let insights = compute(&index, &settings(), NOW).unwrap();
        assert_eq!(insights.recent, 2);
        assert!(is_current(&insights, &index, NOW));
        // Its embedding arriving later changes the themes' input.
        index.semantic.upsert(
            Uuid::from_u64_pair(0, 2),
            &Embeddings {
                chunks: vec![EmbeddedChunk {
                    range: 0..5,
                    vector: near(0, 2),
                }],
            },
        );
        assert!(!is_current(&insights, &index, NOW));
        let insights = compute(&index, &settings(), NOW).unwrap();
        assert_eq!(insights.recent_with_meaning, 2);
        // A deletion, and tomorrow (what is overdue changes).
        index.index.remove(Uuid::from_u64_pair(0, 1));
        assert!(!is_current(&insights, &index, NOW));
        let insights = compute(&index, &settings(), NOW).unwrap();
        assert_eq!(insights.recent, 1);
        assert!(!is_current(
            &insights,
            &index,
            NOW + time::Duration::days(1)
        ));
    }

    #[test]
    fn an_empty_vault_has_no_themes_and_nothing_due() {
        let index = VaultIndex::new().unwrap();
        let insights = compute(&index, &settings(), NOW).unwrap();
        assert_eq!(
            (
                insights.recent,
                insights.themes.len(),
                insights.due_soon.len()
            ),
            (0, 0, 0)
        );
    }
}
