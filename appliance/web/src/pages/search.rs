//! Search (BM25 over the vault's in-RAM index, with filters and highlighted snippets,
//! fused with search by meaning when the local AI is up: `crate::semantic`) and the task list, which is a search for tasks sorted by due date.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use cv_search::{Hit, Kind, Query, Results, Sort};
use cv_vault::{Priority, Task, TaskStatus};
use serde::Deserialize;
use time::Date;

use super::{FormError, parse_tags, render, see_other};
use crate::error::WebError;
use crate::format::date;
use crate::index::VaultIndex;
use crate::session::CurrentUser;
use crate::state::AppState;

pub(super) fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/search", web::get().to(search_page))
        .route("/tasks", web::get().to(tasks_page))
        .route("/tasks", web::post().to(create_task))
        .route("/tasks/{id}/status", web::post().to(set_status));
}

/// Search parameters as they come in a query string (page or API). Everything is
/// optional; [`SearchParams::query`] checks them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SearchParams {
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub tag: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
    #[serde(default)]
    pub archived: String,
    pub limit: Option<usize>,
    pub offset: Option<usize>,
}

fn parse_day(field: &str, value: &str) -> Result<Option<Date>, String> {
    if value.trim().is_empty() {
        return Ok(None);
    }
    cv_vault::iso_date::parse(value)
        .map(Some)
        .ok_or_else(|| format!("`{field}` is a date written YYYY-MM-DD"))
}

impl SearchParams {
    /// The search these parameters ask for, or what is wrong with them; `from` and `to`
    /// are days in UTC (the JSON API's reading).
    pub fn query(&self) -> Result<Query, String> {
        self.query_in(&jiff::tz::TimeZone::UTC)
    }

    /// Like [`SearchParams::query`], with `from` and `to` days in the zone `tz` (the
    /// pages' reading: the days a person sees beside each result).
    pub fn query_in(&self, tz: &jiff::tz::TimeZone) -> Result<Query, String> {
        let kind = match self.kind.trim() {
            "" => None,
            "note" => Some(Kind::Note),
            "task" => Some(Kind::Task),
            _ => return Err("`kind` is note or task".into()),
        };
        let status = match self.status.trim() {
            "" => None,
            s => Some(crate::index::search_status(s.parse::<TaskStatus>()?)),
        };
        let from = parse_day("from", &self.from)?;
        let to = parse_day("to", &self.to)?;
        if let (Some(from), Some(to)) = (from, to)
            && from > to
        {
            return Err("`from` is after `to`".into());
        }
        let include_archived = match self.archived.trim() {
            "" | "0" | "false" => false,
            "1" | "true" | "on" => true,
            _ => return Err("`archived` is true or false".into()),
        };
        let limit = self.limit.unwrap_or(20);
        if !(1..=cv_search::MAX_LIMIT).contains(&limit) {
            return Err(format!("`limit` is 1 to {}", cv_search::MAX_LIMIT));
        }
        if self.q.len() > 1000 {
            return Err("the search text is at most 1000 bytes".into());
        }
        Ok(Query {
            text: self.q.clone(),
            tags: parse_tags(&self.tag),
            kind,
            status,
            created_from: from.map(|d| crate::zone::start_of_day(d, tz)),
            // Inclusive of the whole `to` day.
            created_to: to
                .and_then(Date::next_day)
                .map(|d| crate::zone::start_of_day(d, tz)),
            include_archived,
            sort: Sort::Relevance,
            limit,
            offset: self.offset.unwrap_or(0).min(cv_search::MAX_OFFSET),
        })
    }
}

/// Runs `query` on the index off the async workers (a search may wait briefly for
/// writes just made).
pub(crate) async fn run(index: Arc<VaultIndex>, query: Query) -> Result<Results, WebError> {
    web::block(move || index.index.search(&query))
        .await?
        .map_err(|e| WebError::internal("searching", e))
}

/// A piece of a snippet: text, and whether it matched.
#[derive(Debug)]
pub(crate) struct Piece {
    pub text: String,
    pub hit: bool,
}

/// One result as the pages show it.
#[derive(Debug)]
pub(crate) struct HitView {
    pub id: String,
    pub pieces: Vec<Piece>,
    pub tags: Vec<String>,
    pub task: Option<&'static str>,
    pub due: Option<String>,
    pub overdue: bool,
    pub created: String,
    pub pinned: bool,
    pub archived: bool,
    /// Why it matched ("words", "meaning", "both"), on search results.
    pub matched: Option<&'static str>,
}

