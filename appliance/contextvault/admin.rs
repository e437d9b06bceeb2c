//! `contextvault admin`: changes to a running appliance, for scripts and tests. Accounts
//! and tokens go through the appliance's PostgreSQL over its unix socket, as the
//! service's role (allowed for root and for the user the supervisor runs as); WireGuard
//! peers through the supervisor's control socket (root, or the supervisor's own user),
//! since only the supervisor may touch the interface.

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
    /// web setup). Any other account is marked as having a passphrase chosen by someone
    /// else: its holder must set their own, which also gives the vault a new recovery key,
    /// at their first login. (To let people choose their own from the start, invite
    /// them from the household page instead.)
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
    /// The WireGuard VPN's peers (the devices that may connect).
    Wg {
        #[command(subcommand)]
        command: WgCommand,
    },
    /// Snapshots of the data directory (on btrfs or ZFS): take one, list them, restore one.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
    /// Encrypted off-box backups (restic) to the repository `[backup]` names.
    Backup {
        #[command(subcommand)]
        command: BackupCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Make the backup key and the repository. The key is printed this once: keep it
    /// somewhere safe, away from the box; a restore onto a new box needs it.
    Init,
    /// Make a backup now (from a fresh snapshot) and wait for it.
    Run,
    /// The backups in the repository, oldest first: id, time, tags.
    List,
    /// Restore a backup onto this box, which must be new (no owner yet). The owners then
    /// log in with their passphrases.
    Restore {
        /// The repository, in restic's spelling (/path, rest:http://…, sftp:user@host:/path).
        #[arg(long)]
        repository: String,
        /// A file holding the backup key (one line).
        #[arg(long)]
        key_file: PathBuf,
        /// Which backup: its id, or "latest".
        #[arg(long, default_value = "latest")]
        snapshot: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Take a snapshot now; its id is the last line printed.
    Create {
        /// Why, in a few words (kept with the snapshot).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// One line per snapshot, oldest first: its id, when, its size where known, why.
    List,
    /// Restore a snapshot while the appliance runs: the vault goes offline for the time
    /// it takes (a snapshot of the present is taken first, so this can be undone).
    Restore { id: String },
}

#[derive(Debug, Subcommand)]
pub enum WgCommand {
    /// Add a device and print its WireGuard configuration (shown only now: its private
    /// key is kept nowhere). Import it in the WireGuard app, or save it as NAME.conf.
    AddPeer {
        /// 1 to 32 letters, digits, `-`, `_` and `.`, e.g. "olivia-phone".
        name: String,
        /// Also write the configuration as an SVG QR code to this file (created 0600;
        /// as secret as the configuration).
        #[arg(long)]
        qr_svg: Option<PathBuf>,
    },
    /// List the VPN's state and its peers, with their last handshake and traffic.
    List,
    /// Revoke a device: it is shut out at once.
    Revoke { name: String },
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
            AdminCommand::Wg { command } => wg(data_dir, command).await,
            AdminCommand::Snapshot { command } => snapshot(data_dir, command).await,
            AdminCommand::Backup { command } => backup(data_dir, command).await,
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
    // Whoever runs this knows the passphrase and sees the recovery key: unless this is
    // the box's first account (its owner, at the console), the holder renews both.
    let renew_required = role != Role::Owner;
    let user = match User::create_with_vault(
        &mut conn,
        &name,
        &hash,
        role,
        &bundle.to_bytes(),
        renew_required,
    )
    .await
    {
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
    if renew_required {
        println!(
            "`{}` must choose their own passphrase at their first login, which also replaces this recovery key",
            user.name
        );
    }
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

/// The running supervisor's control socket.
fn control(data_dir: &Path) -> cv_control::ControlClient {
    cv_control::ControlClient::new(DataLayout::new(data_dir).control_socket())
}

/// Adds the supervisor's refusal (or unreachability) to the context of `what`.
fn supervisor_error(data_dir: &Path, e: cv_control::ControlError) -> anyhow::Error {
    match e {
        cv_control::ControlError::Refused(message) => anyhow::Error::msg(message),
        cv_control::ControlError::Connect { .. } => anyhow::Error::new(e).context(format!(
            "is contextvault running with --data-dir {}?",
            data_dir.display()
        )),
        other => other.into(),
    }
}

async fn wg(data_dir: &Path, command: WgCommand) -> anyhow::Result<ExitCode> {
    let client = control(data_dir);
    match command {
        WgCommand::AddPeer { name, qr_svg } => {
            let added = client
                .wg_add_peer(&name)
                .await
                .map_err(|e| supervisor_error(data_dir, e))?;
            if let Some(path) = qr_svg {
                let svg =
                    cv_net::wg::qr_svg(added.client_config.text()).map(zeroize::Zeroizing::new)?;
                write_secret(&path, svg.as_bytes())
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            print_added(&added);
        }
        WgCommand::List => {
            let overview = client
                .wg_list_peers()
                .await
                .map_err(|e| supervisor_error(data_dir, e))?;
            print_overview(&overview);
        }
        WgCommand::Revoke { name } => {
            let peer = client
                .wg_revoke_peer(&name)
                .await
                .map_err(|e| supervisor_error(data_dir, e))?;
            #[allow(clippy::print_stdout)]
            {
                println!("revoked `{}` ({})", peer.name, peer.address);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::print_stdout)]
async fn snapshot(data_dir: &Path, command: SnapshotCommand) -> anyhow::Result<ExitCode> {
    let client = control(data_dir);
    match command {
        SnapshotCommand::Create { reason } => {
            let taken = client
                .snapshot_create(&reason)
                .await
                .map_err(|e| supervisor_error(data_dir, e))?;
            eprintln!("snapshot taken ({})", taken.reason);
            println!("{}", taken.id);
        }
        SnapshotCommand::List => {
            let overview = client
                .snapshot_list()
                .await
                .map_err(|e| supervisor_error(data_dir, e))?;
            if let Some(why) = &overview.unavailable {
                eprintln!("no snapshots on this box: {why}");
            } else if overview.snapshots.is_empty() {
                eprintln!("no snapshots yet ({})", overview.backend);
            }
            for s in &overview.snapshots {
                let size = s.size_bytes.map_or_else(|| "-".to_owned(), human_bytes);
                println!("{}  {}  {:>9}  {}", s.id, s.taken_at, size, s.reason);
            }
        }
        SnapshotCommand::Restore { id } => {
            eprintln!(
                "restoring {id}: the vault is offline until it is done (a snapshot of the present is taken first)"
            );
            client
                .snapshot_restore(&id)
                .await
                .map_err(|e| supervisor_error(data_dir, e))?;
            println!("restored {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::print_stdout)]
async fn backup(data_dir: &Path, command: BackupCommand) -> anyhow::Result<ExitCode> {
    let client = control(data_dir);
    match command {
        BackupCommand::Init => {
            let key = client
                .backup_init()
                .await
                .map_err(|e| supervisor_error(data_dir, e))?;
            eprintln!(
                "backups are set up. This is the backup key, shown only now: keep it away from \
                 the box (a password manager, paper); restoring onto a new box needs it."
            );
            println!("{}", key.text());
        }
        BackupCommand::Run => {
            eprintln!("making a backup (its progress is on the dashboard)…");
            let done = client
                .backup_run()
                .await
                .map_err(|e| supervisor_error(data_dir, e))?;
            println!(
                "backup {}: {} files, {} read, {} new, in {:.1} s",
                done.snapshot,
                done.files,
                human_bytes(done.bytes),
                human_bytes(done.added_bytes),
                done.seconds
            );
        }
        BackupCommand::List => {
            let backups = client
                .backup_list()
                .await
                .map_err(|e| supervisor_error(data_dir, e))?;
            if backups.is_empty() {
                eprintln!("no backups yet");
            }
            for b in backups {
                println!("{}  {}  {}", b.short_id, b.time, b.tags.join(","));
            }
        }
        BackupCommand::Restore {
            repository,
            key_file,
            snapshot,
        } => {
            let key = std::fs::read_to_string(&key_file)
                .with_context(|| format!("cannot read {}", key_file.display()))?;
            let key =
                cv_control::BackupKeyText::new(zeroize::Zeroizing::new(key.trim().to_owned()));
            let shown = cv_storage::Repository::parse(&repository)
                .map_or_else(|_| repository.clone(), |r| r.to_string());
            eprintln!(
                "restoring backup {snapshot} from {shown}; the vault is offline for part of it…"
            );
            client
                .backup_restore(&repository, key, &snapshot)
                .await
                .map_err(|e| supervisor_error(data_dir, e))?;
            println!("restored backup {snapshot}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The configuration on stdout (so `> phone.conf` saves exactly the file); what it is
/// on stderr.
#[allow(clippy::print_stdout)]
fn print_added(added: &cv_control::WgPeerAdded) {
    eprintln!(
        "added WireGuard peer `{}` with address {} (its configuration is shown only now):",
        added.peer.name, added.peer.address
    );
    print!("{}", added.client_config.text());
}

#[allow(clippy::print_stdout)]
fn print_overview(o: &cv_control::WgOverview) {
    let state = match (&o.reason, &o.backend) {
        (Some(reason), _) => format!("{} ({reason})", o.state.as_str()),
        (None, Some(backend)) => format!("{} ({backend})", o.state.as_str()),
        (None, None) => o.state.as_str().to_owned(),
    };
    println!("state:       {state}");
    println!("interface:   {}", o.interface);
    println!(
        "network:     {} (this appliance: {})",
        o.network, o.server_address
    );
    println!("listen port: {}", o.listen_port);
    println!(
        "endpoint:    {}",
        o.endpoint
            .as_deref()
            .unwrap_or("(not set: peers cannot be added)")
    );
    println!(
        "public key:  {}",
        o.server_public_key.as_deref().unwrap_or("(unknown)")
    );
    println!("peers:       {}", o.peers.len());
    if o.peers.is_empty() {
        return;
    }
    let width = o
        .peers
        .iter()
        .map(|p| p.peer.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!(
        "{:width$}  {:15}  {:25}  {:>12}  {:>12}  created",
        "name", "address", "last handshake", "received", "sent"
    );
    for p in &o.peers {
        let handshake = p
            .last_handshake
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| "never".to_owned());
        let created = p
            .peer
            .created_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        println!(
            "{:width$}  {:15}  {:25}  {:>12}  {:>12}  {created}",
            p.peer.name,
            p.peer.address.to_string(),
            handshake,
            p.rx_bytes,
            p.tx_bytes,
        );
    }
}

/// Writes a new file readable by its owner only (it holds a private key). An existing
/// file is not replaced.
fn write_secret(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}
