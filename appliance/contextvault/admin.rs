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
