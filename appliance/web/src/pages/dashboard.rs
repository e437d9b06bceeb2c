//! The System page, for the owner and admins: the appliance's components, local AI,
//! storage and certificates. (A person's own start page is `home.rs`.)

use actix_web::web;
use askama::Template;
use askama_web::WebTemplate;
use cv_control::{ApplianceStatus, ComponentState, ComponentStatus, DiskUsage};
use cv_net::tls::CertInfo;
use jiff::tz::TimeZone;
use time::OffsetDateTime;

use crate::error::WebError;
use crate::format::{date, human_bytes, human_duration, percent};
use crate::session::CurrentUser;
use crate::state::AppState;

pub(super) fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/system", web::get().to(system))
        .route("/system/update/check", web::post().to(update_check))
        .route("/system/update/restart", web::post().to(update_restart))
        .route("/system/update/retry", web::post().to(update_retry))
        .route("/system/update/window", web::post().to(update_window));
}

#[derive(serde::Deserialize)]
struct CsrfForm {
    csrf: String,
}

#[derive(serde::Deserialize)]
struct WindowForm {
    csrf: String,
    window: String,
}

/// `POST /system/update/window`: when an installed update may restart the box.
async fn update_window(
    user: CurrentUser,
    state: web::Data<AppState>,
    form: web::Form<WindowForm>,
) -> Result<actix_web::HttpResponse, WebError> {
    if form.window.len() > 64 {
        return Err(WebError::InvalidInput("That is not a window.".into()));
    }
    let request = cv_control::Request::UpdateSetWindow {
        window: form.window.clone(),
    };
    update_action(&user, &state, &form.csrf, &request).await
}

#[derive(serde::Deserialize)]
struct RetryForm {
    csrf: String,
    version: String,
}

/// `POST /system/update/check`: the "Check now" button.
async fn update_check(
    user: CurrentUser,
    state: web::Data<AppState>,
    form: web::Form<CsrfForm>,
) -> Result<actix_web::HttpResponse, WebError> {
    update_action(
        &user,
        &state,
        &form.csrf,
        &cv_control::Request::UpdateCheck {},
    )
    .await
}

/// `POST /system/update/restart`: restart into an installed update now.
async fn update_restart(
    user: CurrentUser,
    state: web::Data<AppState>,
    form: web::Form<CsrfForm>,
) -> Result<actix_web::HttpResponse, WebError> {
    update_action(
        &user,
        &state,
        &form.csrf,
        &cv_control::Request::UpdateRestart {},
    )
    .await
}

/// `POST /system/update/retry`: install a version that failed its health check before.
async fn update_retry(
    user: CurrentUser,
    state: web::Data<AppState>,
    form: web::Form<RetryForm>,
) -> Result<actix_web::HttpResponse, WebError> {
    let version = form.version.trim();
    if version.is_empty() || version.len() > 64 || version.chars().any(char::is_control) {
        return Err(WebError::InvalidInput("That is not a version.".into()));
    }
    let request = cv_control::Request::UpdateRetry {
        version: version.to_owned(),
    };
    update_action(&user, &state, &form.csrf, &request).await
}

/// One of the Updates card's buttons, from the owner or an admin, handed to the
/// supervisor; back to the card.
async fn update_action(
    user: &CurrentUser,
    state: &AppState,
    csrf: &str,
    request: &cv_control::Request,
) -> Result<actix_web::HttpResponse, WebError> {
    user.check_csrf(csrf)?;
    super::require_admin(user, "update the appliance")?;
    match state.status.control().update_action(request).await {
        Ok(()) => Ok(super::see_other("/system#updates").finish()),
        Err(cv_control::ControlError::Refused(message)) => Err(WebError::Conflict(message)),
        Err(e) => {
            tracing::warn!(error = %e, "the supervisor could not be asked about updates");
            Err(WebError::DatabaseUnavailable { postgres: None })
        }
    }
}

