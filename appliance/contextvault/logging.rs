//! Logging: JSON lines for the journal on an appliance, readable text in dev. Everything
//! goes to stderr. `RUST_LOG`, when set, overrides the configured level.

use tracing_subscriber::EnvFilter;

/// Added to every filter that does not mention rustls itself.
///
/// rustls logs at `warn` whatever a peer does wrong in a handshake: an IP address or an
/// invalid name as SNI ("Illegal SNI extension: ignoring IP address presented as
/// hostname", which `openssl s_client -servername 192.168.1.2` and TLS scanners send),
/// alerts received, and so on. Any client on the network can repeat that as often as it
/// likes and fill the journal, and there is nothing for the owner to do about any of it:
/// the handshake goes on with the local CA's certificate or fails for that client only.
/// So rustls is heard from at `error` only (its own faults, such as exhausted keys);
/// `RUST_LOG=…,rustls=warn` brings the warnings back when debugging a client.
const QUIET_RUSTLS: &str = "rustls=error";

pub fn init(format: &str, level: &str) {
    let spec = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| level.to_owned());
    let filter = EnvFilter::try_new(filter_spec(&spec))
        .unwrap_or_else(|_| EnvFilter::new(filter_spec("info")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if format == "json" {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        // Colours only on a terminal: logs piped to a file or a test stay plain text.
        builder
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init()
    };
    // Only fails if a subscriber is already set, which is fine.
    let _ = result;
}

/// `spec` (a level or `EnvFilter` directives) with [`QUIET_RUSTLS`] added, unless it
/// already says what rustls should log.
fn filter_spec(spec: &str) -> String {
    if spec.contains("rustls") {
        spec.to_owned()
    } else {
        format!("{spec},{QUIET_RUSTLS}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustls_is_quiet_unless_asked_for() {
        assert_eq!(filter_spec("info"), "info,rustls=error");
        assert_eq!(
            filter_spec("debug,cv_web=trace"),
            "debug,cv_web=trace,rustls=error"
        );
        assert_eq!(filter_spec("info,rustls=warn"), "info,rustls=warn");
        assert!(EnvFilter::try_new(filter_spec("warn")).is_ok());
    }
}
