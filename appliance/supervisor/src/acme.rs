//! The `acme` task: keeps a certificate from the configured ACME CA in place.
//!
//! Each turn of the loop reads what is installed (`<tls>/acme/`) and decides:
//!
//! - nothing valid for every configured name: order now;
//! - a valid certificate: renew at [`renewal_time`] (a third of its lifetime left, or a
//!   point inside the CA's ARI window when the CA offers one), sleeping until then;
//! - after a failure: retry after [`retry_delay`] (1 min doubling to 6 h), while the
//!   service keeps serving what it has (the old ACME certificate, or the local CA's).
//!
//! SIGHUP (a reload) wakes it for a check; a `acme_renew` control request (the
//! dashboard's "Renew now") makes the next attempt happen now even when nothing is due.
//! A new certificate is installed atomically and the service told to reload it, so
//! nothing restarts. Every turn updates `ApplianceStatus::acme`.

use std::sync::Arc;
use std::time::Duration;

use cv_config::{AcmeChallenge, Config};
use cv_control::AcmeStatus;
use cv_net::acme::{
    AccountSettings, AcmeAccount, AcmeError, AcmeName, AcmePaths, ChallengeDirs, Installed,
    IssuedCert, Rfc2136, Solver, TsigAlgorithm, TsigKey, TsigSecret, install, load_installed,
    obtain_certificate, renewal_time, retry_delay, until,
};
use cv_net::tls::KeyOwner;
use time::OffsetDateTime;

use crate::{Context, Stop, TaskResult};

/// The longest sleep between checks even when nothing is due: the clock may jump, and
/// the CA's renewal window may move (RFC 9773 §4.2 asks clients to poll it about daily).
const MAX_SLEEP: Duration = Duration::from_secs(24 * 60 * 60);

pub async fn run(ctx: Arc<Context>, mut stop: Stop) -> TaskResult {
    let acme = &ctx.config.acme;
    let mut status = AcmeStatus {
        enabled: acme.enabled,
        names: acme.names.clone(),
        challenge: acme.challenge.to_string(),
        directory_url: acme.directory_url.clone(),
        issuer: None,
        serial: None,
        not_before: None,
        not_after: None,
        last_attempt: None,
        last_error: None,
        last_error_kind: None,
        next_attempt: None,
    };
    if !acme.enabled {
        ctx.board.set_acme(status);
        stop.requested().await;
        return Ok(());
    }
    let names: Vec<AcmeName> = match acme.names.iter().map(|n| AcmeName::parse(n)).collect() {
        Ok(names) => names,
        Err(e) => {
            // The config checked them already; this is the same check again.
            status.last_error = Some(e.to_string());
            status.last_error_kind = Some("settings".into());
            ctx.board.set_acme(status);
            stop.requested().await;
            return Ok(());
        }
    };
    let paths = AcmePaths::new(&ctx.layout.tls_dir());
    let key_owner = KeyOwner {
        uid: ctx.users.service.uid.as_raw(),
        gid: ctx.users.service.gid.as_raw(),
    };
    let dirs = ChallengeDirs {
        http: ctx.layout.acme_http_dir(),
        tls_alpn: ctx.layout.acme_tls_alpn_dir(),
        owner: Some(KeyOwner {
            uid: nix::unistd::Uid::effective().as_raw(),
            gid: ctx.users.service.gid.as_raw(),
        }),
    };
    let settings = AccountSettings {
        directory_url: acme.directory_url.clone(),
        contact_email: acme.contact_email.clone(),
        ca_bundle: acme.ca_bundle.clone(),
    };
    let mut reload = ctx.reload.subscribe();
    let mut failures: u32 = 0;
    let mut forced = false;
    loop {
        let now = OffsetDateTime::now_utc();
        let installed = load_installed(&paths, now);
        let due = match (&installed, failures) {
            _ if forced => now,
            (Installed::Valid(cert), 0) if cert.covers(&names) => {
                show_cert(&mut status, cert);
                let window = ari_window(&settings, &paths, cert).await;
                renewal_time(
                    cert.info.not_before,
                    cert.info.not_after,
                    window,
                    rand::random::<f64>(),
                )
            }
            (Installed::Valid(cert), _) => {
                show_cert(&mut status, cert);
                status
                    .last_attempt
                    .map_or(now, |last| last + retry_delay(failures))
            }
            (Installed::Unusable(reason), 0) => {
                tracing::warn!(task = "acme", %reason, "the ACME certificate is unusable; ordering a new one");
                now
            }
            (_, 0) => now,
            _ => status
                .last_attempt
                .map_or(now, |last| last + retry_delay(failures)),
        };
        if due > now {
            status.next_attempt = Some(due);
            ctx.board.set_acme(status.clone());
            tokio::select! {
                _ = stop.requested() => return Ok(()),
                _ = tokio::time::sleep(until(now, due).min(MAX_SLEEP)) => {}
                _ = ctx.acme_renew.notified() => forced = true,
                _ = reload.recv() => {}
            }
            continue;
        }

        forced = false;
        status.last_attempt = Some(now);
        status.next_attempt = None;
        ctx.board.set_acme(status.clone());
        tracing::info!(task = "acme", names = %acme.names.join(","), challenge = %acme.challenge, "ordering a certificate");
        let attempt = async {
            let solver = solver(&ctx.config, &dirs)?;
            let issued = obtain_certificate(
                &settings,
                &paths,
                &names,
                &solver,
                OffsetDateTime::now_utc(),
            )
            .await?;
            install(&paths, &issued, Some(key_owner))?;
            Ok::<IssuedCert, AcmeError>(issued)
        };
        let result = tokio::select! {
            _ = stop.requested() => return Ok(()),
            result = attempt => result,
        };
        match result {
            Ok(issued) => {
                failures = 0;
                tracing::info!(
                    task = "acme",
                    serial = %issued.serial,
                    issuer = %issued.info.issuer,
                    not_after = %issued.info.not_after,
                    "installed a new ACME certificate"
                );
                show_cert(&mut status, &issued);
                status.last_error = None;
                status.last_error_kind = None;
                // The service swaps it in on SIGHUP; nothing restarts.
                let _ = ctx.reload.send(());
                // Our own reload wakes this loop once; drain it.
                let _ = reload.try_recv();
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let delay = retry_delay(failures);
                tracing::error!(
                    task = "acme",
                    error = %e,
                    retry_in_secs = delay.as_secs(),
                    "ACME failed; the current certificate stays in use"
                );
                status.last_error = Some(e.to_string());
                status.last_error_kind = Some(error_kind(&e).to_owned());
            }
        }
    }
}

