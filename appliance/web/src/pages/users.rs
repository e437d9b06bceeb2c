//! The household: the owner and admins list its accounts, invite new members, withdraw
//! invitations, change roles and remove members.
//!
//! Nobody chooses another person's passphrase here. An invitation is a one-time link
//! (and its QR code) that the invited person opens on their own device, where they choose
//! their own passphrase and see their own recovery key (`super::invite`); the inviter
//! learns neither. Removing a member deletes their account, vault keys, items (and so
//! their data keys: crypto-shredding), tokens and sessions, after the remover types the
//! member's name; it is recorded in the remover's activity log.

use std::str::FromStr as _;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use cv_crypto::SecretToken;
use cv_db::audit::Event;
use cv_db::invitations::{self, Invitation, InviteError};
use cv_db::{Role, User, UserId, UserName};
use serde::Deserialize;
use time::{Duration, OffsetDateTime};
use tracing::info;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::{FormError, peer_ip, render, see_other};
use crate::error::WebError;
use crate::format::{date, date_time};
use crate::session::CurrentUser;
use crate::state::AppState;

pub(super) fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/users", web::get().to(list))
        .route("/users/invite", web::post().to(invite))
        .route(
            "/users/invitations/revoke",
            web::post().to(revoke_invitation),
        )
        .route("/users/invitations/clear", web::post().to(clear_invitation))
        .route("/users/role", web::post().to(change_role))
        .route("/users/remove", web::post().to(remove));
}

/// How long an invitation works unless the inviter picks otherwise: 72 hours, long
/// enough to reach someone over a weekend, short enough that a forgotten link in a chat
/// history stops working soon.
pub const DEFAULT_INVITATION_HOURS: i64 = 72;
/// The lifetimes the form offers, in hours.
const INVITATION_HOURS: [i64; 3] = [24, DEFAULT_INVITATION_HOURS, 7 * 24];

#[derive(Debug, Template)]
#[template(path = "users.html")]
pub(crate) struct UsersPage {
    pub me: String,
    pub csrf: String,
    pub users: Vec<UserRow>,
    pub invitations: Vec<InvitationRow>,
    /// What the last action did, as a sentence.
    pub notice: Option<String>,
    pub error: Option<FormError>,
    /// The invite form's values when it is re-shown.
    pub form_name: String,
    pub form_role: &'static str,
    /// A new invitation, shown once (its link holds the secret).
    pub invited: Option<InvitedView>,
}

