//! One item: read it (Markdown rendered safely), edit it (every version kept), see its
//! history as diffs, tag it, pin, archive, make it a task, delete it.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use cv_db::items::ItemId;
use cv_vault::{Edit, ItemView, Priority, Task, TaskStatus, VaultError, VersionView};
use serde::Deserialize;
use tracing::info;

use super::{FormError, parse_tags, render, see_other};
use crate::diff::{self, DiffLine};
use crate::error::WebError;
use crate::format::date_time;
use crate::session::CurrentUser;
use crate::state::AppState;

pub(super) fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/items/{id}", web::get().to(item_page))
        .route("/items/{id}/edit", web::post().to(edit))
        .route("/items/{id}/task", web::post().to(set_task))
        .route("/items/{id}/flags", web::post().to(set_flags))
        .route("/items/{id}/delete", web::post().to(delete))
        .route("/items/{id}/history", web::get().to(history_page))
        .route("/items/{id}/restore", web::post().to(restore));
}

/// An item id from the path; anything that is not a UUID is simply not found.
pub(crate) fn item_id(raw: &str) -> Result<ItemId, WebError> {
    uuid::Uuid::parse_str(raw)
        .map(ItemId)
        .map_err(|_| WebError::NotFound)
}

/// A task's fields, for templates.
#[derive(Debug, Clone)]
pub(crate) struct TaskView {
    pub status: &'static str,
    pub priority: &'static str,
    /// `YYYY-MM-DD`, or empty.
    pub due: String,
}

impl TaskView {
    pub fn of(task: &Task) -> TaskView {
        TaskView {
            status: task.status.as_str(),
            priority: task.priority.as_str(),
            due: task.due.map(cv_vault::iso_date::format).unwrap_or_default(),
        }
    }
}

#[derive(Debug, Template)]
#[template(path = "item.html")]
pub(crate) struct ItemPage {
    pub csrf: String,
    pub can_manage_users: bool,
    pub id: String,
    pub version: i32,
    /// The note rendered from Markdown (safe HTML); `None`: it failed its integrity check.
    pub html: Option<String>,
    /// What the edit box holds: the current text, or the text just submitted.
    pub text: String,
    pub tags: Vec<String>,
    pub tags_field: String,
    pub task: Option<TaskView>,
    pub pinned: bool,
    pub archived: bool,
    pub created: String,
    pub updated: String,
    pub notice: Option<&'static str>,
    pub error: Option<FormError>,
    pub statuses: &'static [TaskStatus],
    pub priorities: &'static [Priority],
    /// Related notes, tasks and tags suggested (empty on a re-shown form).
    pub suggestions: super::suggestions::Suggestions,
}

impl ItemPage {
    fn new(user: &CurrentUser, view: &ItemView, tz: &jiff::tz::TimeZone) -> ItemPage {
        let text = view.text.as_ref().map(|t| t.to_string()).ok();
        ItemPage {
            csrf: user.csrf_token.clone(),
            can_manage_users: user.user.role.can_manage_users(),
            id: view.id.0.to_string(),
            version: view.version,
            html: text.as_deref().map(crate::markdown::to_html),
            text: text.unwrap_or_default(),
            tags: view.tags.clone(),
            tags_field: view.tags.join(", "),
            task: view.task.as_ref().map(TaskView::of),
            pinned: view.pinned,
            archived: view.archived,
            created: date_time(view.created_at, tz),
            updated: date_time(view.updated_at, tz),
            notice: None,
            error: None,
            statuses: TaskStatus::ALL,
            priorities: Priority::ALL,
            suggestions: super::suggestions::Suggestions::default(),
        }
    }
}

#[derive(Deserialize)]
struct NoticeQuery {
    saved: Option<String>,
    created: Option<String>,
}