/// The Updates card.
#[derive(Debug, Clone)]
pub(crate) struct UpdateView {
    pub enabled: bool,
    pub off_reason: Option<String>,
    pub slot: Option<String>,
    pub phase: String,
    /// A sentence for the phase: "Downloading 0.2.0: 40 % (120 MB of 300 MB)".
    pub doing: Option<String>,
    /// Installed, waiting to restart: the version.
    pub ready: Option<String>,
    pub message: Option<String>,
    pub problem: bool,
    pub last_check: Option<String>,
    pub next_check: Option<String>,
    pub failed_versions: Vec<String>,
    pub reboot_window: Option<String>,
}

pub(crate) fn update_view(u: &cv_control::UpdateStatus, now: OffsetDateTime) -> UpdateView {
    let target = u.target.clone().unwrap_or_default();
    let doing = match u.phase.as_str() {
        "checking" => Some("Checking the update repository".to_owned()),
        "downloading" => Some(match (u.downloaded_bytes, u.total_bytes) {
            (Some(done), Some(total)) if total > 0 => format!(
                "Downloading {target}: {} % ({} of {})",
                done.saturating_mul(100) / total,
                human_bytes(done),
                human_bytes(total)
            ),
            _ => format!("Downloading {target}"),
        }),
        "verifying" => Some(format!("Checking the signature of {target}")),
        "installing" => Some(match u.install_percent {
            Some(p) => format!("Installing {target}: {p} %"),
            None => format!("Installing {target}"),
        }),
        "confirming" => Some(format!(
            "Checking that {target} works (database, vault service, AI worker, certificate, VPN)"
        )),
        "restarting" => Some(format!("Restarting into {target}")),
        _ => None,
    };
    UpdateView {
        enabled: u.enabled,
        off_reason: u.off_reason.clone(),
        slot: u.slot.clone(),
        phase: u.phase.clone(),
        doing,
        ready: (u.phase == "ready").then_some(target),
        message: u.message.clone(),
        problem: u.problem,
        last_check: u
            .last_check
            .map(|t| format!("{} ago", human_duration(now - t))),
        next_check: u.next_check.map(|t| {
            if t <= now {
                "now".to_owned()
            } else {
                format!("in {}", human_duration(t - now))
            }
        }),
        failed_versions: u.failed_versions.clone(),
        reboot_window: u.reboot_window.clone(),
    }
}

/// Certificates expiring within this many days are highlighted. The local CA renews
/// its server certificate 30 days before expiry, so a highlighted one means renewal is
/// failing.
const CERT_WARN_DAYS: i64 = 21;

#[derive(Debug, Template, WebTemplate)]
#[template(path = "system.html")]
pub(crate) struct DashboardPage {
    pub can_manage_users: bool,
    pub csrf: String,
    pub version: String,
    pub mode: String,
    /// Set when the supervisor could not be asked; the page says so instead of failing.
    pub supervisor_error: Option<String>,
    pub started: Option<String>,
    pub components: Vec<ComponentView>,
    /// `None`: not measured yet (or the supervisor is unreachable).
    pub disk: Option<DiskView>,
    pub cert: Option<CertView>,
    /// The ACME certificate and its renewal; `None` when `[acme]` is off.
    pub acme: Option<AcmeView>,
    /// The AI workers; `None` when local AI is off (`workers.count` = 0).
    pub ai: Option<crate::ai::AiView>,
    /// Self-update; `None` when the supervisor does not report it.
    pub update: Option<UpdateView>,
    /// Snapshots of the data directory; `None` when the supervisor does not report them.
    pub snapshots: Option<super::snapshots::SnapshotCard>,
    /// Off-box backups; `None` when the supervisor does not report them.
    pub backups: Option<super::backups::BackupCard>,
}

/// The insights card of the home page.
#[derive(Debug, Clone)]
pub(crate) struct InsightsView {
    pub computed_ago: String,
    pub recent_days: u32,
    pub recent: usize,
    pub recent_with_meaning: usize,
    pub ai_on: bool,
    pub themes: Vec<ThemeCard>,
    pub due_soon_days: u32,
    pub due_soon: Vec<DueCard>,
}

