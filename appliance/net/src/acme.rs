//! Certificates from a public CA over ACME (RFC 8555), for the names the box is reached
//! by from the internet.
//!
//! The supervisor (root) runs this: it owns the account key and the certificate files.
//! The vault service owns the sockets and answers the CA's checks from files the
//! supervisor publishes ([`ChallengeDirs`]); DNS-01 needs no socket at all
//! ([`Rfc2136`]). In order, [`obtain_certificate`]:
//!
//! 1. loads the account from `<tls>/acme/account.json`, or creates one (the key never
//!    leaves that 0600 file; a stored account of another directory URL is replaced);
//! 2. orders a certificate for the names, publishes each challenge's answer with the
//!    chosen [`Solver`], tells the CA to look, and waits for the order to be ready;
//! 3. withdraws every answer it published (also when something failed);
//! 4. finalizes with a fresh P-256 key and a CSR (rcgen), downloads the chain, and
//!    checks it ([`IssuedCert::from_pem`]) before anything is written ([`install`]).
//!
//! When to renew is a pure function ([`renewal_time`], [`retry_delay`]).
//!
//! ## Errors
//!
//! One [`AcmeError`] for the module. Messages name the step or file and never carry a
//! key or secret: instant-acme's errors hold URLs and the CA's problem documents only.

mod challenge;
mod dns;
mod names;
mod schedule;
mod store;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use instant_acme::{
    Account, AccountBuilder, AccountCredentials, AuthorizationStatus, CertificateIdentifier,
    ChallengeType, Identifier, NewAccount, NewOrder, Order, OrderStatus, RetryPolicy,
};
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroizing;

pub use self::challenge::{
    ACME_TLS_ALPN_PROTOCOL, ChallengeDirs, http01_answer, is_valid_token, tls_alpn01_key,
};
pub use self::dns::{CHALLENGE_LABEL, Rfc2136, TsigAlgorithm, TsigKey, TsigSecret, tsig_key_name};
pub use self::names::{AcmeName, InvalidAcmeName};
pub use self::schedule::{RETRY_FIRST, RETRY_MAX, RenewalWindow, renewal_time, retry_delay, until};
pub use self::store::{AcmePaths, Installed, IssuedCert, cert_serial_hex, install, load_installed};
use crate::tls::{TlsError, files};

/// Let's Encrypt's production directory.
pub const LETS_ENCRYPT_PRODUCTION: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory: untrusted certificates, generous rate limits.
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// How long the CA may take to validate every challenge of an order, and to issue.
const ORDER_TIMEOUT: Duration = Duration::from_secs(120);

/// Errors of the ACME module.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// A name is not one a certificate can be ordered for.
    #[error(transparent)]
    InvalidName(#[from] InvalidAcmeName),
    /// A file of the TLS directory could not be read or written.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// An ACME file or directory could not be used.
    #[error("{}: {reason}", path.display())]
    Files {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The TSIG secret file cannot be used.
    #[error("the TSIG secret file {}: {reason}", path.display())]
    TsigSecret {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the secret).
        reason: String,
    },
    /// The CA bundle cannot be used.
    #[error("the CA bundle {}: {reason}", path.display())]
    CaBundle {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The CA (or the way to it) failed at a step.
    #[error("ACME: cannot {step}: {reason}")]
    Ca {
        /// What was being done, e.g. "reach the directory".
        step: &'static str,
        /// The cause, from the CA or the connection.
        reason: String,
    },
    /// The CA no longer knows the stored account (a test CA restarted, or the account
    /// was deactivated); a new one is created on the next try.
    #[error("ACME: the CA does not know the stored account")]
    AccountGone,
    /// The CA could not validate a name.
    #[error("ACME: the CA could not validate {name} by {challenge}: {reason}")]
    Validation {
        /// The name.
        name: String,
        /// The challenge type.
        challenge: ChallengeKind,
        /// The CA's explanation.
        reason: String,
    },
    /// The CA answered something this client cannot use.
    #[error("ACME: {0}")]
    Protocol(String),
    /// A DNS update or query failed.
    #[error("DNS-01: {0}")]
    Dns(String),
    /// The issued certificate is not usable.
    #[error("ACME: the issued certificate is not usable: {0}")]
    Certificate(String),
}

/// How the CA checks that the box controls a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChallengeKind {
    /// A file over plain HTTP on port 80 (RFC 8555 §8.3).
    Http01,
    /// A special certificate over TLS on port 443 (RFC 8737).
    TlsAlpn01,
    /// A TXT record in DNS (RFC 8555 §8.4); needs no open port.
    Dns01,
}