#[derive(Debug, Clone)]
pub(crate) struct UserRow {
    pub id: String,
    pub name: String,
    pub role: &'static str,
    pub created: String,
    /// Still has a passphrase someone else chose.
    pub renew_required: bool,
    /// Whether the viewer may change this account's role (owner only, never the owner's).
    pub role_changeable: bool,
    /// Whether the viewer may remove this account.
    pub removable: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct InvitationRow {
    pub id: String,
    pub name: String,
    pub role: &'static str,
    pub invited_by: String,
    /// "open until …", "expired …" or "revoked …".
    pub state: String,
    pub open: bool,
}

/// A new invitation's link and QR code, shown once.
#[derive(Debug)]
pub(crate) struct InvitedView {
    pub name: String,
    pub role: &'static str,
    pub link: Zeroizing<String>,
    pub qr_svg: Zeroizing<String>,
    pub expires: String,
}

/// `GET /users` (`?notice=` after an action).
async fn list(
    user: CurrentUser,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, WebError> {
    super::require_admin(&user, "manage the household")?;
    #[derive(Deserialize)]
    struct Query {
        removed: Option<String>,
        revoked: Option<String>,
        role: Option<String>,
    }
    let q = web::Query::<Query>::from_query(req.query_string()).ok();
    let named = |v: Option<&String>| v.and_then(|n| UserName::from_str(n).ok());
    let notice = q.and_then(|q| {
        if let Some(n) = named(q.removed.as_ref()) {
            Some(format!(
                "Removed {n}: their vault and everything in it are gone."
            ))
        } else if let Some(n) = named(q.revoked.as_ref()) {
            Some(format!("The invitation for {n} no longer works."))
        } else {
            named(q.role.as_ref()).map(|n| format!("Changed the role of {n}."))
        }
    });
    show(
        &state,
        &user,
        StatusCode::OK,
        Parts {
            notice,
            ..Parts::default()
        },
    )
    .await
}

/// What a re-shown page carries besides the lists.
#[derive(Default)]
struct Parts {
    notice: Option<String>,
    error: Option<WebError>,
    form_name: String,
    form_role: Option<Role>,
    invited: Option<InvitedView>,
}

async fn show(
    state: &AppState,
    user: &CurrentUser,
    status: StatusCode,
    parts: Parts,
) -> Result<HttpResponse, WebError> {
    let (users, invitations) = {
        let mut conn = state.conn().await?;
        let users = match User::list(&mut conn).await {
            Ok(users) => users,
            Err(e) => return Err(state.db_error(e).await),
        };
        match invitations::list(&mut conn).await {
            Ok(invitations) => (users, invitations),
            Err(e) => return Err(state.db_error(e).await),
        }
    };
    let now = OffsetDateTime::now_utc();
    let tz = state.time_zone().await;
    let page = UsersPage {
        me: user.user.name.to_string(),
        csrf: user.csrf_token.clone(),
        users: users.iter().map(|u| row(user, u, &tz)).collect(),
        invitations: invitations
            .iter()
            .map(|i| invitation_row(i, now, &tz))
            .collect(),
        notice: parts.notice,
        error: parts.error.as_ref().map(FormError::of),
        form_name: parts.form_name,
        form_role: parts.form_role.unwrap_or(Role::Member).as_str(),
        invited: parts.invited,
    };
    render(status, &page)
}

fn row(viewer: &CurrentUser, u: &User, tz: &jiff::tz::TimeZone) -> UserRow {
    UserRow {
        id: u.id.to_string(),
        name: u.name.to_string(),
        role: u.role.as_str(),
        created: date(u.created_at, tz),
        renew_required: u.renew_required,
        role_changeable: viewer.user.role == Role::Owner && u.role != Role::Owner,
        removable: may_remove(viewer.user.role, u.role) && u.id != viewer.user.id,
    }
}

fn invitation_row(i: &Invitation, now: OffsetDateTime, tz: &jiff::tz::TimeZone) -> InvitationRow {
    let state = match i.revoked_at {
        Some(at) => format!("withdrawn {}", date_time(at, tz)),
        None if now >= i.expires_at => format!("expired {}", date_time(i.expires_at, tz)),
        None => format!("open until {}", date_time(i.expires_at, tz)),
    };
    InvitationRow {
        id: i.id.to_string(),
        name: i.name.to_string(),
        role: i.role.as_str(),
        invited_by: i.invited_by_name.clone(),
        state,
        open: i.is_open(now),
    }
}

/// Whether someone with role `by` may remove an account with role `target`: the owner
/// anyone but themselves, admins only members; the owner's account never.
fn may_remove(by: Role, target: Role) -> bool {
    match (by, target) {
        (_, Role::Owner) => false,
        (Role::Owner, _) => true,
        (Role::Admin, Role::Member) => true,
        _ => false,
    }
}

/// Roles that can be given from the forms; there is exactly one owner, made at setup.
fn parse_role(text: &str) -> Option<Role> {
    match text {
        "admin" => Some(Role::Admin),
        "member" => Some(Role::Member),
        _ => None,
    }
}

#[derive(Deserialize)]
struct InviteForm {
    name: String,
    role: String,
    #[serde(default)]
    hours: Option<String>,
    csrf: String,
}

/// `POST /users/invite`: makes a one-time invitation and shows its link once.
async fn invite(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    form: web::Form<InviteForm>,
) -> Result<HttpResponse, WebError> {
    let form = form.into_inner();
    user.check_csrf(&form.csrf)?;
    super::require_admin(&user, "invite household members")?;
    let role = parse_role(&form.role);
    let again = |err: WebError, status| {
        let parts = Parts {
            error: Some(err),
            form_name: form.name.clone(),
            form_role: role,
            ..Parts::default()
        };
        show(&state, &user, status, parts)
    };
    let Some(role) = role else {
        let err = WebError::InvalidInput("The role must be admin or member.".into());
        return again(err, StatusCode::BAD_REQUEST).await;
    };
    let name = match UserName::from_str(&form.name) {
        Ok(name) => name,
        Err(e) => {
            let err = WebError::InvalidInput(format!("Please choose another name: {e}."));
            return again(err, StatusCode::BAD_REQUEST).await;
        }
    };
    let hours = match form.hours.as_deref().map(str::parse::<i64>) {
        None => DEFAULT_INVITATION_HOURS,
        Some(Ok(h)) if INVITATION_HOURS.contains(&h) => h,
        Some(_) => {
            let err =
                WebError::InvalidInput("Pick how long the invitation works from the list.".into());
            return again(err, StatusCode::BAD_REQUEST).await;
        }
    };
    let secret = SecretToken::generate();
    let expires_at = OffsetDateTime::now_utc() + Duration::hours(hours);
    let created = {
        let mut conn = state.conn().await?;
        invitations::create(
            &mut conn,
            &secret.digest(),
            &name,
            role,
            user.user.id,
            expires_at,
        )
        .await
    };
    let invitation = match created {
        Ok(invitation) => invitation,
        Err(InviteError::NameTaken(name)) => {
            let err = WebError::Conflict(format!(
                "A user named {name} already exists. Please choose another name."
            ));
            return again(err, StatusCode::CONFLICT).await;
        }
        Err(InviteError::AlreadyInvited(name)) => {
            let err = WebError::Conflict(format!(
                "{name} already has an open invitation: withdraw it first to send a new one."
            ));
            return again(err, StatusCode::CONFLICT).await;
        }
        Err(InviteError::OwnerRole) => {
            let err = WebError::InvalidInput("The role must be admin or member.".into());
            return again(err, StatusCode::BAD_REQUEST).await;
        }
        Err(InviteError::Db(e)) => return Err(state.db_error(e).await),
    };
    let link = Zeroizing::new(format!(
        "{}/invite/{}",
        super::origin_of(&req),
        secret.expose()
    ));
    let qr_svg = super::qr_code_svg(&link)?;
    info!(by = %user.user.name, invited = %invitation.name, role = %role, hours, "invitation made");
    state
        .audit(
            user.user.id,
            Event::InvitationCreated,
            &format!("{} as {role}, for {hours} hours", invitation.name),
            Some(peer_ip(&req)),
        )
        .await;
    let parts = Parts {
        invited: Some(InvitedView {
            name: invitation.name.to_string(),
            role: role.as_str(),
            link,
            qr_svg,
            expires: date_time(invitation.expires_at, &state.time_zone().await),
        }),
        ..Parts::default()
    };
    show(&state, &user, StatusCode::OK, parts).await
}

#[derive(Deserialize)]
struct InvitationForm {
    id: String,
    csrf: String,
}

fn parse_uuid(text: &str) -> Result<Uuid, WebError> {
    Uuid::parse_str(text).map_err(|_| WebError::BadRequest("That is not a valid id.".into()))
}

/// `POST /users/invitations/revoke`: the link stops working at once.
async fn revoke_invitation(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    form: web::Form<InvitationForm>,
) -> Result<HttpResponse, WebError> {
    user.check_csrf(&form.csrf)?;
    super::require_admin(&user, "withdraw invitations")?;
    let id = parse_uuid(&form.id)?;
    let revoked = {
        let mut conn = state.conn().await?;
        match invitations::revoke(&mut conn, id).await {
            Ok(revoked) => revoked,
            Err(e) => return Err(state.db_error(e).await),
        }
    };
    let Some(invitation) = revoked else {
        return Err(WebError::Conflict(
            "That invitation is no longer open (accepted, withdrawn or expired).".into(),
        ));
    };
    info!(by = %user.user.name, invited = %invitation.name, "invitation withdrawn");
    state
        .audit(
            user.user.id,
            Event::InvitationRevoked,
            invitation.name.as_str(),
            Some(peer_ip(&req)),
        )
        .await;
    Ok(see_other(&format!("/users?revoked={}", invitation.name)).finish())
}

/// `POST /users/invitations/clear`: removes a withdrawn or expired invitation from the list.
async fn clear_invitation(
    user: CurrentUser,
    state: web::Data<AppState>,
    form: web::Form<InvitationForm>,
) -> Result<HttpResponse, WebError> {
    user.check_csrf(&form.csrf)?;
    super::require_admin(&user, "manage invitations")?;
    let id = parse_uuid(&form.id)?;
    let mut conn = state.conn().await?;
    match invitations::clear(&mut conn, id).await {
        Ok(true) => Ok(see_other("/users").finish()),
        Ok(false) => Err(WebError::Conflict(
            "Only a withdrawn or expired invitation can be cleared; withdraw it first.".into(),
        )),
        Err(e) => Err(state.db_error(e).await),
    }
}

#[derive(Deserialize)]
struct RoleForm {
    id: String,
    role: String,
    csrf: String,
}

/// `POST /users/role` (the owner only): makes a member an admin or an admin a member.
async fn change_role(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    form: web::Form<RoleForm>,
) -> Result<HttpResponse, WebError> {
    user.check_csrf(&form.csrf)?;
    if user.user.role != Role::Owner {
        return Err(WebError::Forbidden(
            "Only the owner can change roles.".into(),
        ));
    }
    let target = UserId(parse_uuid(&form.id)?);
    let Some(role) = parse_role(&form.role) else {
        return Err(WebError::InvalidInput(
            "The role must be admin or member.".into(),
        ));
    };
    let found = account(&state, target).await?;
    let Some(member) = found.filter(|u| u.role != Role::Owner) else {
        return Err(WebError::NotFound);
    };
    if member.role != role {
        let mut conn = state.conn().await?;
        if let Err(e) = User::set_role(&mut conn, member.id, role).await {
            return Err(state.db_error(e).await);
        }
        drop(conn);
        info!(by = %user.user.name, user = %member.name, from = %member.role, to = %role, "role changed");
        state
            .audit(
                user.user.id,
                Event::RoleChanged,
                &format!("{}: {} to {role}", member.name, member.role),
                Some(peer_ip(&req)),
            )
            .await;
    }
    Ok(see_other(&format!("/users?role={}", member.name)).finish())
}

#[derive(Deserialize)]
struct RemoveForm {
    id: String,
    /// The member's name, typed again: removing cannot be undone.
    confirm: String,
    csrf: String,
}

/// `POST /users/remove`: deletes a member's account and everything in their vault.
async fn remove(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    form: web::Form<RemoveForm>,
) -> Result<HttpResponse, WebError> {
    user.check_csrf(&form.csrf)?;
    super::require_admin(&user, "remove household members")?;
    let target = UserId(parse_uuid(&form.id)?);
    let Some(member) = account(&state, target).await? else {
        return Err(WebError::NotFound);
    };
    if member.id == user.user.id {
        return Err(WebError::Forbidden(
            "To delete your own account, use the account page.".into(),
        ));
    }
    if !may_remove(user.user.role, member.role) {
        return Err(WebError::Forbidden(match member.role {
            Role::Owner => "The owner's account cannot be removed.".into(),
            _ => "Only the owner can remove an admin.".into(),
        }));
    }
    if UserName::from_str(&form.confirm).ok().as_ref() != Some(&member.name) {
        let parts = Parts {
            error: Some(WebError::InvalidInput(format!(
                "To remove {0}, type their name ({0}) in the box: this cannot be undone.",
                member.name
            ))),
            ..Parts::default()
        };
        return show(&state, &user, StatusCode::BAD_REQUEST, parts).await;
    }
    erase_account(&state, &member).await?;
    info!(by = %user.user.name, user = %member.name, "household member removed");
    state
        .audit(
            user.user.id,
            Event::MemberRemoved,
            &format!("{} ({})", member.name, member.role),
            Some(peer_ip(&req)),
        )
        .await;
    Ok(see_other(&format!("/users?removed={}", member.name)).finish())
}

/// The account with this id, if it exists.
async fn account(state: &AppState, id: UserId) -> Result<Option<User>, WebError> {
    let mut conn = state.conn().await?;
    match User::by_id(&mut conn, id).await {
        Ok(found) => Ok(found),
        Err(e) => Err(state.db_error(e).await),
    }
}

/// Deletes `member`'s account and everything that is theirs (see
/// [`cv_db::User::delete`]), and forgets their keys in this process: their unlocked
/// vault and search index, and their capture sealer.
pub(crate) async fn erase_account(state: &AppState, member: &User) -> Result<(), WebError> {
    let deleted = {
        let mut conn = state.conn().await?;
        match User::delete(&mut conn, member.id).await {
            Ok(deleted) => deleted,
            Err(e) => return Err(state.db_error(e).await),
        }
    };
    state.keyring.lock(member.id);
    state.sealers.forget(member.id);
    if deleted {
        Ok(())
    } else {
        Err(WebError::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_admin_and_member_can_be_given() {
        assert_eq!(parse_role("admin"), Some(Role::Admin));
        assert_eq!(parse_role("member"), Some(Role::Member));
        assert_eq!(parse_role("owner"), None);
        assert_eq!(parse_role(""), None);
    }

    #[test]
    fn who_may_remove_whom() {
        assert!(may_remove(Role::Owner, Role::Admin));
        assert!(may_remove(Role::Owner, Role::Member));
        assert!(may_remove(Role::Admin, Role::Member));
        assert!(!may_remove(Role::Admin, Role::Admin));
        assert!(!may_remove(Role::Member, Role::Member));
        for by in [Role::Owner, Role::Admin, Role::Member] {
            assert!(!may_remove(by, Role::Owner));
        }
    }

    #[test]
    fn the_household_page_lists_accounts_invitations_and_the_invite_form() {
        let page = UsersPage {
            me: "alice".into(),
            csrf: "tok-9".into(),
            users: vec![
                UserRow {
                    id: "u1".into(),
                    name: "alice".into(),
                    role: "owner",
                    created: "2026-01-01".into(),
                    renew_required: false,
                    role_changeable: false,
                    removable: false,
                },
                UserRow {
                    id: "u2".into(),
                    name: "bob".into(),
                    role: "member",
                    created: "2026-02-01".into(),
                    renew_required: true,
                    role_changeable: true,
                    removable: true,
                },
            ],
            invitations: vec![InvitationRow {
                id: "i1".into(),
                name: "carol".into(),
                role: "admin",
                invited_by: "alice".into(),
                state: "open until 2026-02-04 10:00".into(),
                open: true,
            }],
            notice: None,
            error: Some(FormError::of(&WebError::Conflict(
                "A user named bob already exists.".into(),
            ))),
            form_name: "bob".into(),
            form_role: "admin",
            invited: Some(InvitedView {
                name: "dave".into(),
                role: "member",
                link: Zeroizing::new("https://box.local:8443/invite/SECRET".into()),
                qr_svg: Zeroizing::new("<svg></svg>".into()),
                expires: "2026-02-04 10:00".into(),
            }),
        };
        let html = page.render().unwrap();
        assert!(!html.contains("style="));
        assert!(!html.contains("<script"));
        for text in [
            "alice",
            "2026-02-01",
            r#"action="/users/invite""#,
            r#"action="/users/invitations/revoke""#,
            r#"action="/users/role""#,
            r#"action="/users/remove""#,
            r#"name="confirm""#,
            r#"value="admin" selected"#,
            r#"name="csrf" value="tok-9""#,
            "already exists",
            "conflict",
            "carol",
            "open until 2026-02-04 10:00",
            "https://box.local:8443/invite/SECRET",
            "<svg></svg>",
            "has not chosen their own passphrase yet",
        ] {
            assert!(html.contains(text), "{text} missing");
        }
        // Nobody types another person's passphrase here any more.
        assert!(!html.contains(r#"name="passphrase""#));
    }
}
