//! One item as it appears in an export, and the checks every item passes both ways.
//!
//! The same [`validate`] runs when an item is written and when it is read, so an export
//! this crate writes is always one it will read back.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::error::{ItemProblem, shown};

/// The longest text of one version: 16 KiB, the capture limit of the vault
/// (`cv_vault::MAX_TEXT_BYTES`; repeated here because this crate knows nothing of it).
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
/// At most this many tags on one version (`cv_vault::MAX_TAGS`).
pub const MAX_TAGS: usize = 32;
/// The longest tag, in characters (`cv_vault::MAX_TAG_CHARS`).
pub const MAX_TAG_CHARS: usize = 64;
/// The words a task's status may be.
pub const TASK_STATUSES: [&str; 3] = ["open", "doing", "done"];
/// The words a task's priority may be.
pub const TASK_PRIORITIES: [&str; 3] = ["low", "normal", "high"];

/// One item of the vault, with its whole history: `items/<id>.json` in the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportItem {
    pub id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    pub pinned: bool,
    pub archived: bool,
    /// Oldest first, numbered 1, 2, 3… without gaps.
    pub versions: Vec<ExportVersion>,
}

/// One version of an item. Its text is wiped from memory when the value is dropped, and
/// its `Debug` shows neither text nor tags.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportVersion {
    pub version: i32,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub text: Zeroizing<String>,
    pub tags: Vec<String>,
    pub task: Option<ExportTask>,
}

impl fmt::Debug for ExportVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExportVersion")
            .field("version", &self.version)
            .field("created_at", &self.created_at)
            .field("text", &format_args!("<{} bytes>", self.text.len()))
            .field("tags", &format_args!("<{} tags>", self.tags.len()))
            .field("task", &self.task)
            .finish()
    }
}

/// A version that is a task. The words are those of the vault's task model; this crate
/// only checks that they are among [`TASK_STATUSES`] and [`TASK_PRIORITIES`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportTask {
    pub status: String,
    pub priority: String,
    /// A calendar day, `YYYY-MM-DD`, or `null`.
    #[serde(with = "due_date::option")]
    pub due: Option<Date>,
}

time::serde::format_description!(due_date, Date, "[year]-[month]-[day]");

/// The checks every item passes, on write and on read (the id against its file name is
/// checked by the reader, which knows the name).
pub(crate) fn validate(item: &ExportItem) -> Result<(), ItemProblem> {
    if item.versions.is_empty() {
        return Err(ItemProblem::NoVersions);
    }
    if item.updated_at < item.created_at {
        return Err(ItemProblem::UpdatedBeforeCreated);
    }
    for (expected, version) in (1_i64..).zip(&item.versions) {
        if i64::from(version.version) != expected {
            return Err(ItemProblem::VersionNumbering {
                expected,
                found: version.version,
            });
        }
        validate_version(version)?;
    }
    Ok(())
}

fn validate_version(v: &ExportVersion) -> Result<(), ItemProblem> {
    let version = v.version;
    if v.text.is_empty() {
        return Err(ItemProblem::EmptyText { version });
    }
    if v.text.len() > MAX_TEXT_BYTES {
        return Err(ItemProblem::TextTooLong { version });
    }
    if v.tags.len() > MAX_TAGS {
        return Err(ItemProblem::TooManyTags { version });
    }
    for (position, tag) in (1..).zip(&v.tags) {
        if tag.is_empty()
            || tag.chars().count() > MAX_TAG_CHARS
            || tag.chars().any(char::is_control)
        {
            return Err(ItemProblem::BadTag { version, position });
        }
    }
    if let Some(task) = &v.task {
        if !TASK_STATUSES.contains(&task.status.as_str()) {
            return Err(ItemProblem::BadTaskStatus {
                version,
                found: format!("\"{}\"", shown(&task.status)),
            });
        }
        if !TASK_PRIORITIES.contains(&task.priority.as_str()) {
            return Err(ItemProblem::BadTaskPriority {
                version,
                found: format!("\"{}\"", shown(&task.priority)),
            });
        }
    }
    Ok(())
}