impl ChallengeKind {
    /// The name RFC 8555 uses, also the config value.
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeKind::Http01 => "http-01",
            ChallengeKind::TlsAlpn01 => "tls-alpn-01",
            ChallengeKind::Dns01 => "dns-01",
        }
    }

    fn acme(self) -> ChallengeType {
        match self {
            ChallengeKind::Http01 => ChallengeType::Http01,
            ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
            ChallengeKind::Dns01 => ChallengeType::Dns01,
        }
    }
}

impl fmt::Display for ChallengeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ChallengeKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "http-01" => Ok(ChallengeKind::Http01),
            "tls-alpn-01" => Ok(ChallengeKind::TlsAlpn01),
            "dns-01" => Ok(ChallengeKind::Dns01),
            _ => Err(format!(
                "{text:?} is not a challenge type; use \"http-01\", \"tls-alpn-01\" or \"dns-01\""
            )),
        }
    }
}

/// How challenges are answered.
#[derive(Debug, Clone)]
pub enum Solver {
    /// Key authorizations published as files for the plain-HTTP server.
    Http01(ChallengeDirs),
    /// Challenge certificates published as files for the TLS server.
    TlsAlpn01(ChallengeDirs),
    /// TXT records added by RFC 2136 updates.
    Dns01(Rfc2136),
}

/// One answer published, to withdraw afterwards.
enum Published {
    Http01(String),
    TlsAlpn01(AcmeName),
    Dns01(AcmeName, String),
}

impl Solver {
    /// The challenge type this solver answers.
    pub fn kind(&self) -> ChallengeKind {
        match self {
            Solver::Http01(_) => ChallengeKind::Http01,
            Solver::TlsAlpn01(_) => ChallengeKind::TlsAlpn01,
            Solver::Dns01(_) => ChallengeKind::Dns01,
        }
    }

    async fn publish(
        &self,
        name: &AcmeName,
        token: &str,
        key_authorization: &instant_acme::KeyAuthorization,
        published: &mut Vec<Published>,
    ) -> Result<(), AcmeError> {
        match self {
            Solver::Http01(dirs) => {
                dirs.put_http01(token, key_authorization.as_str())?;
                published.push(Published::Http01(token.to_owned()));
            }
            Solver::TlsAlpn01(dirs) => {
                dirs.put_tls_alpn01(name, key_authorization.digest().as_ref())?;
                published.push(Published::TlsAlpn01(name.clone()));
            }
            Solver::Dns01(dns) => {
                let value = key_authorization.dns_value();
                dns.add_txt(name, &value).await?;
                published.push(Published::Dns01(name.clone(), value.clone()));
                dns.wait_for_txt(name, &value).await?;
            }
        }
        Ok(())
    }

    async fn withdraw(&self, published: Published) {
        match (self, published) {
            (Solver::Http01(dirs), Published::Http01(token)) => dirs.remove_http01(&token),
            (Solver::TlsAlpn01(dirs), Published::TlsAlpn01(name)) => dirs.remove_tls_alpn01(&name),
            (Solver::Dns01(dns), Published::Dns01(name, value)) => {
                if let Err(e) = dns.delete_txt(&name, &value).await {
                    tracing::warn!(%name, error = %e, "could not remove the DNS-01 TXT record");
                }
            }
            _ => {}
        }
    }
}

/// Where the account lives and how the directory is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSettings {
    /// The CA's directory URL (https).
    pub directory_url: String,
    /// Given to the CA for expiry and problem notices.
    pub contact_email: Option<String>,
    /// PEM roots to trust for the directory's HTTPS instead of the system's (a private
    /// or test CA).
    pub ca_bundle: Option<PathBuf>,
}

/// What `account.json` holds.
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory_url: String,
    credentials: AccountCredentials,
}

