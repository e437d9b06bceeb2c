//! The audit log: what happened to an account, for its owner to see. Events carry only
//! non-secret detail (a token's name, a count, the client address), never vault content.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use time::OffsetDateTime;

use crate::DbError;
use crate::models::UserId;
use crate::schema::audit_events;

/// What happened. Stored by its [`Event::as_str`] name, which never changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Login,
    LoginFailed,
    Unlock,
    UnlockFailed,
    Lock,
    PassphraseChanged,
    Recovered,
    Export,
    ExportFailed,
    Import,
    TokenCreated,
    TokenUsed,
    TokenRevoked,
    /// The account's holder chose their own passphrase, replacing one someone else set;
    /// the vault got a new key and a new recovery key.
    Renewed,
    RecoveryKeyRotated,
    InvitationCreated,
    InvitationRevoked,
    /// Someone joined with an invitation (recorded for the inviter and the new account).
    InvitationAccepted,
    RoleChanged,
    /// An owner or admin removed a member (recorded for the one who removed them: the
    /// member's own log goes with their account).
    MemberRemoved,
    /// A member deleted their own account (recorded for the owner).
    AccountDeleted,
    /// Self-update (recorded for the owners, who run the box): a hint was taken or
    /// refused, an update was refused, installed, confirmed, or rolled back.
    UpdateHint,
    UpdateHintRefused,
    UpdateRefused,
    UpdateInstalled,
    UpdateConfirmed,
    UpdateRolledBack,
    /// Snapshots (recorded for the owners): one was restored; a migration failed and the
    /// database was rolled back to the snapshot taken before it.
    SnapshotRestored,
    MigrationRolledBack,
    /// A backup was restored onto this box (recorded for the owners it brought back).
    BackupRestored,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Login => "login",
            Event::LoginFailed => "login_failed",
            Event::Unlock => "unlock",
            Event::UnlockFailed => "unlock_failed",
            Event::Lock => "lock",
            Event::PassphraseChanged => "passphrase_changed",
            Event::Recovered => "recovered",
            Event::Export => "export",
            Event::ExportFailed => "export_failed",
            Event::Import => "import",
            Event::TokenCreated => "token_created",
            Event::TokenUsed => "token_used",
            Event::TokenRevoked => "token_revoked",
            Event::Renewed => "renewed",
            Event::RecoveryKeyRotated => "recovery_key_rotated",
            Event::InvitationCreated => "invitation_created",
            Event::InvitationRevoked => "invitation_revoked",
            Event::InvitationAccepted => "invitation_accepted",
            Event::RoleChanged => "role_changed",
            Event::MemberRemoved => "member_removed",
            Event::AccountDeleted => "account_deleted",
            Event::UpdateHint => "update_hint",
            Event::UpdateHintRefused => "update_hint_refused",
            Event::UpdateRefused => "update_refused",
            Event::UpdateInstalled => "update_installed",
            Event::UpdateConfirmed => "update_confirmed",
            Event::UpdateRolledBack => "update_rolled_back",
            Event::SnapshotRestored => "snapshot_restored",
            Event::MigrationRolledBack => "migration_rolled_back",
            Event::BackupRestored => "backup_restored",
        }
    }

    /// How the event reads on the activity page.
    pub fn describe(name: &str) -> &'static str {
        match name {
            "login" => "Logged in",
            "login_failed" => "Failed login",
            "unlock" => "Vault unlocked",
            "unlock_failed" => "Failed unlock",
            "lock" => "Vault locked",
            "passphrase_changed" => "Passphrase changed",
            "recovered" => "Passphrase reset with the recovery key",
            "export" => "Vault exported",
            "export_failed" => "Export refused",
            "import" => "Vault imported",
            "token_created" => "API token created",
            "token_used" => "API token used",
            "token_revoked" => "API token revoked",
            "renewed" => "Own passphrase and new recovery key set",
            "recovery_key_rotated" => "New recovery key made (the old one no longer works)",
            "invitation_created" => "Invitation sent",
            "invitation_revoked" => "Invitation revoked",
            "invitation_accepted" => "Invitation accepted",
            "role_changed" => "Role changed",
            "member_removed" => "Household member removed",
            "account_deleted" => "A member deleted their account",
            "update_hint" => "Update hint received",
            "update_hint_refused" => "Update hint refused",
            "update_refused" => "Update refused",
            "update_installed" => "Update installed",
            "update_confirmed" => "Update confirmed",
            "update_rolled_back" => "Update rolled back",
            "snapshot_restored" => "Snapshot restored",
            "migration_rolled_back" => "Migration failed, rolled back",
            "backup_restored" => "Restored from a backup",
            _ => "Other",
        }
    }
}

/// One recorded event.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub at: OffsetDateTime,
    pub event: String,
    pub detail: String,
    pub client: Option<String>,
}

/// Records an event for `user`. `detail` is cut to 200 characters.
pub async fn record(
    conn: &mut AsyncPgConnection,
    user: UserId,
    event: Event,
    detail: &str,
    client: Option<&str>,
) -> Result<(), DbError> {
    let detail: String = detail.chars().take(200).collect();
    let client = client.map(|c| c.chars().take(64).collect::<String>());
    diesel::insert_into(audit_events::table)
        .values((
            audit_events::user_id.eq(user.0),
            audit_events::event.eq(event.as_str()),
            audit_events::detail.eq(detail),
            audit_events::client.eq(client),
        ))
        .execute(conn)
        .await
        .map_err(DbError::query("recording an audit event"))?;
    Ok(())
}

/// Records an event about the whole box for every owner (there is one, once the box is
/// claimed): how many were written.
pub async fn record_for_owners(
    conn: &mut AsyncPgConnection,
    event: Event,
    detail: &str,
) -> Result<usize, DbError> {
    use crate::schema::users;
    let owners: Vec<uuid::Uuid> = users::table
        .filter(users::role.eq(crate::models::Role::Owner.as_str()))
        .select(users::id)
        .load(conn)
        .await
        .map_err(DbError::query("looking for the owners"))?;
    for owner in &owners {
        record(conn, UserId(*owner), event, detail, None).await?;
    }
    Ok(owners.len())
}

/// The account's newest events, newest first.
pub async fn newest(
    conn: &mut AsyncPgConnection,
    user: UserId,
    limit: i64,
) -> Result<Vec<AuditEvent>, DbError> {
    let rows: Vec<(OffsetDateTime, String, String, Option<String>)> = audit_events::table
        .filter(audit_events::user_id.eq(user.0))
        .order((audit_events::at.desc(), audit_events::id.desc()))
        .limit(limit)
        .select((
            audit_events::at,
            audit_events::event,
            audit_events::detail,
            audit_events::client,
        ))
        .load(conn)
        .await
        .map_err(DbError::query("reading the audit log"))?;
    Ok(rows
        .into_iter()
        .map(|(at, event, detail, client)| AuditEvent {
            at,
            event,
            detail,
            client,
        })
        .collect())
}
