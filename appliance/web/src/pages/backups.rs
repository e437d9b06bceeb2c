//! Off-box backups on the System page: the Backups card, and a backup made by hand.
//!
//! The supervisor makes the backups (`appliance/supervisor/src/backup.rs`); one can take
//! hours, so the "Back up now" button starts it in the background and the card shows it
//! running.

use actix_web::{HttpResponse, web};
use cv_control::BackupStatus;
use jiff::tz::TimeZone;
use serde::Deserialize;
use time::OffsetDateTime;
use tracing::{info, warn};

use super::see_other;
use crate::error::WebError;
use crate::format::{date_time, human_bytes, human_duration};
use crate::session::CurrentUser;
use crate::state::AppState;

pub(super) fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/system/backup/run", web::post().to(run));
}

/// What the card and the refusal say when backups are not set up.
const NOT_SET_UP: &str = "No off-box backups: set `[backup] repository` in the config, then run `contextvault admin backup init`";
const NO_KEY: &str = "Set up but no key yet: run `contextvault admin backup init`";

/// A running backup: how far, for a `<progress>` bar.
#[derive(Debug, Clone)]
pub(crate) struct BackupProgress {
    /// 0 to 100; `None`: not known yet (an indeterminate bar).
    pub percent: Option<u64>,
    /// "40 % — 1.2 GiB of 3.0 GiB"
    pub text: String,
}

/// The last backup that worked.
#[derive(Debug, Clone)]
pub(crate) struct LastBackup {
    pub at: String,
    pub snapshot: Option<String>,
    pub added: Option<String>,
    pub took: Option<String>,
}

/// The Backups card of the System page.
#[derive(Debug, Clone)]
pub(crate) struct BackupCard {
    /// Where backups go (credentials hidden); `None`: not configured.
    pub repository: Option<String>,
    /// Why no backups are made, when they are not set up.
    pub not_set_up: Option<&'static str>,
    pub running: Option<BackupProgress>,
    pub restoring: bool,
    pub last: Option<LastBackup>,
    /// "2026-05-02 03:00 UTC (in 15 h)"
    pub next: Option<String>,
    /// The last backup's failure, until one works.
    pub problem: Option<String>,
    /// The owner may start a backup; admins only see the card.
    pub is_owner: bool,
    /// The "Back up now" button: the owner, backups set up, none running.
    pub can_run: bool,
}

/// An RFC 3339 time, as an `OffsetDateTime`.
fn parse_time(text: &str) -> Option<OffsetDateTime> {
    let at = text.parse::<jiff::Timestamp>().ok()?;
    OffsetDateTime::from_unix_timestamp(at.as_second()).ok()
}

/// An RFC 3339 time in the appliance's zone (the text as given when it is not one).
fn shown_time(text: &str, tz: &TimeZone) -> String {
    parse_time(text).map_or_else(|| text.to_owned(), |at| date_time(at, tz))
}

/// A share from 0 to 1 in whole percents, rounded down.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn whole_percent(share: f64) -> u64 {
    (share.clamp(0.0, 1.0) * 100.0).floor() as u64
}

fn progress(b: &BackupStatus) -> BackupProgress {
    let percent = b
        .percent
        .filter(|p| p.is_finite())
        .map(whole_percent)
        .or_else(|| match (b.bytes_done, b.total_bytes) {
            (Some(done), Some(total)) if total > 0 => Some(crate::format::percent(done, total)),
            _ => None,
        });
    let text = match (percent, b.bytes_done, b.total_bytes) {
        (Some(p), Some(done), Some(total)) => {
            format!("{p} % — {} of {}", human_bytes(done), human_bytes(total))
        }
        (Some(p), _, _) => format!("{p} %"),
        (None, _, _) => "starting".to_owned(),
    };
    BackupProgress { percent, text }
}

/// The problem as a sentence that says a backup failed.
fn problem_sentence(problem: &str) -> String {
    let problem = problem.trim();
    let lead = "the last backup failed";
    if problem.len() >= lead.len()
        && problem.is_char_boundary(lead.len())
        && problem[..lead.len()].eq_ignore_ascii_case(lead)
    {
        format!("The last backup failed{}", &problem[lead.len()..])
    } else {
        format!("The last backup failed: {problem}")
    }
}

