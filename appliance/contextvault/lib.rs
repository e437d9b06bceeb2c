//! The `contextvault` command line: one binary that is the root supervisor
//! (`run`, `dev`), the unprivileged vault service it starts (`serve`), the jailed AI
//! worker (`worker`, started through `jail-enter`), the status screen on the box's own
//! consoles (`console`), and the tools an administrator uses (`config check`, `admin`).
//!
//! Errors here are `anyhow` (this is the binary): each is printed once, with its causes,
//! and the process exits non-zero.

mod admin;
mod console;
mod logging;
mod worker;

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use cv_config::{Config, DevOverrides};

#[derive(Debug, Parser)]
#[command(
    name = "contextvault",
    version,
    about = "Context Vault: your private AI vault"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the appliance (as root, from the systemd unit).
    Run {
        #[arg(long, default_value = cv_config::DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Run the appliance for development: data under ./var, HTTPS on 8443, HTTP on 8080.
    Dev {
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        https_port: Option<u16>,
        #[arg(long)]
        http_port: Option<u16>,
        /// The WireGuard interface's UDP port (it runs when dev mode is root and
        /// WireGuard is available).
        #[arg(long)]
        wireguard_port: Option<u16>,
        /// The WireGuard interface's name (default cvwg0).
        #[arg(long)]
        wireguard_interface: Option<String>,
        /// Do not run the WireGuard interface.
        #[arg(long)]
        no_wireguard: bool,
    },
    /// The vault service; started by the supervisor, not by hand.
    #[command(hide = true)]
    Serve,
    /// A jailed AI worker; started by the supervisor, not by hand.
    #[command(hide = true)]
    Worker(worker::WorkerArgs),
    /// The status screen on the box's consoles (tty1, ttyS0): the dashboard's addresses,
    /// the setup code while the box is unclaimed, and the health of each component.
    Console(console::ConsoleArgs),
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Administration of a running appliance.
    Admin {
        /// The appliance's data directory.
        #[arg(long, default_value = "/var/lib/contextvault")]
        data_dir: PathBuf,
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a config file and explain what is wrong with it.
    Check {
        #[arg(long, default_value = cv_config::DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
}

/// Parses the command line and runs the command; the exit code says whether it worked.
pub fn main() -> ExitCode {
    // `contextvault jail-enter` builds a worker's jail around itself (see `cv_sandbox`):
    // it must run before anything could start a thread, so before any parsing.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "jail-enter")
    {
        return cv_sandbox::enter_jail_and_exec();
    }
    // Everything here speaks TLS through ring; the update client's TUF library also
    // builds rustls's aws-lc-rs backend, and with two backends built rustls would pick no
    // default for the code (the ACME client's) that asks it for one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run { config } => {
            let config = Config::from_file(&config)?;
            supervise(config)
        }
        Command::Dev {
            data_dir,
            https_port,
            http_port,
            wireguard_port,
            wireguard_interface,
            no_wireguard,
        } => {
            let cwd = std::env::current_dir().context("cannot read the working directory")?;
            let config = Config::dev(
                DevOverrides {
                    data_dir,
                    https_port,
                    http_port,
                    wireguard_port,
                    wireguard_interface,
                    no_wireguard,
                },
                &cwd,
            )?;
            supervise(config)
        }
        Command::Serve => serve(),
        Command::Worker(args) => worker::run(&args),
        Command::Console(args) => console::run(&args),
        Command::Config {
            command: ConfigCommand::Check { config },
        } => config_check(&config),
        Command::Admin { data_dir, command } => admin::run(&data_dir, command),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("supervisor")
        .build()
        .context("cannot start the async runtime")
}

fn supervise(config: Config) -> anyhow::Result<ExitCode> {
    logging::init(&config.log.format.to_string(), &config.log.level);
    let exe = std::env::current_exe().context("cannot find this program's own path")?;
    runtime()?.block_on(cv_supervisor::run(config, exe))?;
    Ok(ExitCode::SUCCESS)
}

fn serve() -> anyhow::Result<ExitCode> {
    // The service holds unlocked keys in memory (soon): no core dumps, no ptrace by
    // other processes of the same user, and no privilege gain through exec.
    nix::sys::prctl::set_dumpable(false).context("cannot make the service non-dumpable")?;
    nix::sys::prctl::set_no_new_privs().context("cannot set no_new_privs")?;
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .context("cannot read the supervisor's handoff on stdin")?;
    let handoff: cv_control::ServiceHandoff = serde_json::from_slice(&input).context(
        "the handoff on stdin is not valid (serve is started by the supervisor, not by hand)",
    )?;
    logging::init(&handoff.log_format, &handoff.log_level);
    cv_web::run_blocking(handoff)?;
    Ok(ExitCode::SUCCESS)
}

fn snapshot_summary(backend: &dyn cv_storage::snapshot::SnapshotBackend) -> String {
    match backend.unavailable() {
        Some(why) => format!("none: {why}"),
        None => format!("{} (the data directory can be snapshotted)", backend.kind()),
    }
}

#[allow(clippy::print_stdout)]
fn config_check(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let config = match Config::from_file(path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let problems = config.check_environment();
    println!("{}", config.summary());
    // What the data directory is on, and so whether it has snapshots.
    if config.data_dir.is_dir()
        && let Ok(backend) =
            cv_storage::snapshot::detect(&config.data_dir, cv_config::storage_wanted(&config))
    {
        println!("snapshots: {}", snapshot_summary(backend.as_ref()));
    }
    if problems.is_empty() {
        println!("{}: OK", path.display());
        Ok(ExitCode::SUCCESS)
    } else {
        for p in &problems {
            eprintln!("{p}");
        }
        eprintln!("{}: {} problem(s)", path.display(), problems.len());
        Ok(ExitCode::FAILURE)
    }
}
