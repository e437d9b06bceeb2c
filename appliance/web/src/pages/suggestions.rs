//! Suggestions on an item's page, all computed on the box from the unlocked vault:
//!
//! - **Related notes**: the items nearest in meaning to this one (its chunk vectors
//!   searched against the vault's vector index, `Semantic::nearest_to`), at least
//!   [`cv_semantic::DEFAULT_MIN_SIMILARITY`] similar (the floor hybrid search uses),
//!   archived ones left out. None until the item is embedded, or with the AI off.
//! - **Tasks** (for a note that is not a task yet): [`cv_suggest::suggest_tasks`] on the
//!   current text, read relative to the item's creation in the **appliance's time
//!   zone** (`crate::zone`, chosen by the owner), so "tomorrow" is the day after the
//!   capture where the household lives.
//! - **Tags**: [`cv_suggest::suggest_tags`] with the item's nearest tagged neighbours
//!   (their tags from the full-text index), the person's tags with their counts, and the
//!   person's earlier answers.
//!
//! Accepting or dismissing posts the item's version and which suggestion; the server
//! recomputes the suggestions from the stored text and acts only on one it would offer
//! now (a task by its position and title, a tag by its name), never on a posted title,
//! date or tag alone. Accepting a tag writes a new version through the ordinary edit
//! path; accepting a task creates a task of its own, titled as suggested (plain text,
//! without the cue), with the note's tags.
//!
//! **Feedback** is stored encrypted under the vault key (`cv_db::feedback`, at most
//! `MAX_PER_USER` records per person, the oldest dropped). A record says which kind of
//! suggestion, for which item, accepted or not, and the tag, or a hash of the task's
//! title (enough to hide an answered task again, without keeping its words twice).

use actix_web::{HttpResponse, web};
use cv_db::UserId;
use cv_db::items::ItemId;
use cv_search::Query;
use cv_suggest::{Neighbour, TagFeedback, TagInput, TagSuggestion, TagUsage, TaskSuggestion};
use cv_vault::{Edit, ItemView, Priority, Task, TaskStatus, VaultError};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use uuid::Uuid;

use super::{item_id, see_other};
use crate::error::WebError;
use crate::keyring::Unlocked;
use crate::session::CurrentUser;
use crate::state::AppState;

pub(super) fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/items/{id}/suggestions/task", web::post().to(answer_task))
        .route("/items/{id}/suggestions/tag", web::post().to(answer_tag));
}

/// Related notes shown at most.
pub(crate) const RELATED_LIMIT: usize = 5;

/// Neighbours asked for tag suggestions: enough for a tag carried by a few of them to
/// stand out, few enough that a tag of distant notes does not.
const TAG_NEIGHBOURS: usize = 10;

/// From this similarity on a related note is "closely related": paraphrases of one
/// subject score above it with all-MiniLM-L6-v2, notes merely on a nearby subject below.
const CLOSELY_RELATED: f32 = 0.6;

/// One answer to a suggestion, as encrypted in `suggestion_feedback`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FeedbackRecord {
    kind: FeedbackKind,
    item: Uuid,
    accepted: bool,
    /// The tag (tag suggestions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tag: Option<String>,
    /// [`title_hash`] of the task's title (task suggestions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    title_hash: Option<String>,
}

// A tag name is private: never printed.
impl std::fmt::Debug for FeedbackRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedbackRecord")
            .field("kind", &self.kind)
            .field("item", &self.item)
            .field("accepted", &self.accepted)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum FeedbackKind {
    Tag,
    Task,
}

/// Names a task suggestion of one item without its words: BLAKE3 of the item id and
/// the title, hex. Only ever stored inside the encrypted record.
fn title_hash(item: Uuid, title: &str) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(item.as_bytes());
    hasher.update(title.as_bytes());
    hasher.finalize().to_hex().to_string()
}