fn show_cert(status: &mut AcmeStatus, cert: &IssuedCert) {
    status.issuer = Some(cert.info.issuer.clone());
    status.serial = Some(cert.serial.clone());
    status.not_before = Some(cert.info.not_before);
    status.not_after = Some(cert.info.not_after);
}

/// The CA's renewal window for `cert`, when it offers ARI and can be reached; otherwise
/// `None` (the third-of-lifetime rule applies).
async fn ari_window(
    settings: &AccountSettings,
    paths: &AcmePaths,
    cert: &IssuedCert,
) -> Option<cv_net::acme::RenewalWindow> {
    let account = AcmeAccount::load_or_create(settings, paths).await.ok()?;
    match account.renewal_window(&cert.leaf_der).await {
        Ok(window) => window,
        Err(e) => {
            tracing::debug!(task = "acme", error = %e, "no ARI renewal window");
            None
        }
    }
}

/// The solver for the configured challenge. The TSIG secret is read at every attempt,
/// so a fixed file is picked up without a restart.
fn solver(config: &Config, dirs: &ChallengeDirs) -> Result<Solver, AcmeError> {
    match config.acme.challenge {
        AcmeChallenge::Http01 => {
            dirs.create()?;
            Ok(Solver::Http01(dirs.clone()))
        }
        AcmeChallenge::TlsAlpn01 => {
            dirs.create()?;
            Ok(Solver::TlsAlpn01(dirs.clone()))
        }
        AcmeChallenge::Dns01 => {
            let dns = config.acme.dns.as_ref().ok_or_else(|| {
                AcmeError::Dns("dns-01 is chosen but no DNS server is set".into())
            })?;
            let secret = TsigSecret::read_file(&dns.tsig_secret_file)?;
            let algorithm: TsigAlgorithm = dns.tsig_algorithm.parse().map_err(AcmeError::Dns)?;
            let key =
                TsigKey::new(&dns.tsig_key_name, algorithm, secret).map_err(AcmeError::Dns)?;
            let zone = AcmeName::parse(&dns.zone)?;
            Ok(Solver::Dns01(Rfc2136::new(dns.server, zone, key)))
        }
    }
}

/// A stable word for an error, safe for the public `/healthz`.
fn error_kind(e: &AcmeError) -> &'static str {
    match e {
        AcmeError::Ca { .. } | AcmeError::AccountGone | AcmeError::Protocol(_) => "ca_unreachable",
        AcmeError::Validation { .. } => "validation_failed",
        AcmeError::Dns(_) => "dns_update_failed",
        AcmeError::InvalidName(_) | AcmeError::TsigSecret { .. } | AcmeError::CaBundle { .. } => {
            "settings"
        }
        AcmeError::Certificate(_) => "certificate",
        AcmeError::Tls(_) | AcmeError::Files { .. } => "files",
    }
}
