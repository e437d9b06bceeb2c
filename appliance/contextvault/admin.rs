//! `contextvault admin`: changes to a running appliance, for scripts and tests. It
//! talks to the appliance's PostgreSQL over its unix socket, as the service's role
//! (allowed for root and for the user the supervisor runs as).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use cv_crypto::Passphrase;
use cv_db::models::{CreateUserError, Role, SetupCode, User, UserName, owner_exists};
use cv_db::tokens::Scope;
use cv_storage::DataLayout;
use zeroize::Zeroize;

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an account and its vault, and print the vault's recovery key (once). The
    /// first account created on a box with no owner becomes its owner (and closes the
    /// web setup).
    CreateUser {
        name: String,
        /// A file holding the passphrase (one line; a trailing newline is ignored).
        #[arg(long)]
        passphrase_file: PathBuf,
        /// Make the account an admin, who can add household members.
        #[arg(long)]
        admin: bool,
    },
    /// Create a bearer token for the API and print it (once). A `capture` token can add
    /// to the vault even while it is locked, and read nothing.
    CreateToken {
        #[arg(long)]
        user: String,
        /// capture, read or full.
        #[arg(long)]
        scope: String,
        /// A label to recognise (and revoke) it by, e.g. "iphone-shortcut".
        #[arg(long, default_value = "cli")]
        name: String,
    },
    /// Revoke a user's token by its label.
    RevokeToken {
        #[arg(long)]
        user: String,
        #[arg(long)]
        name: String,
    },
}

pub fn run(data_dir: &Path, command: AdminCommand) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        match command {
            AdminCommand::CreateUser {
                name,
                passphrase_file,
                admin,
            } => create_user(data_dir, &name, &passphrase_file, admin).await,
            AdminCommand::CreateToken { user, scope, name } => {
                create_token(data_dir, &user, &scope, &name).await
            }
            AdminCommand::RevokeToken { user, name } => revoke_token(data_dir, &user, &name).await,
        }
    })
}

#[allow(clippy::print_stdout)]
async fn create_user(
    data_dir: &Path,
    name: &str,
    passphrase_file: &Path,
    admin: bool,
) -> anyhow::Result<ExitCode> {
    let name = UserName::from_str(name).with_context(|| format!("invalid user name {name:?}"))?;
    let mut text = std::fs::read_to_string(passphrase_file).with_context(|| {
        format!(
            "cannot read the passphrase file {}",
            passphrase_file.display()
        )
    })?;
    let pass = Passphrase::new(text.trim_end_matches(['\n', '\r']).to_owned());
    text.zeroize();
    let pass = pass.context("the passphrase in the file is not acceptable")?;
    // Argon2id twice (the login hash and the vault's key-encryption key): off the runtime.
    let (hash, bundle, recovery) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let hash = cv_crypto::hash_password(&pass)?;
        let (bundle, _vault, recovery) = cv_crypto::vault::create_vault(&pass)?;
        Ok((hash, bundle, recovery))
    })
    .await
    .context("hashing the passphrase failed")??;

    let layout = DataLayout::new(data_dir);
    let socket_dir = layout.postgres_socket_dir();
    let url =
        cv_storage::postgres::connection_string(&socket_dir, cv_db::SERVICE_ROLE, cv_db::DATABASE);
    let mut conn = cv_db::connect_once(&url).await.with_context(|| {
        format!(
            "cannot reach the appliance's database in {}: is contextvault running with --data-dir {}?",
            socket_dir.display(),
            data_dir.display()
        )
    })?;
    let role = if !owner_exists(&mut conn).await? {
        Role::Owner
    } else if admin {
        Role::Admin
    } else {
        Role::Member
    };
    let user =
        match User::create_with_vault(&mut conn, &name, &hash, role, &bundle.to_bytes()).await {
            Ok(user) => user,
            Err(CreateUserError::NameTaken(name)) => bail!("a user named `{name}` already exists"),
            Err(e) => return Err(e.into()),
        };
    if role == Role::Owner {
        // The box has an owner now: the setup code must no longer work.
        SetupCode::clear(&mut conn).await?;
    }
    println!("created {} `{}` ({})", user.role, user.name, user.id);
    println!(
        "recovery key (shown only now; it opens the vault if the passphrase is lost):\n  {}",
        recovery.to_display().as_str()
    );
    Ok(ExitCode::SUCCESS)
}

/// A connection to the running appliance's database, as the service role.
async fn connect(data_dir: &Path) -> anyhow::Result<diesel_async::AsyncPgConnection> {
    let socket_dir = DataLayout::new(data_dir).postgres_socket_dir();
    let url =
        cv_storage::postgres::connection_string(&socket_dir, cv_db::SERVICE_ROLE, cv_db::DATABASE);
    cv_db::connect_once(&url).await.with_context(|| {
        format!(
            "cannot reach the appliance's database in {}: is contextvault running with --data-dir {}?",
            socket_dir.display(),
            data_dir.display()
        )
    })
}

async fn find_user(conn: &mut diesel_async::AsyncPgConnection, name: &str) -> anyhow::Result<User> {
    let name = UserName::from_str(name).with_context(|| format!("invalid user name {name:?}"))?;
    match User::find_for_login(conn, &name).await? {
        Some((user, _)) => Ok(user),
        None => bail!("there is no user named `{name}`"),
    }
}

#[allow(clippy::print_stdout)]
async fn create_token(
    data_dir: &Path,
    user: &str,
    scope: &str,
    name: &str,
) -> anyhow::Result<ExitCode> {
    let scope = Scope::from_str(scope).with_context(|| format!("invalid scope {scope:?}"))?;
    let label = cv_db::tokens::check_name(name).map_err(anyhow::Error::msg)?;
    let mut conn = connect(data_dir).await?;
    let user = find_user(&mut conn, user).await?;
    let (token, digest) = cv_crypto::mint_api_token();
    cv_db::tokens::create(&mut conn, user.id, label, scope, &digest).await?;
    cv_db::audit::record(
        &mut conn,
        user.id,
        cv_db::audit::Event::TokenCreated,
        &format!("{label} ({scope}), from the command line"),
        None,
    )
    .await?;
    println!(
        "created {scope} token `{label}` for `{}` (shown only now):\n  {}",
        user.name,
        token.as_str()
    );
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::print_stdout)]
async fn revoke_token(data_dir: &Path, user: &str, name: &str) -> anyhow::Result<ExitCode> {
    let mut conn = connect(data_dir).await?;
    let user = find_user(&mut conn, user).await?;
    match cv_db::tokens::revoke_by_name(&mut conn, user.id, name).await? {
        0 => bail!("`{}` has no active token named `{name}`", user.name),
        n => {
            cv_db::audit::record(
                &mut conn,
                user.id,
                cv_db::audit::Event::TokenRevoked,
                &format!("{name}, from the command line"),
                None,
            )
            .await?;
            println!("revoked {n} token(s) named `{name}` of `{}`", user.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}