/// The person's answers, decrypted. A record that does not open (damaged, or not
/// theirs) is skipped and counted in the log.
async fn load_feedback(
    state: &AppState,
    user: UserId,
    unlocked: &Unlocked,
) -> Result<Vec<FeedbackRecord>, WebError> {
    let rows = {
        let mut conn = state.conn().await?;
        cv_db::feedback::for_user(&mut conn, user).await?
    };
    let mut records = Vec::with_capacity(rows.len());
    let mut unreadable = 0usize;
    for row in rows {
        let opened = unlocked
            .vault
            .decrypt_feedback(*user.0.as_bytes(), *row.id.as_bytes(), &row.ciphertext)
            .ok()
            .and_then(|plain| serde_json::from_slice::<FeedbackRecord>(&plain).ok());
        match opened {
            Some(record) => records.push(record),
            None => unreadable += 1,
        }
    }
    if unreadable > 0 {
        warn!(%user, records = unreadable, "suggestion feedback records that do not open were skipped");
    }
    Ok(records)
}

async fn store_feedback(
    state: &AppState,
    user: UserId,
    unlocked: &Unlocked,
    record: &FeedbackRecord,
) -> Result<(), WebError> {
    let id = Uuid::new_v4();
    let plain = zeroize::Zeroizing::new(
        serde_json::to_vec(record).map_err(|e| WebError::internal("encoding feedback", e))?,
    );
    let ciphertext = unlocked
        .vault
        .encrypt_feedback(*user.0.as_bytes(), *id.as_bytes(), &plain);
    let mut conn = state.conn().await?;
    cv_db::feedback::add(
        &mut conn,
        user,
        &cv_db::feedback::StoredFeedback { id, ciphertext },
    )
    .await?;
    Ok(())
}

/// Stores an answer. A dismissal that cannot be stored fails (it would do nothing
/// else); an acceptance has already changed the item, so its record failing is only
/// logged.
async fn remember(
    state: &AppState,
    user: UserId,
    unlocked: &Unlocked,
    record: &FeedbackRecord,
) -> Result<(), WebError> {
    match store_feedback(state, user, unlocked, record).await {
        Err(e) if record.accepted => {
            warn!(%user, error = %e, "an accepted suggestion's feedback was not stored");
            Ok(())
        }
        other => other,
    }
}

/// The item's creation time in the appliance's zone: what "tomorrow" is read against.
fn captured_at(view: &ItemView, tz: &jiff::tz::TimeZone) -> jiff::Zoned {
    crate::zone::zoned(view.created_at, tz)
}

fn to_time_date(date: jiff::civil::Date) -> Option<time::Date> {
    let month = time::Month::try_from(u8::try_from(date.month()).ok()?).ok()?;
    time::Date::from_calendar_date(
        i32::from(date.year()),
        month,
        u8::try_from(date.day()).ok()?,
    )
    .ok()
}

/// The task suggestions for the item as stored, in the crate's order (their positions
/// are what an answer names); none for an item that is a task already.
fn task_suggestions(view: &ItemView, tz: &jiff::tz::TimeZone) -> Vec<TaskSuggestion> {
    match (&view.text, &view.task) {
        (Ok(text), None) => cv_suggest::suggest_tasks(text, captured_at(view, tz)),
        _ => Vec::new(),
    }
}

/// The item's [`TAG_NEIGHBOURS`] nearest notes in meaning (off the async workers), for
/// its tag suggestions and related notes; `None` when it is not indexed by meaning (the
/// AI is off, or it is not embedded yet).
async fn nearest(
    state: &AppState,
    unlocked: &Unlocked,
    item: Uuid,
) -> Result<Option<Vec<(cv_search::Hit, f32)>>, actix_web::error::BlockingError> {
    if state.ai.pool.is_none() || !unlocked.index.semantic.contains(item) {
        return Ok(None);
    }
    let unlocked = unlocked.clone();
    web::block(move || neighbours(&unlocked, item, TAG_NEIGHBOURS))
        .await
        .map(Some)
}

