//! Accepting an invitation: the invited person opens the one-time link on their own
//! device, chooses their own passphrase, and gets their own vault and recovery key. The
//! inviter sees neither; the link stops working once used (`cv_db::invitations`).

use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use cv_crypto::{SecretToken, hash_password};
use cv_db::audit::Event;
use cv_db::invitations;
use cv_db::models::CreateUserError;
use serde::Deserialize;
use time::OffsetDateTime;
use tracing::{info, warn};

use super::vault::{RecoveryPage, new_vault, show_recovery};
use super::{FormError, peer_ip, render_prelogin};
use crate::error::WebError;
use crate::format::date_time;
use crate::session::{self, check_prelogin_csrf};
use crate::state::AppState;

pub(super) fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/invite/{id}", web::get().to(invite_page))
        .route("/invite/{id}", web::post().to(accept));
}

#[derive(Debug, Template)]
#[template(path = "invite.html")]
pub(crate) struct InvitePage {
    pub csrf: String,
    /// The link's own path, which the form posts back to.
    pub action: String,
    pub name: String,
    pub role: &'static str,
    pub invited_by: String,
    pub expires: String,
    pub error: Option<FormError>,
}

/// The invitation a link names, if it still works; throttled per address like logins,
/// so that links cannot be guessed (they hold 256 random bits anyway).
async fn open_invitation(
    req: &HttpRequest,
    state: &AppState,
    token: &str,
) -> Result<(SecretToken, invitations::Invitation), WebError> {
    let ip = peer_ip(req);
    if let Err(retry_after) = state.throttle().check_address(ip, Instant::now()) {
        return Err(WebError::Throttled { retry_after });
    }
    let secret = SecretToken::from_client(token);
    let found = {
        let mut conn = state.conn().await?;
        match invitations::find_open(&mut conn, &secret.digest(), OffsetDateTime::now_utc()).await {
            Ok(found) => found,
            Err(e) => return Err(state.db_error(e).await),
        }
    };
    match found {
        Some(invitation) => Ok((secret, invitation)),
        None => {
            state.throttle().record_address_failure(ip, Instant::now());
            info!(%ip, "an invitation link that does not work was opened");
            Err(WebError::InvitationInvalid)
        }
    }
}

/// `GET /invite/{token}`: who invited whom, and the form to choose a passphrase.
async fn invite_page(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, WebError> {
    let (_, invitation) = open_invitation(&req, &state, &path).await?;
    let tz = state.time_zone().await;
    show(&req, &invitation, &tz, StatusCode::OK, None)
}

fn show(
    req: &HttpRequest,
    invitation: &invitations::Invitation,
    tz: &jiff::tz::TimeZone,
    status: StatusCode,
    error: Option<&WebError>,
) -> Result<HttpResponse, WebError> {
    render_prelogin(req, status, |csrf| InvitePage {
        csrf,
        action: req.path().to_owned(),
        name: invitation.name.to_string(),
        role: invitation.role.as_str(),
        invited_by: invitation.invited_by_name.clone(),
        expires: date_time(invitation.expires_at, tz),
        error: error.map(FormError::of),
    })
}

#[derive(Deserialize)]
struct AcceptForm {
    passphrase: String,
    passphrase_confirm: String,
    csrf: String,
}

/// `POST /invite/{token}`: creates the account with the passphrase its holder chose,
/// logs them in and shows their recovery key, once.
async fn accept(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    form: web::Form<AcceptForm>,
) -> Result<HttpResponse, WebError> {
    let form = form.into_inner();
    check_prelogin_csrf(&req, &form.csrf)?;
    let (secret, invitation) = open_invitation(&req, &state, &path).await?;
    let passphrase = match super::account::new_passphrase(form.passphrase, &form.passphrase_confirm)
    {
        Ok(p) => p,
        Err(e) => {
            let tz = state.time_zone().await;
            return show(&req, &invitation, &tz, StatusCode::BAD_REQUEST, Some(&e));
        }
    };
    let for_hash = passphrase.clone();
    let password_hash = web::block(move || hash_password(&for_hash))
        .await?
        .map_err(|e| WebError::internal("hashing a new member's passphrase", e))?;
    let (bundle, vault, recovery) = new_vault(passphrase).await?;
    let now = OffsetDateTime::now_utc();
    let accepted = {
        let mut conn = state.conn().await?;
        invitations::accept(
            &mut conn,
            secret.digest(),
            now,
            password_hash,
            bundle.to_bytes(),
        )
        .await
    };
    let (user, invitation) = match accepted {
        Ok(Some(accepted)) => accepted,
        // Used, withdrawn or expired between the two queries.
        Ok(None) => return Err(WebError::InvitationInvalid),
        Err(CreateUserError::NameTaken(name)) => {
            warn!(user = %name, "an invitation names an account that exists now");
            return Err(WebError::Conflict(format!(
                "An account named {name} exists already. Ask whoever invited you for an invitation under another name."
            )));
        }
        Err(CreateUserError::OwnerExists) => return Err(WebError::InvitationInvalid),
        Err(CreateUserError::Db(e)) => return Err(state.db_error(e).await),
    };
    let ip = peer_ip(&req);
    info!(user = %user.name, role = %user.role, by = %invitation.invited_by_name, %ip, "invitation accepted: account created");
    super::vault::now_unlocked(&state, user.id, vault, now).await?;
    let cookie = session::start(&state, user.id).await?;
    state
        .audit(
            invitation.invited_by,
            Event::InvitationAccepted,
            &format!("{} joined as {}", user.name, user.role),
            Some(ip),
        )
        .await;
    state
        .audit(
            user.id,
            Event::InvitationAccepted,
            &format!(
                "joined as {}, invited by {}",
                user.role, invitation.invited_by_name
            ),
            Some(ip),
        )
        .await;
    show_recovery(
        &RecoveryPage::new(&recovery, super::notes::home_for(&req)),
        Some(cookie),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_invitation_page_names_who_invited_whom_and_asks_for_a_passphrase() {
        let html = InvitePage {
            csrf: "tok".into(),
            action: "/invite/abc".into(),
            name: "bob".into(),
            role: "member",
            invited_by: "<alice>".into(),
            expires: "2026-12-10 09:00".into(),
            error: Some(FormError::of(&WebError::InvalidInput(
                "The two new passphrases do not match.".into(),
            ))),
        }
        .render()
        .unwrap();
        assert!(!html.contains("<script"));
        assert!(!html.contains("<alice>"), "names are escaped");
        for text in [
            r#"action="/invite/abc""#,
            r#"name="passphrase""#,
            r#"name="passphrase_confirm""#,
            r#"name="csrf" value="tok""#,
            r#"value="bob""#,
            "2026-12-10 09:00",
            "do not match",
            "nobody else",
        ] {
            assert!(html.contains(text), "{text} missing from {html}");
        }
    }
}
