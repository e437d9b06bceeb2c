//! Household accounts: the owner and admins list them and add members.

use std::str::FromStr as _;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use cv_crypto::{Passphrase, hash_password};
use cv_db::models::CreateUserError;
use cv_db::{Role, User, UserName};
use serde::Deserialize;
use tracing::info;

use super::vault::{RecoveryPage, new_vault, show_recovery};
use super::{FormError, render};
use crate::error::WebError;
use crate::format::date;
use crate::session::CurrentUser;
use crate::state::AppState;

pub(super) fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/users", web::get().to(list))
        .route("/users", web::post().to(add));
}

#[derive(Debug, Template)]
#[template(path = "users.html")]
pub(crate) struct UsersPage {
    pub me: String,
    pub csrf: String,
    pub users: Vec<UserRow>,
    /// Set after a member was added.
    pub added: Option<String>,
    pub error: Option<FormError>,
    /// The add form's values when it is re-shown.
    pub form_name: String,
    pub form_role: &'static str,
}

#[derive(Debug, Clone)]
pub(crate) struct UserRow {
    pub name: String,
    pub role: &'static str,
    pub created: String,
}

#[derive(Deserialize)]
struct AddedQuery {
    added: Option<String>,
}

#[derive(Deserialize)]
struct AddForm {
    name: String,
    passphrase: String,
    role: String,
    csrf: String,
}

/// `GET /users` (`?added=<name>` confirms an addition).
async fn list(
    user: CurrentUser,
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
) -> Result<HttpResponse, WebError> {
    super::require_admin(&user, "manage household accounts")?;
    let added = web::Query::<AddedQuery>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.into_inner().added)
        .and_then(|name| UserName::from_str(&name).ok())
        .map(|name| name.to_string());
    show(
        &state,
        &user,
        StatusCode::OK,
        added,
        None,
        String::new(),
        "member",
    )
    .await
}

async fn show(
    state: &AppState,
    user: &CurrentUser,
    status: StatusCode,
    added: Option<String>,
    error: Option<&WebError>,
    form_name: String,
    form_role: &'static str,
) -> Result<HttpResponse, WebError> {
    let users = {
        let mut conn = state.conn().await?;
        match User::list(&mut conn).await {
            Ok(users) => users,
            Err(e) => return Err(state.db_error(e).await),
        }
    };
    let tz = state.time_zone().await;
    let page = UsersPage {
        me: user.user.name.to_string(),
        csrf: user.csrf_token.clone(),
        users: users.iter().map(|u| row(u, &tz)).collect(),
        added,
        error: error.map(FormError::of),
        form_name,
        form_role,
    };
    render(status, &page)
}

fn row(u: &User, tz: &jiff::tz::TimeZone) -> UserRow {
    UserRow {
        name: u.name.to_string(),
        role: u.role.as_str(),
        created: date(u.created_at, tz),
    }
}

/// Roles that can be given from the form; there is exactly one owner, made at setup.
fn parse_role(text: &str) -> Option<Role> {
    match text {
        "admin" => Some(Role::Admin),
        "member" => Some(Role::Member),
        _ => None,
    }
}

/// `POST /users`: adds a household member.
async fn add(
    user: CurrentUser,
    state: web::Data<AppState>,
    form: web::Form<AddForm>,
) -> Result<HttpResponse, WebError> {
    let form = form.into_inner();
    user.check_csrf(&form.csrf)?;
    super::require_admin(&user, "manage household accounts")?;

    let role = parse_role(&form.role);
    let form_role = role.map_or("member", Role::as_str);
    let invalid = async |status: StatusCode, err: WebError| {
        show(
            &state,
            &user,
            status,
            None,
            Some(&err),
            form.name.clone(),
            form_role,
        )
        .await
    };
    let Some(role) = role else {
        let err = WebError::InvalidInput("The role must be admin or member.".into());
        return invalid(StatusCode::BAD_REQUEST, err).await;
    };
    let name = match UserName::from_str(&form.name) {
        Ok(name) => name,
        Err(e) => {
            let err = WebError::InvalidInput(format!("Please choose another name: {e}."));
            return invalid(StatusCode::BAD_REQUEST, err).await;
        }
    };
    let passphrase = match Passphrase::new(form.passphrase.clone()) {
        Ok(p) => p,
        Err(e) => {
            let err = WebError::InvalidInput(format!("Please choose another passphrase: {e}."));
            return invalid(StatusCode::BAD_REQUEST, err).await;
        }
    };
    let for_hash = passphrase.clone();
    let hash = web::block(move || hash_password(&for_hash))
        .await?
        .map_err(|e| WebError::internal("hashing a new member's passphrase", e))?;
    // The member's own vault; it stays locked until they log in.
    let (bundle, _locked_again_on_drop, recovery) = new_vault(passphrase).await?;
    let created = {
        let mut conn = state.conn().await?;
        User::create_with_vault(&mut conn, &name, &hash, role, &bundle.to_bytes()).await
    };
    match created {
        Ok(new) => {
            info!(by = %user.user.name, user = %new.name, role = %new.role, "account added");
            let page = RecoveryPage::new(
                &recovery,
                Some(new.name.to_string()),
                &format!("/users?added={}", new.name),
            );
            show_recovery(&page, None)
        }
        Err(CreateUserError::NameTaken(name)) => {
            let err = WebError::Conflict(format!(
                "A user named {name} already exists. Please choose another name."
            ));
            invalid(StatusCode::CONFLICT, err).await
        }
        Err(CreateUserError::OwnerExists) => {
            let err = WebError::Conflict("This appliance already has an owner.".into());
            invalid(StatusCode::CONFLICT, err).await
        }
        Err(CreateUserError::Db(e)) => Err(state.db_error(e).await),
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
    fn the_users_page_lists_accounts_and_has_the_add_form() {
        let page = UsersPage {
            me: "alice".into(),
            csrf: "tok-9".into(),
            users: vec![
                UserRow {
                    name: "alice".into(),
                    role: "owner",
                    created: "2026-01-01".into(),
                },
                UserRow {
                    name: "bob".into(),
                    role: "member",
                    created: "2026-02-01".into(),
                },
            ],
            added: Some("bob".into()),
            error: Some(FormError::of(&WebError::Conflict(
                "A user named bob already exists.".into(),
            ))),
            form_name: "bob".into(),
            form_role: "admin",
        };
        let html = page.render().unwrap();
        assert!(!html.contains("style="));
        assert!(!html.contains("<script"));
        for text in [
            "alice",
            "2026-02-01",
            r#"action="/users""#,
            r#"name="name""#,
            r#"name="passphrase""#,
            r#"name="role""#,
            r#"value="admin" selected"#,
            r#"name="csrf" value="tok-9""#,
            "already exists",
            "conflict",
        ] {
            assert!(html.contains(text), "{text} missing");
        }
    }
}