impl HitView {
    fn of(hit: Hit, today: Date, tz: &jiff::tz::TimeZone) -> HitView {
        // The snippet is a piece of the note as typed: shown as a reader sees it, the
        // matched words still marked.
        let (text, highlights) =
            crate::markdown::to_plain_mapped(&hit.snippet.text, &hit.snippet.highlights);
        let text = &text;
        let mut pieces = Vec::new();
        let mut at = 0;
        for range in &highlights {
            if range.start < at || range.end > text.len() {
                continue;
            }
            if let (Some(before), Some(matched)) =
                (text.get(at..range.start), text.get(range.clone()))
            {
                if !before.is_empty() {
                    pieces.push(Piece {
                        text: before.to_owned(),
                        hit: false,
                    });
                }
                pieces.push(Piece {
                    text: matched.to_owned(),
                    hit: true,
                });
                at = range.end;
            }
        }
        if let Some(rest) = text.get(at..)
            && !rest.is_empty()
        {
            pieces.push(Piece {
                text: rest.to_owned(),
                hit: false,
            });
        }
        let done = hit.status == Some(cv_search::TaskStatus::Done);
        HitView {
            id: hit.id.to_string(),
            pieces,
            tags: hit.tags,
            task: hit.status.map(cv_search::TaskStatus::as_str),
            due: hit.due.map(cv_vault::iso_date::format),
            overdue: !done && hit.due.is_some_and(|d| d < today),
            created: date(hit.created, tz),
            pinned: hit.pinned,
            archived: hit.archived,
            matched: None,
        }
    }
}

/// How far the index build got, for the banner shown while it runs.
#[derive(Debug)]
pub(crate) struct Indexing {
    pub indexed: u64,
    pub total: u64,
}

fn indexing(index: &VaultIndex) -> Option<Indexing> {
    index.is_building().then(|| {
        let (_, indexed, total) = index.progress();
        Indexing { indexed, total }
    })
}

#[derive(Debug, Template)]
#[template(path = "search.html")]
pub(crate) struct SearchPage {
    pub csrf: String,
    pub can_manage_users: bool,
    pub params: SearchParams,
    pub searched: bool,
    pub hits: Vec<HitView>,
    pub total: usize,
    pub tags: Vec<(String, u64)>,
    pub indexing: Option<Indexing>,
    pub error: Option<FormError>,
    pub next_offset: Option<usize>,
    pub next_query: String,
    /// Why this search is by words only (the local AI is off, failing or indexing).
    pub words_only: Option<String>,
}

/// `GET /search`: the search box, filters and results.
async fn search_page(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, WebError> {
    let unlocked = state.unlocked(user.user.id)?;
    let index = unlocked.index.clone();
    let params = web::Query::<SearchParams>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| WebError::BadRequest(format!("The search could not be read: {e}.")))?;
    let searched = !req.query_string().is_empty();
    let tz = state.time_zone().await;
    let query = params.query_in(&tz);
    let mut words_only = None;
    let (status, hits, total, error, next_offset) = match query {
        Err(why) => {
            let e = WebError::InvalidInput(format!("{}{}.", why[..1].to_uppercase(), &why[1..]));
            (
                StatusCode::BAD_REQUEST,
                Vec::new(),
                0,
                Some(FormError::of(&e)),
                None,
            )
        }
        Ok(query) if searched => {
            let (offset, limit) = (query.offset, query.limit);
            let outcome = crate::semantic::search(&state, index.clone(), query).await?;
            words_only = outcome.reason().map(str::to_owned);
            let today = crate::zone::today(&tz);
            let next = (offset + limit < outcome.total).then_some(offset + limit);
            let hits = outcome
                .hits
                .into_iter()
                .map(|(h, matched)| HitView {
                    matched: matched.map(cv_semantic::Matched::as_str),
                    ..HitView::of(h, today, &tz)
                })
                .collect();
            (StatusCode::OK, hits, outcome.total, None, next)
        }
        Ok(_) => (StatusCode::OK, Vec::new(), 0, None, None),
    };
    let tags = {
        let index = index.clone();
        web::block(move || index.index.tags()).await?
    };
    let next_query = next_offset
        .map(|n| {
            let mut pairs: Vec<(&str, String)> = vec![
                ("q", params.q.clone()),
                ("tag", params.tag.clone()),
                ("kind", params.kind.clone()),
                ("status", params.status.clone()),
                ("from", params.from.clone()),
                ("to", params.to.clone()),
                ("archived", params.archived.clone()),
            ];
            pairs.retain(|(_, v)| !v.is_empty());
            pairs.push(("offset", n.to_string()));
            serde_urlencoded_pairs(&pairs)
        })
        .unwrap_or_default();
    render(
        status,
        &SearchPage {
            csrf: user.csrf_token.clone(),
            can_manage_users: user.user.role.can_manage_users(),
            indexing: indexing(&index),
            params,
            searched,
            hits,
            total,
            tags,
            error,
            next_offset,
            next_query,
            words_only,
        },
    )
}

/// `a=1&b=x%20y`.
fn serde_urlencoded_pairs(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b));
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskFilter {
    #[serde(default)]
    status: String,
    #[serde(default)]
    tag: String,
    created: Option<String>,
}