/// The nearest items to `item` that pass the default filters (not archived), with
/// their similarity, best first.
fn neighbours(unlocked: &Unlocked, item: Uuid, k: usize) -> Vec<(cv_search::Hit, f32)> {
    let index = &unlocked.index;
    let near = index
        .semantic
        .nearest_to(item, k, cv_semantic::DEFAULT_MIN_SIMILARITY);
    let candidates: Vec<(Uuid, Option<std::ops::Range<usize>>)> = near
        .iter()
        .map(|(id, _, range)| (*id, range.clone()))
        .collect();
    let hits = match index.index.lookup(&Query::default(), &candidates) {
        Ok(hits) => hits,
        Err(e) => {
            warn!(error = %e, "looking up related items failed");
            return Vec::new();
        }
    };
    hits.into_iter()
        .filter_map(|hit| {
            let score = near.iter().find(|(id, _, _)| *id == hit.id)?.1;
            Some((hit, score))
        })
        .collect()
}

/// The tag suggestions for the item as stored.
fn tag_suggestions(
    unlocked: &Unlocked,
    view: &ItemView,
    near: &[(cv_search::Hit, f32)],
    feedback: &[FeedbackRecord],
) -> Vec<TagSuggestion> {
    let Ok(text) = &view.text else {
        return Vec::new();
    };
    let neighbours: Vec<Neighbour> = near
        .iter()
        .filter(|(hit, _)| !hit.tags.is_empty())
        .map(|(hit, score)| Neighbour {
            item_id: hit.id.to_string(),
            similarity: *score,
            tags: hit.tags.clone(),
        })
        .collect();
    let vocabulary: Vec<TagUsage> = unlocked
        .index
        .index
        .tags()
        .into_iter()
        .map(|(tag, count)| TagUsage {
            tag,
            count: u32::try_from(count).unwrap_or(u32::MAX),
        })
        .collect();
    let tally: Vec<TagFeedback> = cv_suggest::tally_feedback(
        feedback
            .iter()
            .filter(|r| r.kind == FeedbackKind::Tag)
            .filter_map(|r| Some((r.tag.as_deref()?, r.accepted))),
    );
    cv_suggest::suggest_tags(TagInput {
        existing_tags: &view.tags,
        neighbours: &neighbours,
        vocabulary: &vocabulary,
        feedback: &tally,
        ..TagInput::new(text)
    })
}

/// A piece of a suggestion's evidence: text, highlighted or not.
#[derive(Debug)]
pub(crate) struct Segment {
    pub text: String,
    pub mark: bool,
}

/// The sentence a task was found in, its cue words and date phrase marked.
fn evidence(text: &str, suggestion: &TaskSuggestion) -> Vec<Segment> {
    let sentence = suggestion.evidence.sentence.clone();
    let mut marks: Vec<std::ops::Range<usize>> = suggestion
        .evidence
        .cues
        .iter()
        .map(|c| c.range.clone())
        .chain(suggestion.evidence.due_phrase.clone())
        .filter(|r| r.start >= sentence.start && r.end <= sentence.end && r.start < r.end)
        .collect();
    marks.sort_by_key(|r| r.start);
    let mut segments = Vec::new();
    let mut at = sentence.start;
    for mark in marks {
        if mark.start < at {
            continue;
        }
        if let Some(plain) = text.get(at..mark.start).filter(|s| !s.is_empty()) {
            segments.push(Segment {
                text: plain.to_owned(),
                mark: false,
            });
        }
        if let Some(marked) = text.get(mark.clone()) {
            segments.push(Segment {
                text: marked.to_owned(),
                mark: true,
            });
        }
        at = mark.end;
    }
    if let Some(rest) = text.get(at..sentence.end).filter(|s| !s.is_empty()) {
        segments.push(Segment {
            text: rest.to_owned(),
            mark: false,
        });
    }
    segments
}