#[derive(Debug, Clone)]
pub(crate) struct ThemeCard {
    pub label: String,
    pub keywords: String,
    pub size: usize,
    /// Links to the most central items, with the start of their text.
    pub evidence: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub(crate) struct DueCard {
    pub href: String,
    pub title: String,
    pub due: String,
    pub overdue: bool,
}

pub(crate) fn insights_view(
    insights: &crate::insights::Insights,
    settings: &cv_control::InsightSettings,
    ai_on: bool,
    now: OffsetDateTime,
) -> InsightsView {
    InsightsView {
        computed_ago: human_duration(now - insights.computed_at),
        recent_days: settings.recent_days,
        recent: insights.recent,
        recent_with_meaning: insights.recent_with_meaning,
        ai_on,
        themes: insights
            .themes
            .iter()
            .map(|t| ThemeCard {
                label: if t.label.is_empty() {
                    "(no common words)".to_owned()
                } else {
                    t.label.clone()
                },
                keywords: t.keywords.join(", "),
                size: t.size,
                evidence: t
                    .evidence
                    .iter()
                    .map(|(id, text)| (format!("/items/{id}"), crate::markdown::to_plain(text)))
                    .collect(),
            })
            .collect(),
        due_soon_days: settings.due_soon_days,
        due_soon: insights
            .due_soon
            .iter()
            .map(|d| DueCard {
                href: format!("/items/{}", d.id),
                title: crate::markdown::to_plain(&d.title),
                due: cv_vault::iso_date::format(d.due),
                overdue: d.overdue,
            })
            .collect(),
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ComponentView {
    pub name: String,
    pub state: &'static str,
    /// CSS modifier: `ok`, `busy` or `bad`.
    pub tone: &'static str,
    /// How long it has been in its current state.
    pub for_how_long: String,
    pub restarts: u32,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct DiskView {
    pub data_dir: String,
    pub filesystem: String,
    pub available: String,
    pub used_percent: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct CertView {
    pub names: String,
    pub issuer: String,
    pub expires: String,
    pub days_left: i64,
    pub expiring_soon: bool,
    pub fingerprint: String,
    /// The local CA's fingerprint, as the trust page shows it (`None`: unreadable).
    pub ca_fingerprint: Option<String>,
}

/// The ACME card.
#[derive(Debug, Clone)]
pub(crate) struct AcmeView {
    pub names: String,
    pub challenge: String,
    pub issuer: Option<String>,
    pub serial: Option<String>,
    pub expires: Option<String>,
    /// "12 min ago"
    pub last_attempt: Option<String>,
    /// "in 3 days"
    pub next_attempt: Option<String>,
    pub error: Option<String>,
}

pub(crate) fn acme_view(
    a: &cv_control::AcmeStatus,
    now: OffsetDateTime,
    tz: &TimeZone,
) -> Option<AcmeView> {
    if !a.enabled {
        return None;
    }
    Some(AcmeView {
        names: a.names.join(", "),
        challenge: a.challenge.clone(),
        issuer: a.issuer.clone(),
        serial: a.serial.clone(),
        expires: a.not_after.map(|t| date(t, tz)),
        last_attempt: a
            .last_attempt
            .map(|t| format!("{} ago", human_duration(now - t))),
        next_attempt: a.next_attempt.map(|t| {
            if t <= now {
                "now".to_owned()
            } else {
                format!("in {}", human_duration(t - now))
            }
        }),
        error: a.last_error.clone(),
    })
}

#[derive(serde::Deserialize)]
struct SystemQuery {
    /// A snapshot just taken by hand, to name on the card.
    snapshot: Option<String>,
}

/// `GET /system` (`?snapshot=ID` names a snapshot just taken).
async fn system(
    req: actix_web::HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<DashboardPage, WebError> {
    super::require_admin(&user, "see the state of the appliance")?;
    let status = state.status.get().await;
    let now = OffsetDateTime::now_utc();
    let tz = state.time_zone().await;
    let cert = state.tls.info().map(|info| CertView {
        ca_fingerprint: super::trust::ca_info(&state).map(|ca| ca.sha256_fingerprint),
        ..cert_view(&info, now, &tz)
    });
    let mut page = build(
        &user,
        &state.version,
        &state.mode,
        status.as_deref(),
        cert,
        now,
        &tz,
    );
    page.ai = state.ai.view(now);
    // A malformed query string just means no notice.
    let taken = web::Query::<SystemQuery>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.into_inner().snapshot);
    if let (Some(card), Some(taken)) = (page.snapshots.as_mut(), taken) {
        card.taken = super::snapshots::card_taken(taken);
    }
    Ok(page)
}

fn build(
    user: &CurrentUser,
    version: &str,
    mode: &str,
    status: Result<&ApplianceStatus, &String>,
    cert: Option<CertView>,
    now: OffsetDateTime,
    tz: &TimeZone,
) -> DashboardPage {
    let (status, supervisor_error) = match status {
        Ok(status) => (Some(status), None),
        Err(e) => (None, Some(e.clone())),
    };
    DashboardPage {
        can_manage_users: user.user.role.can_manage_users(),
        csrf: user.csrf_token.clone(),
        version: status.map_or_else(|| version.to_owned(), |s| s.version.clone()),
        mode: status.map_or_else(|| mode.to_owned(), |s| s.mode.clone()),
        supervisor_error,
        started: status.map(|s| human_duration(now - s.started_at)),
        components: status
            .map(|s| {
                s.components
                    .iter()
                    .map(|c| component_view(c, now))
                    .collect()
            })
            .unwrap_or_default(),
        disk: status.and_then(|s| s.disk.as_ref()).map(disk_view),
        cert,
        acme: status
            .and_then(|s| s.acme.as_deref())
            .and_then(|a| acme_view(a, now, tz)),
        ai: None,
        update: status
            .and_then(|s| s.update.as_deref())
            .map(|u| update_view(u, now)),
        snapshots: status
            .and_then(|s| s.storage.as_ref())
            .map(|s| super::snapshots::card(s, tz, user.user.role == cv_db::Role::Owner, None)),
        backups: status
            .and_then(|s| s.backup.as_deref())
            .map(|b| super::backups::card(b, tz, now, user.user.role == cv_db::Role::Owner)),
    }
}

pub(crate) fn component_view(c: &ComponentStatus, now: OffsetDateTime) -> ComponentView {
    let tone = match c.state {
        ComponentState::Up => "ok",
        ComponentState::Starting
        | ComponentState::Migrating
        | ComponentState::Restarting
        | ComponentState::Off => "busy",
        // An optional component (LAN discovery, the VPN) that is not up is worth a look,
        // not an alarm: the appliance works without it.
        ComponentState::Stopped | ComponentState::Failed if c.optional => "busy",
        ComponentState::Stopped | ComponentState::Failed => "bad",
    };
    ComponentView {
        name: c.name.clone(),
        state: c.state.as_str(),
        tone,
        for_how_long: human_duration(now - c.since),
        restarts: c.restarts,
        last_error: c.last_error.clone(),
    }
}

pub(crate) fn disk_view(d: &DiskUsage) -> DiskView {
    DiskView {
        data_dir: human_bytes(d.data_dir_bytes),
        filesystem: human_bytes(d.filesystem_bytes),
        available: human_bytes(d.available_bytes),
        used_percent: percent(
            d.filesystem_bytes.saturating_sub(d.available_bytes),
            d.filesystem_bytes,
        ),
    }
}

pub(crate) fn cert_view(info: &CertInfo, now: OffsetDateTime, tz: &TimeZone) -> CertView {
    let days_left = (info.not_after - now).whole_days();
    CertView {
        names: info.names.join(", "),
        issuer: info.issuer.clone(),
        expires: date(info.not_after, tz),
        days_left,
        expiring_soon: days_left < CERT_WARN_DAYS,
        fingerprint: info.sha256_fingerprint.clone(),
        ca_fingerprint: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cv_db::{Role, User, UserId, UserName};
    use std::str::FromStr as _;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-05-01 12:00 UTC);

    fn user(role: Role) -> CurrentUser {
        CurrentUser::for_tests(
            User {
                id: UserId(uuid::Uuid::nil()),
                name: UserName::from_str("alice").unwrap(),
                role,
                created_at: NOW,
                renew_required: false,
            },
            "csrf-token-1".into(),
        )
    }

    fn status() -> ApplianceStatus {
        ApplianceStatus {
            version: "1.2.3".into(),
            mode: "dev".into(),
            started_at: datetime!(2026-05-01 08:48 UTC),
            components: vec![
                ComponentStatus {
                    name: "postgres".into(),
                    state: ComponentState::Up,
                    since: datetime!(2026-05-01 08:48 UTC),
                    restarts: 2,
                    pid: Some(42),
                    last_error: Some("exited with status 1".into()),
                    optional: false,
                },
                ComponentStatus {
                    name: "vault".into(),
                    state: ComponentState::Restarting,
                    since: datetime!(2026-05-01 11:59:30 UTC),
                    restarts: 0,
                    pid: None,
                    last_error: None,
                    optional: false,
                },
            ],
            disk: Some(DiskUsage {
                data_dir_bytes: 5 * 1024 * 1024,
                filesystem_bytes: 1000,
                available_bytes: 250,
            }),
            acme: None,
            update: None,
            storage: None,
            backup: None,
        }
    }

    fn cert() -> CertView {
        cert_view(
            &CertInfo {
                subject: "CN=nas".into(),
                issuer: "CN=Context Vault local CA (nas)".into(),
                not_before: datetime!(2026-01-01 0:00 UTC),
                not_after: datetime!(2026-05-11 13:00 UTC),
                names: vec!["nas".into(), "nas.local".into()],
                sha256_fingerprint: "AB:CD".into(),
            },
            NOW,
            &TimeZone::UTC,
        )
    }

    fn check(html: &str) {
        assert!(!html.contains("style="), "inline style");
        assert!(!html.contains("<script"), "script");
    }

    #[test]
    fn the_dashboard_shows_the_acme_certificate_and_its_last_error() {
        let mut status = status();
        status.acme = Some(Box::new(cv_control::AcmeStatus {
            enabled: true,
            names: vec!["vault.example.org".into()],
            challenge: "dns-01".into(),
            directory_url: "https://ca.example/dir".into(),
            issuer: Some("CN=Pebble Intermediate".into()),
            serial: Some("0AFF".into()),
            not_before: Some(datetime!(2026-04-01 0:00 UTC)),
            not_after: Some(datetime!(2026-06-30 0:00 UTC)),
            last_attempt: Some(datetime!(2026-05-01 11:50 UTC)),
            last_error: Some("ACME: cannot reach the directory: <refused>".into()),
            last_error_kind: Some("ca_unreachable".into()),
            next_attempt: Some(datetime!(2026-05-01 12:10 UTC)),
        }));
        let page = build(
            &user(Role::Owner),
            "0",
            "x",
            Ok(&status),
            Some(cert()),
            NOW,
            &TimeZone::UTC,
        );
        let html = page.render().unwrap();
        check(&html);
        for text in [
            "vault.example.org",
            "dns-01",
            "CN=Pebble Intermediate",
            "0AFF",
            "2026-06-30",
            "10 min ago",
            "in 10 min",
            "cannot reach the directory: ",
        ] {
            assert!(html.contains(text), "{text} missing");
        }
        // The error is text, escaped like everything else.
        assert!(!html.contains("<refused>"));
    }

    fn update_status(phase: &str) -> cv_control::UpdateStatus {
        cv_control::UpdateStatus {
            enabled: true,
            slot: Some("B".into()),
            compatible: Some("contextvault-x86_64".into()),
            phase: phase.into(),
            last_check: Some(datetime!(2026-05-01 11:50 UTC)),
            next_check: Some(datetime!(2026-05-02 11:50 UTC)),
            ..cv_control::UpdateStatus::idle("0.1.1")
        }
    }

    fn render_with(update: cv_control::UpdateStatus) -> String {
        let mut status = status();
        status.update = Some(Box::new(update));
        let html = build(
            &user(Role::Owner),
            "0",
            "x",
            Ok(&status),
            Some(cert()),
            NOW,
            &TimeZone::UTC,
        )
        .render()
        .unwrap();
        check(&html);
        html
    }

    #[test]
    fn the_updates_card_says_why_an_update_was_rolled_back_and_offers_a_retry() {
        let mut update = update_status("idle");
        update.message = Some(
            "Update to 0.1.2 failed: an AI worker could not be started: <no model> — rolled \
             back to 0.1.1"
                .into(),
        );
        update.problem = true;
        update.failed_versions = vec!["0.1.2".into()];
        let html = render_with(update);
        for text in [
            "root slot B",
            "10 min ago",
            "Update to 0.1.2 failed: an AI worker could not be started",
            "alert-warn",
            "action=\"/system/update/check\"",
            "action=\"/system/update/retry\"",
            "name=\"version\" value=\"0.1.2\"",
            "Try 0.1.2 again",
        ] {
            assert!(html.contains(text), "{text} missing");
        }
        assert!(!html.contains("<no model>"), "the reason is escaped");
        assert!(!html.contains("/system/update/restart"));
    }

    #[test]
    fn the_updates_card_shows_progress_and_offers_a_restart_when_ready() {
        let mut update = update_status("downloading");
        update.target = Some("0.2.0".into());
        update.downloaded_bytes = Some(150 * 1024 * 1024);
        update.total_bytes = Some(300 * 1024 * 1024);
        let html = render_with(update);
        assert!(html.contains("Downloading 0.2.0: 50 %"), "{html}");

        let mut update = update_status("ready");
        update.target = Some("0.2.0".into());
        update.reboot_window = Some("03:00-05:00".into());
        let html = render_with(update);
        assert!(html.contains("Update 0.2.0 is installed."), "{html}");
        assert!(html.contains("action=\"/system/update/restart\""));
        assert!(html.contains("03:00-05:00"));

        let mut update = update_status("idle");
        update.enabled = false;
        update.off_reason = Some("no update repository is configured (update.repository)".into());
        let html = render_with(update);
        assert!(html.contains("This box does not update itself: no update repository"));
        assert!(!html.contains("/system/update/check"));
    }

    #[test]
    fn the_dashboard_shows_components_disk_and_certificate() {
        let status = status();
        let page = build(
            &user(Role::Owner),
            "0",
            "x",
            Ok(&status),
            Some(cert()),
            NOW,
            &TimeZone::UTC,
        );
        let html = page.render().unwrap();
        check(&html);
        for text in [
            "postgres",
            "3 h 12 min",
            "exited with status 1",
            "restarting",
            "30 s",
            "1.2.3",
            "5.0 MiB",
            "75%",
            "nas, nas.local",
            "2026-05-11",
            "10 days",
            "AB:CD",
            r#"href="/trust""#,
            r#"href="/users""#,
            r#"action="/logout""#,
            r#"name="csrf" value="csrf-token-1""#,
        ] {
            assert!(html.contains(text), "{text} missing");
        }
    }

    #[test]
    fn the_local_ai_card_shows_workers_their_jail_and_the_last_error() {
        use crate::ai::{AiView, WorkerView};
        let status = status();
        let mut page = build(
            &user(Role::Owner),
            "0",
            "x",
            Ok(&status),
            None,
            NOW,
            &TimeZone::UTC,
        );
        let html = page.render().unwrap();
        assert!(
            html.contains("<code>workers.count</code> is 0"),
            "off by default"
        );
        let worker = |slot, missing: Vec<(String, String)>| WorkerView {
            slot,
            state: "ready",
            tone: "ok",
            id: Some(slot as u64 + 6),
            pid: Some(4242),
            provider: Some("cpu".into()),
            provider_note: (slot == 2)
                .then(|| "CUDA is not usable: libcuda.so.1 is missing".into()),
            served: 1,
            running_for: Some("2 min".into()),
            next_try_in: None,
            jail_missing: Some(missing),
            devices: (slot == 1).then(|| {
                "/dev/null, /dev/zero, /dev/full, /dev/random, /dev/urandom; \
                 asked for: /dev/nvidia0, /dev/nvidiactl, /dev/nvidia-uvm"
                    .to_owned()
            }),
        };
        page.ai = Some(AiView {
            state: "up",
            tone: "ok",
            workers: vec![
                worker(1, vec![]),
                worker(
                    2,
                    vec![("memory limit".into(), "no cgroup hierarchy found".into())],
                ),
            ],
            served: 12,
            restarts: 1,
            recycled: 3,
            last_error: Some((
                "worker 5 was killed by the out-of-memory killer".into(),
                "4 min".into(),
            )),
        });
        let html = page.render().unwrap();
        check(&html);
        for text in [
            "Worker 1 (#7, pid 4242)",
            "on cpu",
            "on cpu (CUDA is not usable: libcuda.so.1 is missing) · ",
            "1 request",
            "every protection in force",
            "<strong>memory limit</strong>: no cgroup hierarchy found",
            "Requests answered: 12",
            "replaced after a failure: 1",
            "recycled: 3",
            "Last error (4 min ago): worker 5 was killed by the out-of-memory killer",
        ] {
            assert!(html.contains(text), "{text} missing");
        }
        // Only the worker with a GPU's nodes gets the devices line.
        assert_eq!(
            html.matches("Devices in its jail: /dev/null, /dev/zero, /dev/full, /dev/random, /dev/urandom; asked for: /dev/nvidia0")
                .count(),
            1,
            "{html}"
        );
    }

    #[test]
    fn an_unreachable_supervisor_is_shown_not_fatal() {
        let err = "cannot reach the supervisor at /run/cv.sock".to_owned();
        let page = build(
            &user(Role::Member),
            "0.1.0",
            "dev",
            Err(&err),
            None,
            NOW,
            &TimeZone::UTC,
        );
        let html = page.render().unwrap();
        check(&html);
        assert!(html.contains("cannot reach the supervisor"));
        assert!(html.contains("0.1.0"));
        assert!(html.contains("not measured yet"));
        assert!(
            !html.contains(r#"href="/users""#),
            "members do not manage users"
        );
    }

    fn render_storage(role: Role, storage: cv_control::StorageStatus) -> String {
        let mut status = status();
        status.storage = Some(storage);
        let html = build(
            &user(role),
            "0",
            "x",
            Ok(&status),
            None,
            NOW,
            &TimeZone::UTC,
        )
        .render()
        .unwrap();
        check(&html);
        html
    }

    fn btrfs_storage() -> cv_control::StorageStatus {
        cv_control::StorageStatus {
            backend: "btrfs".into(),
            unavailable: None,
            newest: Some("20260501T110000Z-hourly.daily".into()),
            count: 4,
            problem: None,
            busy: None,
        }
    }

    #[test]
    fn the_snapshots_card_shows_the_newest_and_offers_the_owner_a_snapshot() {
        let html = render_storage(Role::Owner, btrfs_storage());
        for text in [
            r#"id="snapshots""#,
            "<dd>btrfs</dd>",
            "<dd>4</dd>",
            "2026-05-01 11:00 UTC (hourly, daily)",
            r#"href="/system/snapshots""#,
            "Snapshots and restore",
            r#"action="/system/snapshots/create""#,
            r#"name="reason""#,
            "Take a snapshot now",
        ] {
            assert!(html.contains(text), "{text} missing: {html}");
        }
        assert!(!html.contains("The last snapshot failed"));
        // Admins see the card, not the button or the restore page.
        let html = render_storage(Role::Admin, btrfs_storage());
        assert!(html.contains("2026-05-01 11:00 UTC (hourly, daily)"));
        assert!(html.contains("Only the owner can take and restore snapshots."));
        assert!(!html.contains("/system/snapshots"));
    }

    #[test]
    fn a_failed_snapshot_is_never_silent() {
        let mut storage = btrfs_storage();
        storage.problem = Some("btrfs subvolume snapshot: <no space left>".into());
        storage.busy = Some("snapshot".into());
        let html = render_storage(Role::Admin, storage);
        assert!(html.contains("alert-warn"), "{html}");
        assert!(html.contains("The last snapshot failed: btrfs subvolume snapshot: "));
        assert!(!html.contains("<no space left>"), "escaped");
        assert!(html.contains("A snapshot is being taken now."));
    }

    #[test]
    fn the_snapshots_card_on_a_plain_data_directory_says_why_there_are_none() {
        let storage = cv_control::StorageStatus {
            backend: "plain".into(),
            unavailable: Some("/srv/cv is on ext4, which cannot take snapshots".into()),
            newest: None,
            count: 0,
            problem: None,
            busy: None,
        };
        let html = render_storage(Role::Owner, storage);
        assert!(
            html.contains("No snapshots: /srv/cv is on ext4, which cannot take snapshots."),
            "{html}"
        );
        assert!(!html.contains("Take a snapshot now"));
    }

    fn render_backup(role: Role, backup: cv_control::BackupStatus) -> String {
        let mut status = status();
        status.backup = Some(Box::new(backup));
        let html = build(
            &user(role),
            "0",
            "x",
            Ok(&status),
            None,
            NOW,
            &TimeZone::UTC,
        )
        .render()
        .unwrap();
        check(&html);
        html
    }

    fn backups_set_up() -> cv_control::BackupStatus {
        cv_control::BackupStatus {
            repository: Some("rest:http://nas.local:8000/vault/".into()),
            initialised: true,
            next_at: Some("2026-05-02T03:00:00Z".into()),
            ..cv_control::BackupStatus::default()
        }
    }

    #[test]
    fn the_backups_card_says_how_to_set_backups_up() {
        let html = render_backup(Role::Owner, cv_control::BackupStatus::default());
        assert!(html.contains(r#"id="backups""#), "{html}");
        assert!(html.contains(
            "No off-box backups: set `[backup] repository` in the config, then run \
             `contextvault admin backup init`."
        ));
        assert!(!html.contains("/system/backup/run"));
        assert!(!html.contains("Next backup"));

        let backup = cv_control::BackupStatus {
            initialised: false,
            ..backups_set_up()
        };
        let html = render_backup(Role::Owner, backup);
        assert!(html.contains("rest:http://nas.local:8000/vault/"));
        assert!(html.contains("Set up but no key yet: run `contextvault admin backup init`."));
        assert!(!html.contains("/system/backup/run"));
        assert!(!html.contains("Back up now"));
    }

    #[test]
    fn the_backups_card_shows_the_last_and_next_backup_and_offers_the_owner_one() {
        let backup = cv_control::BackupStatus {
            last_success_at: Some("2026-05-01T03:00:12Z".into()),
            last_snapshot: Some("4f2a9c1e".into()),
            last_added_bytes: Some(3 * 1024 * 1024 / 2),
            last_seconds: Some(754.2),
            ..backups_set_up()
        };
        let html = render_backup(Role::Owner, backup.clone());
        for text in [
            "<dd class=\"code\">rest:http://nas.local:8000/vault/</dd>",
            "<dd>2026-05-01 03:00 UTC</dd>",
            "4f2a9c1e",
            "<dd>1.5 MiB</dd>",
            "<dd>12 min</dd>",
            "2026-05-02 03:00 UTC (in 15 h 0 min)",
            r#"action="/system/backup/run""#,
            "Back up now",
        ] {
            assert!(html.contains(text), "{text} missing: {html}");
        }
        assert!(!html.contains("role=\"alert\""));
        assert!(!html.contains("<progress"));
        // Admins see the card, not the button.
        let html = render_backup(Role::Admin, backup);
        assert!(html.contains("4f2a9c1e"));
        assert!(html.contains("Only the owner can start a backup."));
        assert!(!html.contains("/system/backup/run"));
    }

    #[test]
    fn a_running_backup_shows_its_progress() {
        let backup = cv_control::BackupStatus {
            running: true,
            percent: Some(0.425),
            bytes_done: Some(425 * 1024 * 1024),
            total_bytes: Some(1000 * 1024 * 1024),
            ..backups_set_up()
        };
        let html = render_backup(Role::Owner, backup);
        for text in [
            r#"<progress class="meter" aria-labelledby="backup-progress-text" max="100" value="42">"#,
            "42 % — 425.0 MiB of 1000.0 MiB",
            r#"<a href="/system#backups">Refresh</a>"#,
            "<dd>none yet</dd>",
        ] {
            assert!(html.contains(text), "{text} missing: {html}");
        }
        assert!(!html.contains("Back up now"), "one backup at a time");
    }

    #[test]
    fn a_failed_backup_is_never_silent() {
        let backup = cv_control::BackupStatus {
            problem: Some("the last backup failed: restic: <repository is locked>".into()),
            ..backups_set_up()
        };
        let html = render_backup(Role::Admin, backup);
        assert!(
            html.contains(
                r#"<p class="alert alert-warn" role="alert">The last backup failed: restic: "#
            ),
            "{html}"
        );
        assert!(!html.contains("<repository is locked>"), "escaped");
    }

    #[test]
    fn expiring_certificates_are_flagged() {
        assert_eq!(cert().days_left, 10);
        assert!(cert().expiring_soon);
    }
}