/// An ACME account ready to order.
#[derive(Clone)]
pub struct AcmeAccount {
    account: Account,
}

impl fmt::Debug for AcmeAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcmeAccount")
            .field("id", &self.account.id())
            .finish_non_exhaustive()
    }
}

fn ca_err(step: &'static str) -> impl Fn(instant_acme::Error) -> AcmeError {
    move |e| {
        if let instant_acme::Error::Api(problem) = &e
            && problem.r#type.as_deref() == Some("urn:ietf:params:acme:error:accountDoesNotExist")
        {
            return AcmeError::AccountGone;
        }
        AcmeError::Ca {
            step,
            reason: e.to_string(),
        }
    }
}

impl AcmeAccount {
    /// Loads the account stored in `paths` for `settings.directory_url`, or creates and
    /// stores a new one.
    pub async fn load_or_create(
        settings: &AccountSettings,
        paths: &AcmePaths,
    ) -> Result<AcmeAccount, AcmeError> {
        let stored = files::read_optional(&paths.account())?.map(Zeroizing::new);
        if let Some(bytes) = stored {
            match serde_json::from_slice::<StoredAccount>(&bytes) {
                Ok(stored) if stored.directory_url == settings.directory_url => {
                    let account = builder(settings)?
                        .from_credentials(stored.credentials)
                        .await
                        .map_err(ca_err("reach the directory"))?;
                    return Ok(AcmeAccount { account });
                }
                Ok(_) => tracing::info!(
                    directory = %settings.directory_url,
                    "the stored ACME account belongs to another directory; creating a new one"
                ),
                Err(_) => tracing::warn!(
                    path = %paths.account().display(),
                    "the stored ACME account is unreadable; creating a new one"
                ),
            }
        }
        Self::create(settings, paths).await
    }