fn percent(confidence: f32) -> u32 {
    (confidence.clamp(0.0, 1.0) * 100.0).round() as u32
}

/// A related note, for the template.
#[derive(Debug)]
pub(crate) struct RelatedView {
    pub id: String,
    pub snippet: String,
    pub tags: Vec<String>,
    pub percent: u32,
    pub label: &'static str,
}

/// A task suggestion, for the template.
#[derive(Debug)]
pub(crate) struct TaskView {
    /// Its position among the suggestions (what an answer names).
    pub index: usize,
    pub title: String,
    /// `YYYY-MM-DD`, or empty.
    pub due: String,
    pub percent: u32,
    pub rule: &'static str,
    pub evidence: Vec<Segment>,
}

/// A tag suggestion, for the template.
#[derive(Debug)]
pub(crate) struct TagView {
    pub tag: String,
    pub percent: u32,
    /// Why, in words: "3 similar notes carry it", "named in the text", "added 2× before".
    pub why: Vec<String>,
}

/// Everything the item page shows about suggestions.
#[derive(Debug, Default)]
pub(crate) struct Suggestions {
    /// `None`: the note is not indexed by meaning (yet, or the AI is off).
    pub related: Option<Vec<RelatedView>>,
    pub tasks: Vec<TaskView>,
    pub tags: Vec<TagView>,
}

/// The suggestions for the item page. Failing to compute them never fails the page:
/// what cannot be had is left out (and logged without text).
pub(crate) async fn for_page(
    state: &AppState,
    user: UserId,
    unlocked: &Unlocked,
    view: &ItemView,
) -> Suggestions {
    let Ok(text) = &view.text else {
        return Suggestions::default();
    };
    let feedback = match load_feedback(state, user, unlocked).await {
        Ok(feedback) => feedback,
        Err(e) => {
            warn!(%user, error = %e, "could not read suggestion feedback");
            Vec::new()
        }
    };
    let item = view.id.0;
    let answered: Vec<&str> = feedback
        .iter()
        // Answered either way: an accepted one is a task of its own now.
        .filter(|r| r.kind == FeedbackKind::Task && r.item == item)
        .filter_map(|r| r.title_hash.as_deref())
        .collect();
    let tasks = task_suggestions(view, &state.time_zone().await)
        .iter()
        .enumerate()
        .filter(|(_, s)| !answered.contains(&title_hash(item, &s.title).as_str()))
        .map(|(index, s)| TaskView {
            index,
            title: s.title.clone(),
            due: s
                .due
                .and_then(to_time_date)
                .map(cv_vault::iso_date::format)
                .unwrap_or_default(),
            percent: percent(s.confidence),
            rule: s.rule.as_str(),
            evidence: evidence(text, s),
        })
        .collect();
    let (indexed, near) = match nearest(state, unlocked, item).await {
        Ok(Some(near)) => (true, near),
        Ok(None) => (false, Vec::new()),
        Err(_) => (true, Vec::new()),
    };
    let related = indexed.then(|| {
        near.iter()
            .take(RELATED_LIMIT)
            .map(|(hit, score)| RelatedView {
                id: hit.id.to_string(),
                snippet: crate::markdown::to_plain(&hit.snippet.text),
                tags: hit.tags.clone(),
                percent: percent(*score),
                label: if *score >= CLOSELY_RELATED {
                    "closely related"
                } else {
                    "related"
                },
            })
            .collect()
    });
    let tags = tag_suggestions(unlocked, view, &near, &feedback)
        .into_iter()
        .map(|s| {
            let mut why = Vec::new();
            match s.evidence.neighbours.len() {
                0 => {}
                1 => why.push("a similar note carries it".to_owned()),
                n => why.push(format!("{n} similar notes carry it")),
            }
            if s.evidence.name_match.is_some() {
                why.push("the text names it".to_owned());
            }
            if let Some(f) = s.evidence.feedback {
                why.push(format!(
                    "added {}× and dismissed {}× before",
                    f.accepted, f.rejected
                ));
            }
            TagView {
                tag: s.tag,
                percent: percent(s.confidence),
                why,
            }
        })
        .collect();
    Suggestions {
        related,
        tasks,
        tags,
    }
}