pub(crate) fn card(
    b: &BackupStatus,
    tz: &TimeZone,
    now: OffsetDateTime,
    is_owner: bool,
) -> BackupCard {
    let not_set_up = if b.repository.is_none() {
        Some(NOT_SET_UP)
    } else if !b.initialised {
        Some(NO_KEY)
    } else {
        None
    };
    let last = b.last_success_at.as_deref().map(|at| LastBackup {
        at: shown_time(at, tz),
        snapshot: b.last_snapshot.clone(),
        added: b.last_added_bytes.map(human_bytes),
        took: b
            .last_seconds
            .filter(|s| s.is_finite())
            .map(|s| human_duration(time::Duration::saturating_seconds_f64(s))),
    });
    let next = if not_set_up.is_some() {
        None
    } else {
        b.next_at.as_deref().map(|text| match parse_time(text) {
            Some(at) if at <= now => format!("{} (now)", date_time(at, tz)),
            Some(at) => format!("{} (in {})", date_time(at, tz), human_duration(at - now)),
            None => text.to_owned(),
        })
    };
    BackupCard {
        repository: b.repository.clone(),
        not_set_up,
        running: b.running.then(|| progress(b)),
        restoring: b.restoring,
        last,
        next,
        problem: b.problem.as_deref().map(problem_sentence),
        is_owner,
        can_run: is_owner && not_set_up.is_none() && !b.running && !b.restoring,
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

/// `POST /system/backup/run`: the "Back up now" button. The backup is started in the
/// background (it may take hours) and the browser goes back to the card, which shows it
/// running.
async fn run(
    user: CurrentUser,
    state: web::Data<AppState>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, WebError> {
    user.check_csrf(&form.csrf)?;
    if user.user.role != cv_db::Role::Owner {
        return Err(WebError::Forbidden(
            "Only the owner can make a backup.".into(),
        ));
    }
    let status = state.status.get().await.map_err(|e| {
        warn!(error = %e, "the supervisor could not be asked about backups");
        WebError::DatabaseUnavailable { postgres: None }
    })?;
    let backup = status.backup.as_deref().cloned().unwrap_or_default();
    if backup.repository.is_none() {
        return Err(WebError::Conflict(format!("{NOT_SET_UP}.")));
    }
    if !backup.initialised {
        return Err(WebError::Conflict(format!("Backups are {NO_KEY}.")));
    }
    if backup.running {
        return Err(WebError::Conflict("A backup is being made now.".into()));
    }
    if backup.restoring {
        return Err(WebError::Conflict(
            "A backup is being restored onto this box now.".into(),
        ));
    }
    info!(user = %user.user.name, "backup requested from the System page");
    let control = state.status.control().clone();
    tokio::spawn(async move {
        match control.backup_run().await {
            Ok(result) => {
                info!(snapshot = %result.snapshot, "the backup asked for by hand is made")
            }
            Err(e) => warn!(error = %e, "the backup asked for by hand did not report success"),
        }
    });
    Ok(see_other("/system#backups").finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-05-01 12:00 UTC);

    fn set_up() -> BackupStatus {
        BackupStatus {
            repository: Some("rest:http://nas.local:8000/vault/".into()),
            initialised: true,
            next_at: Some("2026-05-02T03:00:00Z".into()),
            ..BackupStatus::default()
        }
    }

    #[test]
    fn progress_is_a_percent_and_bytes() {
        let mut b = set_up();
        b.running = true;
        b.percent = Some(0.4);
        b.bytes_done = Some(400 * 1024 * 1024);
        b.total_bytes = Some(1000 * 1024 * 1024);
        let p = progress(&b);
        assert_eq!(p.percent, Some(40));
        assert_eq!(p.text, "40 % — 400.0 MiB of 1000.0 MiB");
        b.percent = None;
        b.total_bytes = None;
        b.bytes_done = None;
        let p = progress(&b);
        assert_eq!((p.percent, p.text.as_str()), (None, "starting"));
        b.percent = Some(f64::NAN);
        assert_eq!(progress(&b).percent, None);
    }

    #[test]
    fn a_problem_reads_as_a_failed_backup() {
        assert_eq!(
            problem_sentence("the last backup failed: restic: no space"),
            "The last backup failed: restic: no space"
        );
        assert_eq!(
            problem_sentence("restic: no space"),
            "The last backup failed: restic: no space"
        );
    }

    #[test]
    fn the_button_is_the_owners_once_backups_are_set_up() {
        let tz = TimeZone::UTC;
        assert!(card(&set_up(), &tz, NOW, true).can_run);
        assert!(!card(&set_up(), &tz, NOW, false).can_run);
        let mut b = set_up();
        b.initialised = false;
        let c = card(&b, &tz, NOW, true);
        assert!(!c.can_run);
        assert_eq!(c.not_set_up, Some(NO_KEY));
        assert_eq!(c.next, None);
        b.repository = None;
        assert_eq!(card(&b, &tz, NOW, true).not_set_up, Some(NOT_SET_UP));
        let mut b = set_up();
        b.running = true;
        assert!(!card(&b, &tz, NOW, true).can_run);
    }
}
