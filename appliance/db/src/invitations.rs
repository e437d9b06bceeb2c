//! Invitations to join the household. The owner or an admin names the new account and
//! its role; the invited person opens the one-time link on their own device and chooses
//! their own passphrase there, so the inviter never learns it, nor the recovery key.
//!
//! Only the SHA-256 of the link's secret is stored. Accepting deletes the invitation in
//! the transaction that creates the account, so a link works once; revoking or expiry
//! stops it. Removing the inviter removes what they sent (`ON DELETE CASCADE`).

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::DbError;
use crate::models::{CreateUserError, Role, User, UserId, UserName, VaultKeys};
use crate::schema::{invitations, users};

/// An invitation as the household page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    pub id: Uuid,
    pub name: UserName,
    pub role: Role,
    pub invited_by: UserId,
    /// The inviter's name, for the household page.
    pub invited_by_name: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

impl Invitation {
    /// Whether the link still works at `now`.
    pub fn is_open(&self, now: OffsetDateTime) -> bool {
        self.revoked_at.is_none() && now < self.expires_at
    }
}

/// Why an invitation could not be made.
#[derive(Debug, thiserror::Error)]
pub enum InviteError {
    #[error("a user named `{0}` already exists")]
    NameTaken(UserName),
    #[error("`{0}` already has an open invitation")]
    AlreadyInvited(UserName),
    #[error("only admin and member can be given by invitation")]
    OwnerRole,
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for InviteError {
    fn from(e: diesel::result::Error) -> Self {
        InviteError::Db(e.into())
    }
}

type Row = (
    Uuid,
    String,
    String,
    Uuid,
    String,
    OffsetDateTime,
    OffsetDateTime,
    Option<OffsetDateTime>,
);

macro_rules! columns {
    () => {
        (
            invitations::id,
            invitations::name,
            invitations::role,
            invitations::invited_by,
            users::name,
            invitations::created_at,
            invitations::expires_at,
            invitations::revoked_at,
        )
    };
}

fn from_row(row: Row) -> Result<Invitation, DbError> {
    let bad = |what: String| DbError::Query {
        context: "reading an invitation",
        source: diesel::result::Error::DeserializationError(what.into()),
    };
    let (id, name, role, invited_by, inviter, created_at, expires_at, revoked_at) = row;
    Ok(Invitation {
        id,
        name: name
            .parse()
            .map_err(|e: crate::models::InvalidUserName| bad(e.to_string()))?,
        role: match role.as_str() {
            "admin" => Role::Admin,
            "member" => Role::Member,
            other => return Err(bad(format!("unknown role {other:?}"))),
        },
        invited_by: UserId(invited_by),
        invited_by_name: inviter,
        created_at,
        expires_at,
        revoked_at,
    })
}

/// Stores a new invitation (its secret's digest) for `name` with `role`. Refused when an
/// account of that name exists or an open invitation names it; an expired or revoked one
/// for the same name is replaced.
pub async fn create(
    conn: &mut AsyncPgConnection,
    token_hash: &[u8; 32],
    name: &UserName,
    role: Role,
    invited_by: UserId,
    expires_at: OffsetDateTime,
) -> Result<Invitation, InviteError> {
    if role == Role::Owner {
        return Err(InviteError::OwnerRole);
    }
    let (token_hash, name) = (token_hash.to_vec(), name.clone());
    let id = conn
        .transaction::<_, InviteError, _>(async move |conn: &mut AsyncPgConnection| {
            if User::find(conn, &name).await?.is_some() {
                return Err(InviteError::NameTaken(name));
            }
            diesel::delete(
                invitations::table
                    .filter(invitations::name.eq(name.as_str()))
                    .filter(
                        invitations::revoked_at
                            .is_not_null()
                            .or(invitations::expires_at.le(diesel::dsl::now)),
                    ),
            )
            .execute(conn)
            .await
            .map_err(DbError::query("clearing old invitations"))?;
            let inserted = diesel::insert_into(invitations::table)
                .values((
                    invitations::token_hash.eq(&token_hash),
                    invitations::name.eq(name.as_str()),
                    invitations::role.eq(role.as_str()),
                    invitations::invited_by.eq(invited_by.0),
                    invitations::expires_at.eq(expires_at),
                ))
                .returning(invitations::id)
                .get_result::<Uuid>(conn)
                .await;
            match inserted {
                Ok(id) => Ok(id),
                Err(diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::UniqueViolation,
                    info,
                )) if info.constraint_name() == Some("invitations_open_name") => {
                    Err(InviteError::AlreadyInvited(name))
                }
                Err(e) => Err(DbError::query("storing an invitation")(e).into()),
            }
        })
        .await?;
    get(conn, id).await?.ok_or_else(|| {
        InviteError::Db(DbError::query("reading a new invitation")(
            diesel::result::Error::NotFound,
        ))
    })
}