/// The item as stored, if still at the version the page was made from.
async fn current(
    state: &AppState,
    user: UserId,
    unlocked: &Unlocked,
    id: ItemId,
    version: i32,
) -> Result<ItemView, WebError> {
    let mut conn = state.conn().await?;
    let view = cv_vault::get(&mut conn, user, &unlocked.vault, id).await?;
    if view.version != version {
        return Err(VaultError::Stale {
            current: view.version,
        }
        .into());
    }
    if view.text.is_err() {
        return Err(VaultError::Tampered.into());
    }
    Ok(view)
}

fn no_longer_offered() -> WebError {
    WebError::Conflict(
        "This suggestion is not offered for this note any more. Reload the page to see the current ones."
            .into(),
    )
}

/// Whether an answer's `action` accepts (`accept`) or dismisses (`dismiss`).
fn accepts(action: &str) -> Result<bool, WebError> {
    match action {
        "accept" => Ok(true),
        "dismiss" => Ok(false),
        _ => Err(WebError::BadRequest(
            "`action` is accept or dismiss.".into(),
        )),
    }
}

#[derive(Deserialize)]
struct TaskAnswer {
    csrf: String,
    version: i32,
    /// The suggestion's position, as the page listed it.
    index: usize,
    /// Its title as shown: must still be the title at that position.
    title: String,
    /// `accept` or `dismiss`.
    action: String,
}

/// `POST /items/{id}/suggestions/task`: makes a task of the suggestion, a new item
/// titled as suggested (the sentence without its cue, "Remember to …", and without
/// Markdown), with its due date and the note's tags, leaving the note as it is; or
/// dismisses the suggestion for this note. Either way it is not offered again there.
async fn answer_task(
    path: web::Path<String>,
    user: CurrentUser,
    state: web::Data<AppState>,
    form: web::Form<TaskAnswer>,
) -> Result<HttpResponse, WebError> {
    let id = item_id(&path)?;
    let form = form.into_inner();
    user.check_csrf(&form.csrf)?;
    let accept = accepts(&form.action)?;
    let owner = user.user.id;
    let unlocked = state.unlocked(owner)?;
    let view = current(&state, owner, &unlocked, id, form.version).await?;
    let suggestions = task_suggestions(&view, &state.time_zone().await);
    let suggestion = suggestions
        .get(form.index)
        .filter(|s| s.title == form.title)
        .ok_or_else(no_longer_offered)?;
    let mut made = None;
    if accept {
        let task = Task {
            status: TaskStatus::Open,
            priority: Priority::Normal,
            due: suggestion.due.and_then(to_time_date),
        };
        let title = crate::markdown::to_plain(&suggestion.title);
        let mut conn = state.conn().await?;
        let task_id = cv_vault::create(
            &mut conn,
            owner,
            cv_vault::Access::Unlocked(&unlocked.vault),
            &title,
            &view.tags,
            Some(task),
        )
        .await?;
        drop(conn);
        crate::index::changed(&state, owner, task_id).await;
        made = Some(task_id);
    }
    let record = FeedbackRecord {
        kind: FeedbackKind::Task,
        item: id.0,
        accepted: accept,
        tag: None,
        title_hash: Some(title_hash(id.0, &suggestion.title)),
    };
    remember(&state, owner, &unlocked, &record).await?;
    info!(user = %user.user.name, item = %id.0, accepted = accept, "task suggestion answered");
    Ok(match made {
        Some(task) => see_other(&format!("/items/{}", task.0)),
        None => see_other(&format!("/items/{}", id.0)),
    }
    .finish())
}

