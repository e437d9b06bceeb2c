//! Rows and the queries on them. Types are parsed once (names validated, ids typed);
//! secrets never appear here in clear: sessions and setup codes are stored as digests.

use std::fmt;
use std::str::FromStr;

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::DbError;
use crate::schema::{sessions, setup_code, users, vault_keys};

/// A user's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UserId(pub Uuid);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A login name: 1-32 characters, lowercase letters, digits, `.`, `_`, `-`, starting with
/// a letter or digit. Typed names are lowercased, so `Alice` and `alice` are one account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UserName(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "a user name is 1 to 32 characters: letters, digits, '.', '_' or '-', starting with a letter or digit"
)]
pub struct InvalidUserName;

impl FromStr for UserName {
    type Err = InvalidUserName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim().to_ascii_lowercase();
        let mut chars = name.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let rest_ok = chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
        if first_ok && rest_ok && name.len() <= 32 {
            Ok(UserName(name))
        } else {
            Err(InvalidUserName)
        }
    }
}

impl UserName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an account may do. The owner created the household at setup; admins manage
/// members; members use their own vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Owner,
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    /// Whether this role may add household members.
    pub fn can_manage_users(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }

    fn parse(s: &str) -> Result<Role, DbError> {
        match s {
            "owner" => Ok(Role::Owner),
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            other => Err(DbError::Query {
                context: "reading a user's role",
                source: diesel::result::Error::DeserializationError(
                    format!("unknown role {other:?}").into(),
                ),
            }),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An account, without its password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub name: UserName,
    pub role: Role,
    pub created_at: OffsetDateTime,
    /// Someone else chose this account's passphrase (and saw its recovery key): it may
    /// not log in until its holder sets their own, which also renews the vault's keys.
    pub renew_required: bool,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub(crate) struct UserRow {
    id: Uuid,
    name: String,
    role: String,
    created_at: OffsetDateTime,
    renew_required: bool,
}

impl TryFrom<UserRow> for User {
    type Error = DbError;

    fn try_from(row: UserRow) -> Result<User, DbError> {
        Ok(User {
            id: UserId(row.id),
            // The CHECK constraint guarantees the shape; never trust it blindly though.
            name: UserName::from_str(&row.name).map_err(|e| DbError::Query {
                context: "reading a user's name",
                source: diesel::result::Error::DeserializationError(e.to_string().into()),
            })?,
            role: Role::parse(&row.role)?,
            created_at: row.created_at,
            renew_required: row.renew_required,
        })
    }
}

/// Why an account could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    #[error("a user named `{0}` already exists")]
    NameTaken(UserName),
    #[error("this appliance already has an owner")]
    OwnerExists,
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for CreateUserError {
    fn from(e: diesel::result::Error) -> Self {
        CreateUserError::Db(e.into())
    }
}

impl User {
    pub async fn count(conn: &mut AsyncPgConnection) -> Result<i64, DbError> {
        users::table
            .count()
            .get_result(conn)
            .await
            .map_err(DbError::query("counting users"))
    }

    pub async fn list(conn: &mut AsyncPgConnection) -> Result<Vec<User>, DbError> {
        users::table
            .order(users::created_at.asc())
            .select(UserRow::as_select())
            .load(conn)
            .await
            .map_err(DbError::query("listing users"))?
            .into_iter()
            .map(User::try_from)
            .collect()
    }

    /// The account and its password hash, for login.
    pub async fn find_for_login(
        conn: &mut AsyncPgConnection,
        name: &UserName,
    ) -> Result<Option<(User, String)>, DbError> {
        let row: Option<(UserRow, String)> = users::table
            .filter(users::name.eq(name.as_str()))
            .select((UserRow::as_select(), users::password_hash))
            .first(conn)
            .await
            .optional()
            .map_err(DbError::query("looking up a user"))?;
        row.map(|(u, hash)| Ok((User::try_from(u)?, hash)))
            .transpose()
    }

    /// Inserts an account. `password_hash` is an Argon2id PHC string; `renew_required`
    /// when someone other than the account's holder chose the passphrase.
    pub async fn create(
        conn: &mut AsyncPgConnection,
        name: &UserName,
        password_hash: &str,
        role: Role,
        renew_required: bool,
    ) -> Result<User, CreateUserError> {
        let row = diesel::insert_into(users::table)
            .values((
                users::name.eq(name.as_str()),
                users::password_hash.eq(password_hash),
                users::role.eq(role.as_str()),
                users::renew_required.eq(renew_required),
            ))
            .returning(UserRow::as_returning())
            .get_result(conn)
            .await;
        match row {
            Ok(row) => Ok(User::try_from(row)?),
            Err(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                info,
            )) => {
                if info.constraint_name() == Some("users_one_owner") {
                    Err(CreateUserError::OwnerExists)
                } else {
                    Err(CreateUserError::NameTaken(name.clone()))
                }
            }
            Err(e) => Err(DbError::query("creating a user")(e).into()),
        }
    }
}

impl User {
    /// Inserts an account and its wrapped vault keys in one transaction: there is never
    /// an account without a vault.
    pub async fn create_with_vault(
        conn: &mut AsyncPgConnection,
        name: &UserName,
        password_hash: &str,
        role: Role,
        bundle: &[u8],
        renew_required: bool,
    ) -> Result<User, CreateUserError> {
        let (name, password_hash, bundle) =
            (name.clone(), password_hash.to_owned(), bundle.to_vec());
        conn.transaction::<_, CreateUserError, _>(async move |conn: &mut AsyncPgConnection| {
            let user = User::create(conn, &name, &password_hash, role, renew_required).await?;
            VaultKeys::insert(conn, user.id, &bundle).await?;
            Ok(user)
        })
        .await
    }
}

impl User {
    /// Replaces the account's password hash and its re-wrapped vault keys together: the
    /// passphrase that logs in is always the one that unlocks.
    pub async fn set_passphrase(
        conn: &mut AsyncPgConnection,
        user: UserId,
        password_hash: &str,
        bundle: &[u8],
    ) -> Result<(), DbError> {
        let (password_hash, bundle) = (password_hash.to_owned(), bundle.to_vec());
        conn.transaction::<_, DbError, _>(async move |conn: &mut AsyncPgConnection| {
            diesel::update(users::table.filter(users::id.eq(user.0)))
                .set(users::password_hash.eq(&password_hash))
                .execute(conn)
                .await
                .map_err(DbError::query("changing a passphrase"))?;
            diesel::insert_into(vault_keys::table)
                .values((
                    vault_keys::user_id.eq(user.0),
                    vault_keys::bundle.eq(&bundle),
                ))
                .on_conflict(vault_keys::user_id)
                .do_update()
                .set((
                    vault_keys::bundle.eq(&bundle),
                    vault_keys::updated_at.eq(diesel::dsl::now),
                ))
                .execute(conn)
                .await
                .map_err(DbError::query("re-wrapping vault keys"))?;
            Ok(())
        })
        .await
    }
}

impl User {
    /// The account named `name`, if any.
    pub async fn find(
        conn: &mut AsyncPgConnection,
        name: &UserName,
    ) -> Result<Option<User>, DbError> {
        Ok(User::find_for_login(conn, name)
            .await?
            .map(|(user, _)| user))
    }

    /// The account with this id, if it still exists.
    pub async fn by_id(conn: &mut AsyncPgConnection, id: UserId) -> Result<Option<User>, DbError> {
        users::table
            .filter(users::id.eq(id.0))
            .select(UserRow::as_select())
            .first(conn)
            .await
            .optional()
            .map_err(DbError::query("looking up a user"))?
            .map(User::try_from)
            .transpose()
    }

    /// The end of a renewal (see [`User::renew_required`]), to be run in the transaction
    /// that re-keyed the vault: the holder's own login hash and key bundle replace the
    /// ones someone else chose, the mark goes, and every session and API token of the
    /// account ends, since whoever chose the first passphrase may have made them.
    /// Returns `false` (nothing changed) when the account no longer needs renewing.
    pub async fn finish_renewal(
        conn: &mut AsyncPgConnection,
        user: UserId,
        password_hash: &str,
        bundle: &[u8],
    ) -> Result<bool, DbError> {
        let updated = diesel::update(
            users::table
                .filter(users::id.eq(user.0))
                .filter(users::renew_required),
        )
        .set((
            users::password_hash.eq(password_hash),
            users::renew_required.eq(false),
        ))
        .execute(conn)
        .await
        .map_err(DbError::query("renewing an account"))?;
        if updated == 0 {
            return Ok(false);
        }
        User::set_bundle(conn, user, bundle).await?;
        diesel::delete(sessions::table.filter(sessions::user_id.eq(user.0)))
            .execute(conn)
            .await
            .map_err(DbError::query("ending a renewed account's sessions"))?;
        crate::tokens::revoke_all(conn, user).await?;
        Ok(true)
    }

    /// Replaces the stored key bundle only (a new recovery key, or a renewal's new keys).
    pub async fn set_bundle(
        conn: &mut AsyncPgConnection,
        user: UserId,
        bundle: &[u8],
    ) -> Result<(), DbError> {
        diesel::update(vault_keys::table.filter(vault_keys::user_id.eq(user.0)))
            .set((
                vault_keys::bundle.eq(bundle),
                vault_keys::updated_at.eq(diesel::dsl::now),
            ))
            .execute(conn)
            .await
            .map_err(DbError::query("replacing vault keys"))?;
        Ok(())
    }

    /// Gives a member or admin another role. The owner's role never changes here, and
    /// nobody becomes owner: a household has exactly one, made at setup. Returns `false`
    /// when no such non-owner account exists.
    pub async fn set_role(
        conn: &mut AsyncPgConnection,
        user: UserId,
        role: Role,
    ) -> Result<bool, DbError> {
        if role == Role::Owner {
            return Ok(false);
        }
        let updated = diesel::update(
            users::table
                .filter(users::id.eq(user.0))
                .filter(users::role.ne(Role::Owner.as_str())),
        )
        .set(users::role.eq(role.as_str()))
        .execute(conn)
        .await
        .map_err(DbError::query("changing a role"))?;
        Ok(updated == 1)
    }

    /// Deletes a non-owner account and, by cascade, everything that is theirs: the
    /// vault's key bundle, every item with its data key and versions (crypto-shredding),
    /// embeddings, suggestion feedback, sessions, API tokens, invitations they sent and
    /// their audit log. Returns `false` when there was no such non-owner account.
    pub async fn delete(conn: &mut AsyncPgConnection, user: UserId) -> Result<bool, DbError> {
        let deleted = diesel::delete(
            users::table
                .filter(users::id.eq(user.0))
                .filter(users::role.ne(Role::Owner.as_str())),
        )
        .execute(conn)
        .await
        .map_err(DbError::query("deleting an account"))?;
        Ok(deleted == 1)
    }
}

/// An account's wrapped vault keys (`cv_crypto::vault::KeyBundle` bytes).
#[derive(Debug)]
pub struct VaultKeys;

impl VaultKeys {
    pub async fn insert(
        conn: &mut AsyncPgConnection,
        user: UserId,
        bundle: &[u8],
    ) -> Result<(), DbError> {
        diesel::insert_into(vault_keys::table)
            .values((
                vault_keys::user_id.eq(user.0),
                vault_keys::bundle.eq(bundle),
            ))
            .execute(conn)
            .await
            .map_err(DbError::query("storing vault keys"))?;
        Ok(())
    }

    /// The bundle, or `None` for an account made before accounts had vaults.
    pub async fn get(
        conn: &mut AsyncPgConnection,
        user: UserId,
    ) -> Result<Option<Vec<u8>>, DbError> {
        vault_keys::table
            .filter(vault_keys::user_id.eq(user.0))
            .select(vault_keys::bundle)
            .first(conn)
            .await
            .optional()
            .map_err(DbError::query("reading vault keys"))
    }
}

/// The one-time code that lets the first visitor create the owner account.
#[derive(Debug)]
pub struct SetupCode;

impl SetupCode {
    /// Replaces the stored code (its SHA-256) with a new one.
    pub async fn store(conn: &mut AsyncPgConnection, code_hash: &[u8; 32]) -> Result<(), DbError> {
        diesel::insert_into(setup_code::table)
            .values((
                setup_code::singleton.eq(true),
                setup_code::code_hash.eq(&code_hash[..]),
            ))
            .on_conflict(setup_code::singleton)
            .do_update()
            .set((
                setup_code::code_hash.eq(&code_hash[..]),
                setup_code::created_at.eq(diesel::dsl::now),
            ))
            .execute(conn)
            .await
            .map_err(DbError::query("storing the setup code"))?;
        Ok(())
    }

    /// Removes the code: setup is over (an owner was created another way).
    pub async fn clear(conn: &mut AsyncPgConnection) -> Result<(), DbError> {
        diesel::delete(setup_code::table)
            .execute(conn)
            .await
            .map_err(DbError::query("closing setup"))?;
        Ok(())
    }

    /// Whether setup is still open (a code exists and no owner does).
    pub async fn is_pending(conn: &mut AsyncPgConnection) -> Result<bool, DbError> {
        let codes: i64 = setup_code::table
            .count()
            .get_result(conn)
            .await
            .map_err(DbError::query("reading the setup state"))?;
        Ok(codes > 0 && !owner_exists(conn).await?)
    }

    /// Whether `code_hash` is the stored code's (without consuming it): proof of access to
    /// the box's console for what a new box may do before it has an owner.
    pub async fn matches(
        conn: &mut AsyncPgConnection,
        code_hash: [u8; 32],
    ) -> Result<bool, DbError> {
        let n: i64 = setup_code::table
            .filter(setup_code::code_hash.eq(&code_hash[..]))
            .count()
            .get_result(conn)
            .await
            .map_err(DbError::query("checking the setup code"))?;
        Ok(n > 0)
    }

    /// Creates the owner if `code_hash` matches the stored code, consuming the code, in
    /// one transaction: two visitors racing with the right code get one owner.
    /// Returns `Ok(None)` for a wrong or already used code.
    pub async fn redeem(
        conn: &mut AsyncPgConnection,
        code_hash: [u8; 32],
        name: UserName,
        password_hash: String,
        bundle: Vec<u8>,
    ) -> Result<Option<User>, CreateUserError> {
        conn.transaction::<_, CreateUserError, _>(async move |conn: &mut AsyncPgConnection| {
            let deleted =
                diesel::delete(setup_code::table.filter(setup_code::code_hash.eq(&code_hash[..])))
                    .execute(conn)
                    .await
                    .map_err(DbError::query("consuming the setup code"))?;
            if deleted == 0 {
                return Ok(None);
            }
            let user = User::create(conn, &name, &password_hash, Role::Owner, false).await?;
            VaultKeys::insert(conn, user.id, &bundle).await?;
            Ok(Some(user))
        })
        .await
    }
}

/// Whether an owner account exists.
pub async fn owner_exists(conn: &mut AsyncPgConnection) -> Result<bool, DbError> {
    let n: i64 = users::table
        .filter(users::role.eq(Role::Owner.as_str()))
        .count()
        .get_result(conn)
        .await
        .map_err(DbError::query("looking for the owner"))?;
    Ok(n > 0)
}

/// A live session and whose it is.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub user: User,
    pub csrf_token: String,
    pub created_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

impl SessionRecord {
    /// Ends every session (after a snapshot is restored, the sessions it holds are old
    /// ones): everyone logs in again. Returns how many there were.
    pub async fn end_all(conn: &mut AsyncPgConnection) -> Result<usize, DbError> {
        diesel::delete(sessions::table)
            .execute(conn)
            .await
            .map_err(DbError::query("ending every session"))
    }

    pub async fn create(
        conn: &mut AsyncPgConnection,
        token_hash: &[u8; 32],
        user: UserId,
        csrf_token: &str,
        now: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Result<(), DbError> {
        diesel::insert_into(sessions::table)
            .values((
                sessions::token_hash.eq(&token_hash[..]),
                sessions::user_id.eq(user.0),
                sessions::csrf_token.eq(csrf_token),
                sessions::created_at.eq(now),
                sessions::last_seen_at.eq(now),
                sessions::expires_at.eq(expires_at),
            ))
            .execute(conn)
            .await
            .map_err(DbError::query("creating a session"))?;
        Ok(())
    }

    /// The session for this token digest, expired or not (the caller decides, so it can
    /// tell the person their session expired rather than pretend it never existed).
    pub async fn find(
        conn: &mut AsyncPgConnection,
        token_hash: &[u8; 32],
    ) -> Result<Option<SessionRecord>, DbError> {
        let row: Option<(
            String,
            OffsetDateTime,
            OffsetDateTime,
            OffsetDateTime,
            UserRow,
        )> = sessions::table
            .inner_join(users::table)
            .filter(sessions::token_hash.eq(&token_hash[..]))
            .select((
                sessions::csrf_token,
                sessions::created_at,
                sessions::last_seen_at,
                sessions::expires_at,
                UserRow::as_select(),
            ))
            .first(conn)
            .await
            .optional()
            .map_err(DbError::query("looking up a session"))?;
        row.map(|(csrf_token, created_at, last_seen_at, expires_at, user)| {
            Ok(SessionRecord {
                user: User::try_from(user)?,
                csrf_token,
                created_at,
                last_seen_at,
                expires_at,
            })
        })
        .transpose()
    }

    /// Slides the idle expiry forward.
    pub async fn touch(
        conn: &mut AsyncPgConnection,
        token_hash: &[u8; 32],
        now: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Result<(), DbError> {
        diesel::update(sessions::table.filter(sessions::token_hash.eq(&token_hash[..])))
            .set((
                sessions::last_seen_at.eq(now),
                sessions::expires_at.eq(expires_at),
            ))
            .execute(conn)
            .await
            .map_err(DbError::query("refreshing a session"))?;
        Ok(())
    }

    pub async fn delete(
        conn: &mut AsyncPgConnection,
        token_hash: &[u8; 32],
    ) -> Result<(), DbError> {
        diesel::delete(sessions::table.filter(sessions::token_hash.eq(&token_hash[..])))
            .execute(conn)
            .await
            .map_err(DbError::query("ending a session"))?;
        Ok(())
    }

    /// Ends every session of `user` (after a recovery: whoever had the old passphrase
    /// is logged out everywhere).
    pub async fn delete_for_user(
        conn: &mut AsyncPgConnection,
        user: UserId,
    ) -> Result<usize, DbError> {
        diesel::delete(sessions::table.filter(sessions::user_id.eq(user.0)))
            .execute(conn)
            .await
            .map_err(DbError::query("ending a user's sessions"))
    }

    /// Removes every session that expired before `now`; returns how many.
    pub async fn delete_expired(
        conn: &mut AsyncPgConnection,
        now: OffsetDateTime,
    ) -> Result<usize, DbError> {
        diesel::delete(sessions::table.filter(sessions::expires_at.lt(now)))
            .execute(conn)
            .await
            .map_err(DbError::query("removing expired sessions"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_validated_and_lowercased() {
        assert_eq!(UserName::from_str(" Alice ").unwrap().as_str(), "alice");
        assert!(UserName::from_str("bob.smith_2-x").is_ok());
        for bad in ["", "-bob", ".x", "a b", "ünïcode", &"a".repeat(33), "a/b"] {
            assert_eq!(UserName::from_str(bad), Err(InvalidUserName), "{bad:?}");
        }
    }

    #[test]
    fn roles_round_trip() {
        for role in [Role::Owner, Role::Admin, Role::Member] {
            assert_eq!(Role::parse(role.as_str()).unwrap(), role);
        }
        assert!(Role::parse("root").is_err());
        assert!(Role::Admin.can_manage_users());
        assert!(!Role::Member.can_manage_users());
    }
}