    /// Creates a new account and stores it (mode 0600), replacing any stored one.
    pub async fn create(
        settings: &AccountSettings,
        paths: &AcmePaths,
    ) -> Result<AcmeAccount, AcmeError> {
        let contact = settings
            .contact_email
            .as_ref()
            .map(|e| format!("mailto:{e}"));
        let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
        let (account, credentials) = builder(settings)?
            .create(
                &NewAccount {
                    contact: &contacts,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                settings.directory_url.clone(),
                None,
            )
            .await
            .map_err(ca_err("create an account"))?;
        let stored = StoredAccount {
            directory_url: settings.directory_url.clone(),
            credentials,
        };
        let json = Zeroizing::new(
            serde_json::to_vec(&stored).map_err(|e| AcmeError::Protocol(e.to_string()))?,
        );
        files::create_dir(paths.dir())?;
        files::write_atomic(&paths.account(), &json, files::KEY_MODE, None)?;
        tracing::info!(directory = %settings.directory_url, id = %account.id(), "created an ACME account");
        Ok(AcmeAccount { account })
    }

    /// The CA's suggested renewal window for the certificate `leaf_der` (ACME Renewal
    /// Information, RFC 9773), or `None` when the CA offers none.
    pub async fn renewal_window(
        &self,
        leaf_der: &[u8],
    ) -> Result<Option<RenewalWindow>, AcmeError> {
        let der = CertificateDer::from(leaf_der);
        let Ok(id) = CertificateIdentifier::try_from(&der) else {
            return Ok(None);
        };
        match self.account.renewal_info(&id).await {
            Ok((info, _)) => Ok(Some(RenewalWindow {
                start: info.suggested_window.start,
                end: info.suggested_window.end,
            })),
            Err(instant_acme::Error::Unsupported(_)) => Ok(None),
            Err(e) => Err(ca_err("ask for the renewal window")(e)),
        }
    }

    /// Orders a certificate for `names`, answering the challenges with `solver`.
    pub async fn obtain(
        &self,
        names: &[AcmeName],
        solver: &Solver,
        now: OffsetDateTime,
    ) -> Result<IssuedCert, AcmeError> {
        if names.is_empty() {
            return Err(AcmeError::Protocol(
                "no names to order a certificate for".into(),
            ));
        }
        let identifiers: Vec<Identifier> = names
            .iter()
            .map(|n| Identifier::Dns(n.to_string()))
            .collect();
        let mut order = self
            .account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .map_err(ca_err("create an order"))?;
        let mut published = Vec::new();
        let authorized = authorize(&mut order, solver, &mut published).await;
        for p in published {
            solver.withdraw(p).await;
        }
        authorized?;

        let key_pem = Zeroizing::new(
            order
                .finalize()
                .await
                .map_err(ca_err("finalize the order"))?,
        );
        let chain = order
            .poll_certificate(&RetryPolicy::new().timeout(ORDER_TIMEOUT))
            .await
            .map_err(ca_err("download the certificate"))?;
        let issued = IssuedCert::from_pem(chain, key_pem, now).map_err(AcmeError::Certificate)?;
        if !issued.covers(names) {
            return Err(AcmeError::Certificate(format!(
                "it names {}, not every one of {}",
                issued.info.names.join(", "),
                names
                    .iter()
                    .map(AcmeName::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(issued)
    }
}

/// Publishes an answer for every pending authorization, tells the CA, and waits until
/// the order is ready.
async fn authorize(
    order: &mut Order,
    solver: &Solver,
    published: &mut Vec<Published>,
) -> Result<(), AcmeError> {
    let kind = solver.kind();
    {
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(ca_err("fetch an authorization"))?;
            match authz.status {
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                other => {
                    return Err(AcmeError::Protocol(format!(
                        "an authorization is {other:?}, neither pending nor valid"
                    )));
                }
            }
            let Some(mut challenge) = authz.challenge(kind.acme()) else {
                return Err(AcmeError::Protocol(format!("the CA does not offer {kind}")));
            };
            // The identifier comes from the CA: it becomes a file name or a DNS name, so
            // it is checked like the configured names.
            let name = AcmeName::parse(&challenge.identifier().to_string())?;
            let key_authorization = challenge.key_authorization();
            let token = challenge.token.clone();
            solver
                .publish(&name, &token, &key_authorization, published)
                .await?;
            challenge
                .set_ready()
                .await
                .map_err(ca_err("start the validation"))?;
        }
    }
    let status = order
        .poll_ready(&RetryPolicy::new().timeout(ORDER_TIMEOUT))
        .await
        .map_err(ca_err("wait for the validation"))?;
    if status == OrderStatus::Ready {
        return Ok(());
    }
    // Invalid: find the challenge the CA refused, for a message that says why.
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        let name = authz.identifier().to_string();
        if let Ok(state) = authz.refresh().await
            && let Some(problem) = state.challenges.iter().find_map(|c| c.error.as_ref())
        {
            return Err(AcmeError::Validation {
                name,
                challenge: kind,
                reason: problem.to_string(),
            });
        }
    }
    Err(AcmeError::Protocol(format!("the order became {status:?}")))
}

/// An account builder whose HTTPS trusts the system's roots, or only `ca_bundle`'s.
fn builder(settings: &AccountSettings) -> Result<AccountBuilder, AcmeError> {
    let Some(path) = &settings.ca_bundle else {
        return Account::builder().map_err(ca_err("load the system's trusted roots"));
    };
    let bad = |reason: String| AcmeError::CaBundle {
        path: path.clone(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let roots = crate::tls::roots_from_pem(&pem).map_err(bad)?;
    let tls = crate::tls::client_config(roots).map_err(|e| bad(e.to_string()))?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .enable_http2()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, instant_acme::BodyWrapper<bytes::Bytes>>(https);
    Ok(Account::builder_with_http(Box::new(client)))
}

/// Loads (or creates) the account and orders a certificate for `names`; when the CA no
/// longer knows the stored account, creates a new one and tries once more.
pub async fn obtain_certificate(
    settings: &AccountSettings,
    paths: &AcmePaths,
    names: &[AcmeName],
    solver: &Solver,
    now: OffsetDateTime,
) -> Result<IssuedCert, AcmeError> {
    let account = AcmeAccount::load_or_create(settings, paths).await?;
    match account.obtain(names, solver, now).await {
        Err(AcmeError::AccountGone) => {
            tracing::info!("the CA forgot the ACME account; creating a new one");
            AcmeAccount::create(settings, paths)
                .await?
                .obtain(names, solver, now)
                .await
        }
        other => other,
    }
}

#[cfg(test)]
mod tests;
