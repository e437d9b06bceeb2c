//! API bearer tokens, stored as SHA-256 digests.

use std::fmt;
use std::str::FromStr;

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::DbError;
use crate::models::{User, UserId, UserRow};
use crate::schema::{api_tokens, users};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Add to the vault (also while it is locked); read nothing.
    Capture,
    /// Read the vault (while it is unlocked).
    Read,
    /// Both.
    Full,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Capture => "capture",
            Scope::Read => "read",
            Scope::Full => "full",
        }
    }

    pub fn may_capture(self) -> bool {
        matches!(self, Scope::Capture | Scope::Full)
    }

    pub fn may_read(self) -> bool {
        matches!(self, Scope::Read | Scope::Full)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a token scope is capture, read or full")]
pub struct InvalidScope;

impl FromStr for Scope {
    type Err = InvalidScope;

    fn from_str(s: &str) -> Result<Scope, InvalidScope> {
        match s {
            "capture" => Ok(Scope::Capture),
            "read" => Ok(Scope::Read),
            "full" => Ok(Scope::Full),
            _ => Err(InvalidScope),
        }
    }
}

/// A token found by its digest.
#[derive(Debug, Clone)]
pub struct TokenRecord {
    pub id: Uuid,
    pub user: User,
    pub name: String,
    pub scope: Scope,
    pub last_used_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

/// Checks a token's name (a label for its owner): 1 to 64 characters, no control
/// characters. Returns it trimmed.
pub fn check_name(name: &str) -> Result<&str, &'static str> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        Err("a token name is 1 to 64 characters, without control characters")
    } else {
        Ok(name)
    }
}

/// A token as its owner's token list shows it.
#[derive(Debug, Clone)]
pub struct TokenSummary {
    pub id: Uuid,
    pub name: String,
    pub scope: String,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

type SummaryRow = (
    Uuid,
    String,
    String,
    OffsetDateTime,
    Option<OffsetDateTime>,
    Option<OffsetDateTime>,
);

/// The user's tokens, newest first (revoked ones too: their history is useful).
pub async fn list(
    conn: &mut AsyncPgConnection,
    user: UserId,
) -> Result<Vec<TokenSummary>, DbError> {
    let rows: Vec<SummaryRow> = api_tokens::table
        .filter(api_tokens::user_id.eq(user.0))
        .order(api_tokens::created_at.desc())
        .select((
            api_tokens::id,
            api_tokens::name,
            api_tokens::scope,
            api_tokens::created_at,
            api_tokens::last_used_at,
            api_tokens::revoked_at,
        ))
        .load(conn)
        .await
        .map_err(DbError::query("listing tokens"))?;
    Ok(rows
        .into_iter()
        .map(
            |(id, name, scope, created_at, last_used_at, revoked_at)| TokenSummary {
                id,
                name,
                scope,
                created_at,
                last_used_at,
                revoked_at,
            },
        )
        .collect())
}

/// Revokes one of the user's tokens by id; returns its name if it was active.
pub async fn revoke(
    conn: &mut AsyncPgConnection,
    user: UserId,
    id: Uuid,
) -> Result<Option<String>, DbError> {
    diesel::update(
        api_tokens::table
            .filter(api_tokens::user_id.eq(user.0))
            .filter(api_tokens::id.eq(id))
            .filter(api_tokens::revoked_at.is_null()),
    )
    .set(api_tokens::revoked_at.eq(diesel::dsl::now))
    .returning(api_tokens::name)
    .get_result(conn)
    .await
    .optional()
    .map_err(DbError::query("revoking a token"))
}

/// Revokes every live token of `user`; returns how many.
pub async fn revoke_all(conn: &mut AsyncPgConnection, user: UserId) -> Result<usize, DbError> {
    diesel::update(
        api_tokens::table
            .filter(api_tokens::user_id.eq(user.0))
            .filter(api_tokens::revoked_at.is_null()),
    )
    .set(api_tokens::revoked_at.eq(diesel::dsl::now))
    .execute(conn)
    .await
    .map_err(DbError::query("revoking a user's tokens"))
}

/// Stores a new token's digest; returns its id.
pub async fn create(
    conn: &mut AsyncPgConnection,
    user: UserId,
    name: &str,
    scope: Scope,
    token_hash: &[u8; 32],
) -> Result<Uuid, DbError> {
    diesel::insert_into(api_tokens::table)
        .values((
            api_tokens::user_id.eq(user.0),
            api_tokens::name.eq(name),
            api_tokens::scope.eq(scope.as_str()),
            api_tokens::token_hash.eq(&token_hash[..]),
        ))
        .returning(api_tokens::id)
        .get_result(conn)
        .await
        .map_err(DbError::query("creating a token"))
}

type Row = (
    Uuid,
    String,
    String,
    Option<OffsetDateTime>,
    Option<OffsetDateTime>,
    UserRow,
);

/// The token with this digest, revoked or not (the caller says which, so a revoked
/// token gets a clear answer).
pub async fn find(
    conn: &mut AsyncPgConnection,
    token_hash: &[u8; 32],
) -> Result<Option<TokenRecord>, DbError> {
    let row: Option<Row> = api_tokens::table
        .inner_join(users::table)
        .filter(api_tokens::token_hash.eq(&token_hash[..]))
        .select((
            api_tokens::id,
            api_tokens::name,
            api_tokens::scope,
            api_tokens::last_used_at,
            api_tokens::revoked_at,
            UserRow::as_select(),
        ))
        .first(conn)
        .await
        .optional()
        .map_err(DbError::query("looking up a token"))?;
    row.map(|(id, name, scope, last_used_at, revoked_at, user)| {
        Ok(TokenRecord {
            id,
            user: User::try_from(user)?,
            name,
            scope: Scope::from_str(&scope).map_err(|e| DbError::Query {
                context: "reading a token's scope",
                source: diesel::result::Error::DeserializationError(e.to_string().into()),
            })?,
            last_used_at,
            revoked_at,
        })
    })
    .transpose()
}

/// Records use (the dashboard will show when a token was last used).
pub async fn touch(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    now: OffsetDateTime,
) -> Result<(), DbError> {
    diesel::update(api_tokens::table.filter(api_tokens::id.eq(id)))
        .set(api_tokens::last_used_at.eq(now))
        .execute(conn)
        .await
        .map_err(DbError::query("recording a token's use"))?;
    Ok(())
}

/// Revokes the user's token named `name`; returns how many were revoked.
pub async fn revoke_by_name(
    conn: &mut AsyncPgConnection,
    user: UserId,
    name: &str,
) -> Result<usize, DbError> {
    diesel::update(
        api_tokens::table
            .filter(api_tokens::user_id.eq(user.0))
            .filter(api_tokens::name.eq(name))
            .filter(api_tokens::revoked_at.is_null()),
    )
    .set(api_tokens::revoked_at.eq(diesel::dsl::now))
    .execute(conn)
    .await
    .map_err(DbError::query("revoking a token"))
}
