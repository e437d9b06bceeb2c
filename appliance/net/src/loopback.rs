//! A GET to the appliance's own HTTPS service over loopback, trusting only its local CA:
//! how the supervisor reads the service's `/healthz` for the console.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt as _, Empty};

/// The most of an answer that is read.
const MAX_BODY: usize = 256 * 1024;

/// `GET https://<addr><path>` trusting only `ca_pem` (the server certificate names
/// `127.0.0.1` and `::1`); the status code and the body, or why not (within `timeout`).
pub async fn get(
    ca_pem: &[u8],
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), String> {
    let roots =
        crate::tls::roots_from_pem(ca_pem).map_err(|e| format!("the CA certificate: {e}"))?;
    let tls = crate::tls::client_config(roots).map_err(|e| e.to_string())?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Empty<bytes::Bytes>>(https);
    let uri: hyper::Uri = format!("https://{addr}{path}")
        .parse()
        .map_err(|e| format!("bad address {addr}{path}: {e}"))?;
    let fetch = async {
        let resp = client.get(uri).await.map_err(|e| {
            let cause = std::error::Error::source(&e)
                .map(|c| format!(": {c}"))
                .unwrap_or_default();
            format!("{e}{cause}")
        })?;
        let status = resp.status().as_u16();
        let body = http_body_util::Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes();
        Ok((status, body.to_vec()))
    };
    tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
}
