//! The appliance's settings (the owner only): the time zone every page shows times in.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use cv_db::Role;
use serde::Deserialize;
use tracing::info;

use super::{FormError, render, see_other};
use crate::error::WebError;
use crate::format::date_time;
use crate::session::CurrentUser;
use crate::state::AppState;

pub(super) fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/settings", web::get().to(show))
        .route("/settings", web::post().to(save));
}

#[derive(Debug, Template)]
#[template(path = "settings.html")]
pub(crate) struct SettingsPage {
    pub csrf: String,
    pub can_manage_users: bool,
    /// The zone in force (IANA name), or the one just typed when the form is re-shown.
    pub time_zone: String,
    /// The time now in the zone in force, as pages show it: "2026-03-14 15:04 CET".
    pub now_there: String,
    pub saved: bool,
    pub error: Option<FormError>,
}

impl SettingsPage {
    /// The time zones to pick from.
    pub fn zones(&self) -> &'static [String] {
        crate::zone::names()
    }
}

#[derive(Deserialize)]
struct SavedQuery {
    saved: Option<String>,
}

#[derive(Deserialize)]
struct SettingsForm {
    csrf: String,
    time_zone: String,
}

fn require_owner(user: &CurrentUser) -> Result<(), WebError> {
    if matches!(user.user.role, Role::Owner) {
        Ok(())
    } else {
        Err(WebError::Forbidden(
            "Only the owner can change the appliance's settings.".into(),
        ))
    }
}

async fn page(
    state: &AppState,
    user: &CurrentUser,
    status: StatusCode,
    typed: Option<String>,
    saved: bool,
    error: Option<&WebError>,
) -> Result<HttpResponse, WebError> {
    let tz = state.time_zone().await;
    render(
        status,
        &SettingsPage {
            csrf: user.csrf_token.clone(),
            can_manage_users: user.user.role.can_manage_users(),
            time_zone: typed.unwrap_or_else(|| crate::zone::name(&tz).to_owned()),
            now_there: date_time(time::OffsetDateTime::now_utc(), &tz),
            saved,
            error: error.map(FormError::of),
        },
    )
}

/// `GET /settings`.
async fn show(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, WebError> {
    require_owner(&user)?;
    let saved =
        web::Query::<SavedQuery>::from_query(req.query_string()).is_ok_and(|q| q.saved.is_some());
    page(&state, &user, StatusCode::OK, None, saved, None).await
}

/// `POST /settings`: checks the zone against the bundled tz database, stores it, and
/// uses it from the next page on.
async fn save(
    user: CurrentUser,
    state: web::Data<AppState>,
    form: web::Form<SettingsForm>,
) -> Result<HttpResponse, WebError> {
    let form = form.into_inner();
    user.check_csrf(&form.csrf)?;
    require_owner(&user)?;
    let tz = match crate::zone::parse(&form.time_zone) {
        Ok(tz) => tz,
        Err(e) => {
            return page(
                &state,
                &user,
                StatusCode::BAD_REQUEST,
                Some(form.time_zone),
                false,
                Some(&e),
            )
            .await;
        }
    };
    let name = crate::zone::name(&tz);
    {
        let mut conn = state.conn().await?;
        if let Err(e) = cv_db::settings::set_time_zone(&mut conn, name).await {
            return Err(state.db_error(e).await);
        }
    }
    state.zone.set(tz.clone());
    info!(by = %user.user.name, zone = name, "time zone changed");
    Ok(see_other("/settings?saved=1").finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_page_offers_every_zone_with_the_current_one_selected() {
        let html = SettingsPage {
            csrf: "tok".into(),
            can_manage_users: true,
            time_zone: "America/New_York".into(),
            now_there: "2026-03-14 11:04 EDT".into(),
            saved: true,
            error: Some(FormError::of(&WebError::InvalidInput(
                "Unknown time zone \"Mars/Base\"".into(),
            ))),
        }
        .render()
        .unwrap();
        for text in [
            r#"action="/settings""#,
            r#"name="csrf" value="tok""#,
            r#"<option value="America/New_York" selected>"#,
            r#"<option value="Europe/Berlin">"#,
            "2026-03-14 11:04 EDT",
            "Saved",
            "Unknown time zone",
        ] {
            assert!(html.contains(text), "{text} missing in {html}");
        }
        assert!(!html.contains("style="));
    }
}