#[derive(Deserialize)]
struct TagAnswer {
    csrf: String,
    version: i32,
    tag: String,
    /// `accept` or `dismiss`.
    action: String,
}

/// `POST /items/{id}/suggestions/tag`: adds the suggested tag (a new version), or
/// dismisses it; either is remembered for the next suggestions.
async fn answer_tag(
    path: web::Path<String>,
    user: CurrentUser,
    state: web::Data<AppState>,
    form: web::Form<TagAnswer>,
) -> Result<HttpResponse, WebError> {
    let id = item_id(&path)?;
    let form = form.into_inner();
    user.check_csrf(&form.csrf)?;
    let accept = accepts(&form.action)?;
    let owner = user.user.id;
    let unlocked = state.unlocked(owner)?;
    let view = current(&state, owner, &unlocked, id, form.version).await?;
    let feedback = load_feedback(&state, owner, &unlocked).await?;
    let near = nearest(&state, &unlocked, id.0).await?.unwrap_or_default();
    let wanted = form.tag.trim().to_lowercase();
    let suggestion = tag_suggestions(&unlocked, &view, &near, &feedback)
        .into_iter()
        .find(|s| s.tag.trim().to_lowercase() == wanted)
        .ok_or_else(no_longer_offered)?;
    if accept {
        let Ok(text) = &view.text else {
            return Err(VaultError::Tampered.into());
        };
        let mut tags = view.tags.clone();
        tags.push(suggestion.tag.clone());
        let mut conn = state.conn().await?;
        cv_vault::update(
            &mut conn,
            owner,
            &unlocked.vault,
            id,
            form.version,
            Edit {
                text,
                tags: &tags,
                task: view.task.clone(),
            },
        )
        .await?;
        drop(conn);
        crate::index::changed(&state, owner, id).await;
    }
    let record = FeedbackRecord {
        kind: FeedbackKind::Tag,
        item: id.0,
        accepted: accept,
        tag: Some(suggestion.tag),
        title_hash: None,
    };
    remember(&state, owner, &unlocked, &record).await?;
    info!(user = %user.user.name, item = %id.0, accepted = accept, "tag suggestion answered");
    let notice = if accept { "?saved=1" } else { "" };
    Ok(see_other(&format!("/items/{}{notice}", id.0)).finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feedback_records_round_trip_and_print_no_tag() {
        let record = FeedbackRecord {
            kind: FeedbackKind::Tag,
            item: Uuid::from_u128(7),
            accepted: false,
            tag: Some("garden".into()),
            title_hash: None,
        };
        let json = serde_json::to_string(&record).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"tag","item":"00000000-0000-0000-0000-000000000007","accepted":false,"tag":"garden"}"#
        );
        assert_eq!(
            serde_json::from_str::<FeedbackRecord>(&json).unwrap(),
            record
        );
        assert!(!format!("{record:?}").contains("garden"));
    }

    #[test]
    fn evidence_marks_the_cue_and_the_date_in_the_sentence() {
        let text = "Leak again. Remember to call the plumber tomorrow about the sink.";
        let at: jiff::Zoned = "2026-11-20T09:00[UTC]".parse().unwrap();
        let suggestions = cv_suggest::suggest_tasks(text, at);
        let s = &suggestions[0];
        let segments = evidence(text, s);
        let marked: Vec<&str> = segments
            .iter()
            .filter(|s| s.mark)
            .map(|s| s.text.as_str())
            .collect();
        assert!(
            marked.iter().any(|m| m.contains("Remember to")),
            "{marked:?}"
        );
        assert!(marked.iter().any(|m| m.contains("tomorrow")), "{marked:?}");
        let whole: String = segments.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(whole, text[s.evidence.sentence.clone()]);
        assert_eq!(
            s.due.and_then(to_time_date).map(cv_vault::iso_date::format),
            Some("2026-11-21".to_owned())
        );
    }
}