#[derive(Debug, Template)]
#[template(path = "tasks.html")]
pub(crate) struct TasksPage {
    pub csrf: String,
    pub can_manage_users: bool,
    pub status: String,
    pub tag: String,
    pub tasks: Vec<HitView>,
    pub total: usize,
    pub tags: Vec<(String, u64)>,
    pub indexing: Option<Indexing>,
    pub notice: Option<&'static str>,
    pub error: Option<FormError>,
    pub statuses: &'static [TaskStatus],
    pub priorities: &'static [Priority],
}

/// `GET /tasks`: tasks by due date (undated last), filtered by status and tag.
async fn tasks_page(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, WebError> {
    let filter = web::Query::<TaskFilter>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| WebError::BadRequest(format!("The filter could not be read: {e}.")))?;
    let notice = filter.created.is_some().then_some("Task saved.");
    show_tasks(&state, &user, filter, StatusCode::OK, notice, None).await
}

async fn show_tasks(
    state: &AppState,
    user: &CurrentUser,
    filter: TaskFilter,
    status: StatusCode,
    notice: Option<&'static str>,
    error: Option<WebError>,
) -> Result<HttpResponse, WebError> {
    let unlocked = state.unlocked(user.user.id)?;
    let index = unlocked.index.clone();
    let task_status = match filter.status.trim() {
        "" => None,
        s => Some(crate::index::search_status(
            s.parse::<TaskStatus>().map_err(WebError::InvalidInput)?,
        )),
    };
    let query = Query {
        kind: Some(Kind::Task),
        status: task_status,
        tags: parse_tags(&filter.tag),
        sort: Sort::Due,
        limit: cv_search::MAX_LIMIT,
        ..Query::default()
    };
    let results = run(index.clone(), query).await?;
    let tz = state.time_zone().await;
    let today = crate::zone::today(&tz);
    let tags = {
        let index = index.clone();
        web::block(move || index.index.tags()).await?
    };
    render(
        status,
        &TasksPage {
            csrf: user.csrf_token.clone(),
            can_manage_users: user.user.role.can_manage_users(),
            status: filter.status,
            tag: filter.tag,
            total: results.total,
            tasks: results
                .hits
                .into_iter()
                .map(|h| HitView::of(h, today, &tz))
                .collect(),
            tags,
            indexing: indexing(&index),
            notice,
            error: error.as_ref().map(FormError::of),
            statuses: TaskStatus::ALL,
            priorities: Priority::ALL,
        },
    )
}

#[derive(Deserialize)]
struct NewTaskForm {
    csrf: String,
    text: String,
    #[serde(default)]
    tags: String,
    #[serde(default)]
    priority: String,
    #[serde(default)]
    due: String,
}

/// `POST /tasks`: a new task from scratch.
async fn create_task(
    user: CurrentUser,
    state: web::Data<AppState>,
    form: web::Form<NewTaskForm>,
) -> Result<HttpResponse, WebError> {
    let form = form.into_inner();
    user.check_csrf(&form.csrf)?;
    let unlocked = state.unlocked(user.user.id)?;
    let refused = |e: WebError| {
        show_tasks(
            &state,
            &user,
            TaskFilter::default(),
            actix_web::ResponseError::status_code(&e),
            None,
            Some(e),
        )
    };
    let task = match super::items::task_from_fields("open", &form.priority, &form.due) {
        Ok(task) => task,
        Err(e) => return refused(e).await,
    };
    let mut conn = state.conn().await?;
    let created = cv_vault::create(
        &mut conn,
        user.user.id,
        cv_vault::Access::Unlocked(&unlocked.vault),
        &form.text,
        &parse_tags(&form.tags),
        task,
    )
    .await;
    drop(conn);
    match created {
        Ok(id) => {
            crate::index::changed(&state, user.user.id, id).await;
            Ok(see_other("/tasks?created=1").finish())
        }
        Err(
            e @ (cv_vault::VaultError::Empty
            | cv_vault::VaultError::TooLong
            | cv_vault::VaultError::InvalidTags(_)),
        ) => refused(WebError::from(e)).await,
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
struct StatusForm {
    csrf: String,
    status: String,
}

/// `POST /tasks/{id}/status`: the quick "done" / "reopen" button of the task list.
async fn set_status(
    path: web::Path<String>,
    user: CurrentUser,
    state: web::Data<AppState>,
    form: web::Form<StatusForm>,
) -> Result<HttpResponse, WebError> {
    let id = super::items::item_id(&path)?;
    user.check_csrf(&form.csrf)?;
    let status: TaskStatus = form.status.parse().map_err(WebError::InvalidInput)?;
    let unlocked = state.unlocked(user.user.id)?;
    let mut conn = state.conn().await?;
    cv_vault::set_task(&mut conn, user.user.id, &unlocked.vault, id, None, |task| {
        Some(Task {
            status,
            ..task.cloned().unwrap_or_else(Task::open)
        })
    })
    .await?;
    drop(conn);
    crate::index::changed(&state, user.user.id, id).await;
    Ok(see_other("/tasks").finish())
}