/// One invitation by id.
pub async fn get(conn: &mut AsyncPgConnection, id: Uuid) -> Result<Option<Invitation>, DbError> {
    let row: Option<Row> = invitations::table
        .inner_join(users::table)
        .filter(invitations::id.eq(id))
        .select(columns!())
        .first(conn)
        .await
        .optional()
        .map_err(DbError::query("reading an invitation"))?;
    row.map(from_row).transpose()
}

/// Every invitation not yet accepted, newest first.
pub async fn list(conn: &mut AsyncPgConnection) -> Result<Vec<Invitation>, DbError> {
    let rows: Vec<Row> = invitations::table
        .inner_join(users::table)
        .order(invitations::created_at.desc())
        .select(columns!())
        .load(conn)
        .await
        .map_err(DbError::query("listing invitations"))?;
    rows.into_iter().map(from_row).collect()
}

/// The invitation whose secret has this digest, if its link still works at `now`.
pub async fn find_open(
    conn: &mut AsyncPgConnection,
    token_hash: &[u8; 32],
    now: OffsetDateTime,
) -> Result<Option<Invitation>, DbError> {
    let row: Option<Row> = invitations::table
        .inner_join(users::table)
        .filter(invitations::token_hash.eq(&token_hash[..]))
        .filter(invitations::revoked_at.is_null())
        .filter(invitations::expires_at.gt(now))
        .select(columns!())
        .first(conn)
        .await
        .optional()
        .map_err(DbError::query("looking up an invitation"))?;
    row.map(from_row).transpose()
}

/// Revokes an open invitation; returns it, or `None` if there was no open one.
pub async fn revoke(conn: &mut AsyncPgConnection, id: Uuid) -> Result<Option<Invitation>, DbError> {
    let updated = diesel::update(
        invitations::table
            .filter(invitations::id.eq(id))
            .filter(invitations::revoked_at.is_null()),
    )
    .set(invitations::revoked_at.eq(diesel::dsl::now))
    .execute(conn)
    .await
    .map_err(DbError::query("revoking an invitation"))?;
    if updated == 0 {
        return Ok(None);
    }
    get(conn, id).await
}

/// Removes an invitation that no longer works (expired or revoked) from the list.
pub async fn clear(conn: &mut AsyncPgConnection, id: Uuid) -> Result<bool, DbError> {
    let deleted = diesel::delete(
        invitations::table.filter(invitations::id.eq(id)).filter(
            invitations::revoked_at
                .is_not_null()
                .or(invitations::expires_at.le(diesel::dsl::now)),
        ),
    )
    .execute(conn)
    .await
    .map_err(DbError::query("clearing an invitation"))?;
    Ok(deleted == 1)
}

/// Accepts the invitation whose secret has this digest, if it still works at `now`:
/// deletes it and creates its account with the invited person's own login hash and key
/// bundle, in one transaction (two people racing with one link get one account). The
/// account needs no renewal: its holder chose the passphrase. `Ok(None)` for a link that
/// does not work (unknown, used, revoked or expired).
pub async fn accept(
    conn: &mut AsyncPgConnection,
    token_hash: [u8; 32],
    now: OffsetDateTime,
    password_hash: String,
    bundle: Vec<u8>,
) -> Result<Option<(User, Invitation)>, CreateUserError> {
    conn.transaction::<_, CreateUserError, _>(async move |conn: &mut AsyncPgConnection| {
        let Some(invitation) = find_open(conn, &token_hash, now).await? else {
            return Ok(None);
        };
        let deleted = diesel::delete(
            invitations::table
                .filter(invitations::id.eq(invitation.id))
                .filter(invitations::revoked_at.is_null()),
        )
        .execute(conn)
        .await
        .map_err(DbError::query("using an invitation"))?;
        if deleted == 0 {
            return Ok(None);
        }
        let user = User::create(
            conn,
            &invitation.name,
            &password_hash,
            invitation.role,
            false,
        )
        .await?;
        VaultKeys::insert(conn, user.id, &bundle).await?;
        Ok(Some((user, invitation)))
    })
    .await
}