async fn item_page(
    req: HttpRequest,
    path: web::Path<String>,
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, WebError> {
    let id = item_id(&path)?;
    let unlocked = state.unlocked(user.user.id)?;
    let mut conn = state.conn().await?;
    let view = cv_vault::get(&mut conn, user.user.id, &unlocked.vault, id).await?;
    drop(conn);
    let mut page = ItemPage::new(&user, &view, &state.time_zone().await);
    page.suggestions = super::suggestions::for_page(&state, user.user.id, &unlocked, &view).await;
    if let Ok(q) = web::Query::<NoticeQuery>::from_query(req.query_string()) {
        if q.saved.is_some() {
            page.notice = Some("Saved. The previous version is kept in the history.");
        } else if q.created.is_some() {
            page.notice = Some("Saved.");
        }
    }
    render(StatusCode::OK, &page)
}

#[derive(Deserialize)]
struct EditForm {
    csrf: String,
    version: i32,
    text: String,
    #[serde(default)]
    tags: String,
}

/// Re-shows the item page after a refused edit, keeping what the person typed.
async fn reshow(
    state: &AppState,
    user: &CurrentUser,
    id: ItemId,
    typed: Option<(String, String)>,
    error: WebError,
) -> Result<HttpResponse, WebError> {
    let unlocked = state.unlocked(user.user.id)?;
    let mut conn = state.conn().await?;
    let view = cv_vault::get(&mut conn, user.user.id, &unlocked.vault, id).await?;
    drop(conn);
    let mut page = ItemPage::new(user, &view, &state.time_zone().await);
    if let Some((text, tags)) = typed {
        page.text = text;
        page.tags_field = tags;
    }
    page.error = Some(FormError::of(&error));
    render(actix_web::ResponseError::status_code(&error), &page)
}

/// `POST /items/{id}/edit`: stores the new text and tags as a new version.
async fn edit(
    path: web::Path<String>,
    user: CurrentUser,
    state: web::Data<AppState>,
    form: web::Form<EditForm>,
) -> Result<HttpResponse, WebError> {
    let id = item_id(&path)?;
    let EditForm {
        csrf,
        version,
        text,
        tags,
    } = form.into_inner();
    user.check_csrf(&csrf)?;
    let unlocked = state.unlocked(user.user.id)?;
    let mut conn = state.conn().await?;
    let current = cv_vault::get(&mut conn, user.user.id, &unlocked.vault, id).await?;
    let tag_list = parse_tags(&tags);
    let result = cv_vault::update(
        &mut conn,
        user.user.id,
        &unlocked.vault,
        id,
        version,
        Edit {
            text: &text,
            tags: &tag_list,
            task: current.task.clone(),
        },
    )
    .await;
    drop(conn);
    match result {
        Ok(v) => {
            info!(user = %user.user.name, item = %id.0, version = v, "item edited");
            crate::index::changed(&state, user.user.id, id).await;
            Ok(see_other(&format!("/items/{}?saved=1", id.0)).finish())
        }
        Err(
            e @ (VaultError::Empty
            | VaultError::TooLong
            | VaultError::InvalidTags(_)
            | VaultError::Stale { .. }),
        ) => reshow(&state, &user, id, Some((text, tags)), WebError::from(e)).await,
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
struct TaskForm {
    csrf: String,
    version: i32,
    /// Empty: not a task.
    #[serde(default)]
    status: String,
    #[serde(default)]
    priority: String,
    #[serde(default)]
    due: String,
}

/// Reads a task from form fields; an empty status means "not a task".
pub(crate) fn task_from_fields(
    status: &str,
    priority: &str,
    due: &str,
) -> Result<Option<Task>, WebError> {
    if status.trim().is_empty() {
        return Ok(None);
    }
    let status: TaskStatus = status.trim().parse().map_err(WebError::InvalidInput)?;
    let priority: Priority = if priority.trim().is_empty() {
        Priority::Normal
    } else {
        priority.trim().parse().map_err(WebError::InvalidInput)?
    };
    let due = if due.trim().is_empty() {
        None
    } else {
        Some(cv_vault::iso_date::parse(due).ok_or_else(|| {
            WebError::InvalidInput("A due date is written YYYY-MM-DD, e.g. 2026-12-03.".into())
        })?)
    };
    Ok(Some(Task {
        status,
        priority,
        due,
    }))
}

/// `POST /items/{id}/task`: makes the item a task, changes its status, priority or due
/// date, or makes it a plain note again. Each change is a new version.
async fn set_task(
    path: web::Path<String>,
    user: CurrentUser,
    state: web::Data<AppState>,
    form: web::Form<TaskForm>,
) -> Result<HttpResponse, WebError> {
    let id = item_id(&path)?;
    let form = form.into_inner();
    user.check_csrf(&form.csrf)?;
    let task = match task_from_fields(&form.status, &form.priority, &form.due) {
        Ok(task) => task,
        Err(e) => return reshow(&state, &user, id, None, e).await,
    };
    let unlocked = state.unlocked(user.user.id)?;
    let mut conn = state.conn().await?;
    let result = cv_vault::set_task(
        &mut conn,
        user.user.id,
        &unlocked.vault,
        id,
        Some(form.version),
        |_| task,
    )
    .await;
    drop(conn);
    match result {
        Ok(_) => {
            crate::index::changed(&state, user.user.id, id).await;
            Ok(see_other(&format!("/items/{}?saved=1", id.0)).finish())
        }
        Err(e @ VaultError::Stale { .. }) => {
            reshow(&state, &user, id, None, WebError::from(e)).await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
struct FlagsForm {
    csrf: String,
    action: String,
}

/// `POST /items/{id}/flags`: pin, unpin, archive, unarchive.
async fn set_flags(
    path: web::Path<String>,
    user: CurrentUser,
    state: web::Data<AppState>,
    form: web::Form<FlagsForm>,
) -> Result<HttpResponse, WebError> {
    let id = item_id(&path)?;
    user.check_csrf(&form.csrf)?;
    let unlocked = state.unlocked(user.user.id)?;
    let mut conn = state.conn().await?;
    let current = cv_vault::get(&mut conn, user.user.id, &unlocked.vault, id).await?;
    let (pinned, archived) = match form.action.as_str() {
        "pin" => (true, current.archived),
        "unpin" => (false, current.archived),
        "archive" => (false, true),
        "unarchive" => (current.pinned, false),
        _ => {
            return Err(WebError::BadRequest(
                "`action` is one of pin, unpin, archive, unarchive.".into(),
            ));
        }
    };
    cv_vault::set_flags(&mut conn, user.user.id, id, pinned, archived).await?;
    drop(conn);
    crate::index::changed(&state, user.user.id, id).await;
    Ok(see_other(&format!("/items/{}", id.0)).finish())
}

#[derive(Deserialize)]
struct DeleteForm {
    csrf: String,
    #[serde(default)]
    confirm: String,
}

/// `POST /items/{id}/delete`: destroys the item with its key. Needs the confirmation
/// box ticked.
async fn delete(
    path: web::Path<String>,
    user: CurrentUser,
    state: web::Data<AppState>,
    form: web::Form<DeleteForm>,
) -> Result<HttpResponse, WebError> {
    let id = item_id(&path)?;
    user.check_csrf(&form.csrf)?;
    state.unlocked(user.user.id)?;
    if form.confirm != "yes" {
        return reshow(
            &state,
            &user,
            id,
            None,
            WebError::InvalidInput(
                "Tick the box to confirm: a deleted note cannot be brought back.".into(),
            ),
        )
        .await;
    }
    let mut conn = state.conn().await?;
    cv_vault::delete(&mut conn, user.user.id, id).await?;
    drop(conn);
    crate::index::removed(&state, user.user.id, id);
    info!(user = %user.user.name, item = %id.0, "item deleted");
    Ok(see_other("/notes?deleted=1").finish())
}

/// One version on the history page.
#[derive(Debug)]
pub(crate) struct VersionRow {
    pub version: i32,
    pub created: String,
    /// `None`: this version failed its integrity check.
    pub diff: Option<Vec<DiffLine>>,
    /// Changes other than the text ("tags: +work", "status: open → done").
    pub changes: Vec<String>,
}

#[derive(Debug, Template)]
#[template(path = "history.html")]
pub(crate) struct HistoryPage {
    pub csrf: String,
    pub can_manage_users: bool,
    pub id: String,
    /// The item's current version: what a restore starts from (its version check).
    pub current: i32,
    pub versions: Vec<VersionRow>,
    pub error: Option<FormError>,
}

/// What changed besides the text between two versions.
fn other_changes(old: Option<&VersionView>, new: &VersionView) -> Vec<String> {
    let mut changes = Vec::new();
    let no_tags = Vec::new();
    let old_tags = old.map_or(&no_tags, |o| &o.tags);
    let added: Vec<&str> = new
        .tags
        .iter()
        .filter(|t| !old_tags.contains(t))
        .map(String::as_str)
        .collect();
    let removed: Vec<&str> = old_tags
        .iter()
        .filter(|t| !new.tags.contains(t))
        .map(String::as_str)
        .collect();
    if !added.is_empty() {
        changes.push(format!("tags added: {}", added.join(", ")));
    }
    if !removed.is_empty() {
        changes.push(format!("tags removed: {}", removed.join(", ")));
    }
    let old_task = old.and_then(|o| o.task.as_ref());
    match (old_task, new.task.as_ref()) {
        (None, Some(t)) => changes.push(format!(
            "became a task ({}, {} priority{})",
            t.status,
            t.priority,
            t.due
                .map(|d| format!(", due {}", cv_vault::iso_date::format(d)))
                .unwrap_or_default()
        )),
        (Some(_), None) => changes.push("no longer a task".into()),
        (Some(a), Some(b)) => {
            if a.status != b.status {
                changes.push(format!("status: {} → {}", a.status, b.status));
            }
            if a.priority != b.priority {
                changes.push(format!("priority: {} → {}", a.priority, b.priority));
            }
            if a.due != b.due {
                let show = |d: Option<time::Date>| {
                    d.map_or_else(|| "none".to_owned(), cv_vault::iso_date::format)
                };
                changes.push(format!("due: {} → {}", show(a.due), show(b.due)));
            }
        }
        (None, None) => {}
    }
    changes
}

/// `GET /items/{id}/history`: every version, newest first, each as a diff against the
/// one before it.
async fn history_page(
    path: web::Path<String>,
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, WebError> {
    let id = item_id(&path)?;
    show_history(&state, &user, id, StatusCode::OK, None).await
}

async fn show_history(
    state: &AppState,
    user: &CurrentUser,
    id: ItemId,
    status: StatusCode,
    error: Option<&WebError>,
) -> Result<HttpResponse, WebError> {
    let unlocked = state.unlocked(user.user.id)?;
    let mut conn = state.conn().await?;
    let versions = cv_vault::history(&mut conn, user.user.id, &unlocked.vault, id).await?;
    drop(conn);
    let tz = state.time_zone().await;
    let mut rows = Vec::with_capacity(versions.len());
    for (i, v) in versions.iter().enumerate() {
        let previous = i.checked_sub(1).map(|p| &versions[p]);
        let old_text = previous
            .and_then(|p| p.text.as_ref().ok())
            .map_or("", |t| t.as_str());
        rows.push(VersionRow {
            version: v.version,
            created: date_time(v.created_at, &tz),
            diff: v.text.as_ref().ok().map(|text| diff::lines(old_text, text)),
            changes: other_changes(previous, v),
        });
    }
    rows.reverse();
    render(
        status,
        &HistoryPage {
            csrf: user.csrf_token.clone(),
            can_manage_users: user.user.role.can_manage_users(),
            id: id.0.to_string(),
            current: rows.first().map_or(0, |r| r.version),
            versions: rows,
            error: error.map(FormError::of),
        },
    )
}

#[derive(Deserialize)]
struct RestoreForm {
    csrf: String,
    /// The version the history page showed as current.
    version: i32,
    /// The version to bring back.
    from: i32,
}

/// `POST /items/{id}/restore`: stores version `from`'s text, tags and task as a new
/// version, if the item is still at `version` (409 with the history again otherwise).
async fn restore(
    path: web::Path<String>,
    user: CurrentUser,
    state: web::Data<AppState>,
    form: web::Form<RestoreForm>,
) -> Result<HttpResponse, WebError> {
    let id = item_id(&path)?;
    let RestoreForm {
        csrf,
        version,
        from,
    } = form.into_inner();
    user.check_csrf(&csrf)?;
    let unlocked = state.unlocked(user.user.id)?;
    let mut conn = state.conn().await?;
    let result =
        cv_vault::restore(&mut conn, user.user.id, &unlocked.vault, id, version, from).await;
    drop(conn);
    match result {
        Ok(v) => {
            info!(user = %user.user.name, item = %id.0, from, version = v, "item version restored");
            crate::index::changed(&state, user.user.id, id).await;
            Ok(see_other(&format!("/items/{}?saved=1", id.0)).finish())
        }
        Err(VaultError::Stale { current }) => {
            let e = WebError::Conflict(format!(
                "This note was changed elsewhere since its history was shown (it is at version {current} now). Nothing was restored: look at the versions again, then restore."
            ));
            show_history(&state, &user, id, StatusCode::CONFLICT, Some(&e)).await
        }
        Err(VaultError::Tampered) => {
            let e = WebError::Conflict(
                "That version failed its integrity check (it was changed outside the appliance), so it cannot be restored.".into(),
            );
            show_history(&state, &user, id, StatusCode::CONFLICT, Some(&e)).await
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earlier_readable_versions_offer_a_restore_against_the_current_one() {
        let row = |version, diff: Option<Vec<DiffLine>>| VersionRow {
            version,
            created: "2026-03-14 15:04 CET".into(),
            diff,
            changes: vec![],
        };
        let html = HistoryPage {
            csrf: "tok".into(),
            can_manage_users: false,
            id: "00000000-0000-0000-0000-000000000001".into(),
            current: 3,
            versions: vec![
                row(3, Some(diff::lines("a", "c"))),
                row(2, None),
                row(1, Some(diff::lines("", "a"))),
            ],
            error: Some(FormError::of(&WebError::Conflict(
                "changed elsewhere".into(),
            ))),
        }
        .render()
        .unwrap();
        let forms = html.matches(r#"action="/items/00000000-0000-0000-0000-000000000001/restore""#);
        // Version 1 only: 3 is the current one, 2 cannot be read.
        assert_eq!(forms.count(), 1, "{html}");
        for text in [
            r#"name="version" value="3""#,
            r#"name="from" value="1""#,
            r#"name="csrf" value="tok""#,
            "Restore this version",
            "changed elsewhere",
        ] {
            assert!(html.contains(text), "{text} missing in {html}");
        }
        assert!(!html.contains(r#"name="from" value="2""#));
        assert!(!html.contains(r#"name="from" value="3""#));
    }
}
