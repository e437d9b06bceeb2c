//! `contextvault-publish`: the owner's tool for their own update repository.
//!
//! - `keys --dir DIR`: four new Ed25519 role keys in DIR and `DIR/root.json` (version 1),
//!   the root to bake into the appliance image.
//! - `add --repo DIR --keys DIR --bundle FILE --version V --compatible C`: add (or
//!   replace) a RAUC bundle and re-sign targets, snapshot and timestamp. Run it again
//!   with the same bundle to renew expiring metadata.
//! - `rotate-root --repo DIR --keys DIR --new-root-key FILE`: a new root version with a
//!   new root key, signed by the old and the new one (FILE is created if missing).
//! - `hint --url URL --secret-file FILE [--ca FILE]`: tell a box to check now (a
//!   Standard Webhooks hint signed with the box's hint secret); prints its answer.
//!
//! Errors print one line and exit non-zero.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use cv_update::publish::{self, Keys, Publication};

#[derive(Debug, Parser)]
#[command(
    name = "contextvault-publish",
    about = "Publish Context Vault update bundles (TUF repository, offline keys)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate the four role keys and DIR/root.json.
    Keys {
        /// Directory for root.pem, targets.pem, snapshot.pem, timestamp.pem and root.json.
        #[arg(long)]
        dir: PathBuf,
        /// Days until root.json expires.
        #[arg(long, default_value_t = 365, allow_hyphen_values = true)]
        expires_days: i64,
    },
    /// Add (or replace) a bundle and re-sign the repository.
    Add {
        /// The repository (metadata/ and targets/ inside); created when empty.
        #[arg(long)]
        repo: PathBuf,
        /// The key directory (as written by `keys`); its root.json is the trusted root.
        #[arg(long)]
        keys: PathBuf,
        /// The RAUC bundle.
        #[arg(long)]
        bundle: PathBuf,
        /// The bundle's version (semver).
        #[arg(long)]
        version: semver::Version,
        /// The board it is for (RAUC compatible), e.g. contextvault-x86_64.
        #[arg(long)]
        compatible: String,
        /// Days until targets.json and snapshot.json expire (may be negative).
        #[arg(long, default_value_t = 90, allow_hyphen_values = true)]
        expires_days: i64,
        /// Days until timestamp.json expires (may be negative).
        #[arg(long, default_value_t = 7, allow_hyphen_values = true)]
        timestamp_expires_days: i64,
    },
    /// Tell a box to check for an update now: a signed hint (Standard Webhooks).
    Hint {
        /// The box's address, e.g. https://contextvault.local/ (the hint goes to
        /// /api/v1/update/hint below it).
        #[arg(long)]
        url: url::Url,
        /// A file holding the box's hint secret (`whsec_…`, its update.hint_secret_file).
        #[arg(long)]
        secret_file: PathBuf,
        /// PEM roots to trust for the box's HTTPS (its local CA, /ca.pem); the system's
        /// roots by default.
        #[arg(long)]
        ca: Option<PathBuf>,
    },
    /// Replace the root key: a new root version signed by the old and the new key.
    RotateRoot {
        /// The repository.
        #[arg(long)]
        repo: PathBuf,
        /// The key directory holding the current root.pem.
        #[arg(long)]
        keys: PathBuf,
        /// The new root key (PKCS#8 PEM); generated if the file does not exist.
        #[arg(long)]
        new_root_key: PathBuf,
        /// Days until the new root expires.
        #[arg(long, default_value_t = 365, allow_hyphen_values = true)]
        expires_days: i64,
    },
}

fn in_days(days: i64) -> anyhow::Result<jiff::Timestamp> {
    let hours = days
        .checked_mul(24)
        .context("the number of days is too large")?;
    jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(hours))
        .context("the number of days is too large")
}

#[allow(clippy::print_stdout)]
async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Keys { dir, expires_days } => {
            let keys = publish::generate_keys(&dir)?;
            let root = dir.join("root.json");
            publish::create_root(&keys, &root, in_days(expires_days)?).await?;
            println!("keys and {} written; keep root.pem offline", root.display());
        }
        Command::Add {
            repo,
            keys,
            bundle,
            version,
            compatible,
            expires_days,
            timestamp_expires_days,
        } => {
            let expires = in_days(expires_days)?;
            publish::publish(
                &repo,
                &keys.join("root.json"),
                &Keys::in_dir(&keys),
                &Publication {
                    bundle: &bundle,
                    version: &version,
                    compatible: &compatible,
                    targets_expires: expires,
                    snapshot_expires: expires,
                    timestamp_expires: in_days(timestamp_expires_days)?,
                },
            )
            .await?;
            println!(
                "{} {version} ({compatible}) published in {}",
                bundle.display(),
                repo.display()
            );
        }
        Command::Hint {
            url,
            secret_file,
            ca,
        } => {
            let text = zeroize::Zeroizing::new(
                std::fs::read_to_string(&secret_file)
                    .with_context(|| format!("the secret file {}", secret_file.display()))?,
            );
            let secret = cv_update::hint::HintSecret::parse(text.trim())?;
            let mut client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30));
            if let Some(ca) = ca {
                let pem = std::fs::read(&ca).with_context(|| format!("{}", ca.display()))?;
                let roots = reqwest::Certificate::from_pem_bundle(&pem)
                    .with_context(|| format!("{} holds no PEM certificate", ca.display()))?;
                client = client.tls_built_in_root_certs(false);
                for root in roots {
                    client = client.add_root_certificate(root);
                }
            }
            let client = client.build().context("cannot set up the HTTPS client")?;
            let id = format!("hint-{}", uuid_like());
            let timestamp = jiff::Timestamp::now().as_second();
            let body = r#"{"type":"update.published"}"#;
            let target = url
                .join("api/v1/update/hint")
                .context("the box's URL cannot take a path")?;
            let mut request = client.post(target.clone());
            for (name, value) in cv_update::hint::headers(&secret, &id, timestamp, body.as_bytes())
            {
                request = request.header(name, value);
            }
            let response = request
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .with_context(|| format!("{target} cannot be reached"))?;
            let status = response.status();
            let answer: serde_json::Value = response.json().await.unwrap_or_default();
            let message = answer["message"].as_str().unwrap_or("(no message)");
            if !status.is_success() {
                anyhow::bail!("the box refused the hint ({status}): {message}");
            }
            println!("{message}");
        }
        Command::RotateRoot {
            repo,
            keys,
            new_root_key,
            expires_days,
        } => {
            if !new_root_key.exists() {
                publish::generate_key(&new_root_key)?;
                println!("new root key written to {}", new_root_key.display());
            }
            publish::rotate_root(
                &repo,
                &Keys::in_dir(&keys),
                &new_root_key,
                in_days(expires_days)?,
            )
            .await?;
            println!(
                "root rotated in {}; use {} as root.pem from now on",
                repo.display(),
                new_root_key.display()
            );
        }
    }
    Ok(())
}

/// 128 random bits as hex: a hint's unique id.
fn uuid_like() -> String {
    use rand::RngCore as _;
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|rt| rt.block_on(run(cli.command)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Our errors already carry their causes in their own message.
            let line = e.to_string().replace('\n', " ");
            eprintln!("error: {line}");
            ExitCode::FAILURE
        }
    }
}
