//! The person's API tokens (create, shown once; revoke) and their account's activity
//! (the audit log).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use cv_db::audit::{self, Event};
use cv_db::tokens::{self, Scope};
use serde::Deserialize;
use std::str::FromStr;
use tracing::info;

use super::{FormError, peer_ip, render, see_other};
use crate::error::WebError;
use crate::format::date_time;
use crate::session::CurrentUser;
use crate::state::AppState;

pub(super) fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/account/tokens", web::get().to(tokens_page))
        .route("/account/tokens", web::post().to(create))
        .route("/account/tokens/{id}/revoke", web::post().to(revoke))
        .route("/account/activity", web::get().to(activity_page));
}

/// How many events the activity page shows.
const ACTIVITY_LIMIT: i64 = 200;

#[derive(Debug)]
pub(crate) struct TokenRow {
    pub id: String,
    pub name: String,
    pub scope: String,
    pub created: String,
    pub last_used: String,
    pub revoked: Option<String>,
}

#[derive(Debug, Template)]
#[template(path = "tokens.html")]
pub(crate) struct TokensPage {
    pub csrf: String,
    pub can_manage_users: bool,
    pub tokens: Vec<TokenRow>,
    /// A token just created: shown this once.
    pub created: Option<(String, String)>,
    pub error: Option<FormError>,
    pub revoked: bool,
}

async fn show(
    state: &AppState,
    user: &CurrentUser,
    status: StatusCode,
    created: Option<(String, String)>,
    error: Option<&WebError>,
    revoked: bool,
) -> Result<HttpResponse, WebError> {
    let mut conn = state.conn().await?;
    let list = match tokens::list(&mut conn, user.user.id).await {
        Ok(list) => list,
        Err(e) => return Err(state.db_error(e).await),
    };
    drop(conn);
    let tz = state.time_zone().await;
    let shown = |at| date_time(at, &tz);
    let tokens = list
        .into_iter()
        .map(|t| TokenRow {
            id: t.id.to_string(),
            name: t.name,
            scope: t.scope,
            created: shown(t.created_at),
            last_used: t.last_used_at.map_or_else(|| "never".into(), shown),
            revoked: t.revoked_at.map(shown),
        })
        .collect();
    render(
        status,
        &TokensPage {
            csrf: user.csrf_token.clone(),
            can_manage_users: user.user.role.can_manage_users(),
            tokens,
            created,
            error: error.map(FormError::of),
            revoked,
        },
    )
}

async fn tokens_page(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, WebError> {
    let revoked = req.query_string().contains("revoked=1");
    show(&state, &user, StatusCode::OK, None, None, revoked).await
}

#[derive(Deserialize)]
struct CreateForm {
    csrf: String,
    name: String,
    scope: String,
}

/// `POST /account/tokens`: creates a token and shows it, once.
async fn create(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    form: web::Form<CreateForm>,
) -> Result<HttpResponse, WebError> {
    let form = form.into_inner();
    user.check_csrf(&form.csrf)?;
    let refuse = |msg: &str| WebError::InvalidInput(msg.to_owned());
    let name = match tokens::check_name(&form.name) {
        Ok(name) => name.to_owned(),
        Err(msg) => {
            let e = refuse(&format!("{}{}.", &msg[..1].to_uppercase(), &msg[1..]));
            return show(
                &state,
                &user,
                StatusCode::BAD_REQUEST,
                None,
                Some(&e),
                false,
            )
            .await;
        }
    };
    let Ok(scope) = Scope::from_str(&form.scope) else {
        let e = refuse("The scope is capture, read or full.");
        return show(
            &state,
            &user,
            StatusCode::BAD_REQUEST,
            None,
            Some(&e),
            false,
        )
        .await;
    };
    let (token, digest) = cv_crypto::mint_api_token();
    {
        let mut conn = state.conn().await?;
        if let Err(e) = tokens::create(&mut conn, user.user.id, &name, scope, &digest).await {
            return Err(state.db_error(e).await);
        }
    }
    info!(user = %user.user.name, token = %name, %scope, "API token created");
    state
        .audit(
            user.user.id,
            Event::TokenCreated,
            &format!("{name} ({scope})"),
            Some(peer_ip(&req)),
        )
        .await;
    show(
        &state,
        &user,
        StatusCode::OK,
        Some((name, token.to_string())),
        None,
        false,
    )
    .await
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

/// `POST /account/tokens/{id}/revoke`: the token stops working at once.
async fn revoke(
    req: HttpRequest,
    path: web::Path<String>,
    user: CurrentUser,
    state: web::Data<AppState>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, WebError> {
    user.check_csrf(&form.csrf)?;
    let id = uuid::Uuid::parse_str(&path).map_err(|_| WebError::NotFound)?;
    let revoked = {
        let mut conn = state.conn().await?;
        match tokens::revoke(&mut conn, user.user.id, id).await {
            Ok(revoked) => revoked,
            Err(e) => return Err(state.db_error(e).await),
        }
    };
    let Some(name) = revoked else {
        return Err(WebError::NotFound);
    };
    info!(user = %user.user.name, token = %name, "API token revoked");
    state
        .audit(
            user.user.id,
            Event::TokenRevoked,
            &name,
            Some(peer_ip(&req)),
        )
        .await;
    Ok(see_other("/account/tokens?revoked=1").finish())
}

#[derive(Debug)]
pub(crate) struct ActivityRow {
    pub at: String,
    pub what: &'static str,
    pub failure: bool,
    pub detail: String,
    pub client: String,
}

#[derive(Debug, Template)]
#[template(path = "activity.html")]
pub(crate) struct ActivityPage {
    pub csrf: String,
    pub can_manage_users: bool,
    pub events: Vec<ActivityRow>,
}

/// `GET /account/activity`: the account's audit log, newest first.
async fn activity_page(
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, WebError> {
    let mut conn = state.conn().await?;
    let events = match audit::newest(&mut conn, user.user.id, ACTIVITY_LIMIT).await {
        Ok(events) => events,
        Err(e) => return Err(state.db_error(e).await),
    };
    drop(conn);
    let tz = state.time_zone().await;
    let events = events
        .into_iter()
        .map(|e| ActivityRow {
            at: date_time(e.at, &tz),
            what: Event::describe(&e.event),
            failure: e.event.ends_with("_failed"),
            detail: e.detail,
            client: e.client.unwrap_or_default(),
        })
        .collect();
    render(
        StatusCode::OK,
        &ActivityPage {
            csrf: user.csrf_token.clone(),
            can_manage_users: user.user.role.can_manage_users(),
            events,
        },
    )
}
