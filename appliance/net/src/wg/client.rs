//! The configuration a new peer takes home: the `wg-quick` file format that the official
//! WireGuard apps import from a file or scan from a QR code.

use std::fmt::{self, Write as _};
use std::net::Ipv4Addr;

use qrcode::render::svg;
use qrcode::{EcLevel, QrCode};
use zeroize::Zeroizing;

use super::WgError;
use super::keys::{PresharedKey, PrivateKey, PublicKey};
use super::names::{Endpoint, PeerName};
use super::settings::WgSettings;

/// Pixels per QR module in the SVG. The SVG scales to any size (it has a `viewBox`); this
/// only sets its default size, about 550 pixels for a typical configuration (300 to 350
/// bytes: version 13 or 14 at level M, 69 or 73 modules, 77 or 81 with the quiet zone).
const QR_MODULE_PX: u32 = 7;

/// A client configuration. It holds the peer's private key, which exists nowhere else,
/// and its preshared key: `Debug` shows only the peer's name, and the text is wiped from
/// memory when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientConfig {
    peer: PeerName,
    text: Zeroizing<String>,
}

impl ClientConfig {
    /// The configuration of a peer with `private_key`, `preshared_key` and `address`,
    /// connecting to the server `server_key` at `endpoint`:
    ///
    /// ```text
    /// [Interface]
    /// PrivateKey = …
    /// Address = 10.213.0.2/32
    /// DNS = 10.213.0.1            (only when DNS servers are set)
    ///
    /// [Peer]
    /// PublicKey = …
    /// PresharedKey = …            (only when the peer has one)
    /// Endpoint = vault.example.net:51820
    /// AllowedIPs = 10.213.0.0/24
    /// PersistentKeepalive = 25
    /// ```
    ///
    /// The address is a /32: the peer owns that one address, and `AllowedIPs` says what
    /// it routes into the tunnel.
    pub fn render(
        peer: &PeerName,
        private_key: &PrivateKey,
        preshared_key: Option<&PresharedKey>,
        address: Ipv4Addr,
        settings: &WgSettings,
        server_key: &PublicKey,
        endpoint: &Endpoint,
    ) -> ClientConfig {
        let mut text = Zeroizing::new(String::with_capacity(400));
        let list = |items: Vec<String>| items.join(", ");
        // Writing to a String cannot fail.
        let _ = writeln!(text, "[Interface]");
        let _ = writeln!(text, "PrivateKey = {}", private_key.to_base64().as_str());
        let _ = writeln!(text, "Address = {address}/32");
        if !settings.dns.is_empty() {
            let dns = list(settings.dns.iter().map(ToString::to_string).collect());
            let _ = writeln!(text, "DNS = {dns}");
        }
        let _ = writeln!(text);
        let _ = writeln!(text, "[Peer]");
        let _ = writeln!(text, "PublicKey = {server_key}");
        if let Some(psk) = preshared_key {
            let _ = writeln!(text, "PresharedKey = {}", psk.to_base64().as_str());
        }
        let _ = writeln!(text, "Endpoint = {endpoint}");
        let allowed = list(
            settings
                .client_allowed_ips
                .iter()
                .map(ToString::to_string)
                .collect(),
        );
        let _ = writeln!(text, "AllowedIPs = {allowed}");
        let _ = writeln!(
            text,
            "PersistentKeepalive = {}",
            settings.persistent_keepalive
        );
        ClientConfig {
            peer: peer.clone(),
            text,
        }
    }

    /// Rebuilds a configuration received as text (over the control socket).
    pub fn from_text(peer: PeerName, text: Zeroizing<String>) -> ClientConfig {
        ClientConfig { peer, text }
    }

    pub fn peer(&self) -> &PeerName {
        &self.peer
    }

    /// The file's text (secret).
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn into_text(self) -> Zeroizing<String> {
        self.text
    }

    /// The configuration as a QR code (SVG); as secret as the text.
    pub fn qr_svg(&self) -> Result<Zeroizing<String>, WgError> {
        qr_svg(&self.text).map(Zeroizing::new)
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("peer", &self.peer.as_str())
            .field("text", &"(secret)")
            .finish()
    }
}

/// `text` as an SVG QR code that the WireGuard apps scan ("Create from QR code"), with
/// the quiet zone of 4 modules the standard asks for (ISO/IEC 18004 section 6.3.8).
///
/// Error correction level M (15% of the code may be damaged): a configuration of 300 to
/// 350 bytes (keys, preshared key, endpoint, DNS) fits in version 13 or 14, small enough
/// to scan from a screen at arm's length; level H would make the modules a third smaller
/// for damage a screen does not suffer.
///
/// When `text` is a client configuration, the SVG is as secret as the text.
pub fn qr_svg(text: &str) -> Result<String, WgError> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
        .map_err(|e| WgError::Qr(e.to_string()))?;
    Ok(code
        .render::<svg::Color<'_>>()
        .quiet_zone(true)
        .module_dimensions(QR_MODULE_PX, QR_MODULE_PX)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wg::names::InterfaceName;
    use crate::wg::settings::{WgNetwork, allowed_ips};

    fn settings() -> WgSettings {
        WgSettings::new(
            InterfaceName::parse("cvwg0").unwrap(),
            WgNetwork::parse("10.213.0.0/24").unwrap(),
            51820,
        )
    }

    struct Sample {
        config: ClientConfig,
        private: PrivateKey,
        psk: PresharedKey,
        server: PublicKey,
    }

    fn sample(settings: &WgSettings) -> Sample {
        let private = PrivateKey::generate();
        let psk = PresharedKey::generate();
        let server = PrivateKey::generate().public_key();
        let config = ClientConfig::render(
            &PeerName::parse("olivia-phone").unwrap(),
            &private,
            Some(&psk),
            Ipv4Addr::new(10, 213, 0, 2),
            settings,
            &server,
            &Endpoint::parse("vault.example.net:51820").unwrap(),
        );
        Sample {
            config,
            private,
            psk,
            server,
        }
    }

    #[test]
    fn renders_the_wg_quick_format() {
        let Sample {
            config,
            private,
            psk,
            server,
        } = sample(&settings());
        assert_eq!(
            config.text(),
            format!(
                "[Interface]\nPrivateKey = {}\nAddress = 10.213.0.2/32\n\n[Peer]\nPublicKey = \
                 {server}\nPresharedKey = {}\nEndpoint = vault.example.net:51820\n\
                 AllowedIPs = 10.213.0.0/24\nPersistentKeepalive = 25\n",
                private.to_base64().as_str(),
                psk.to_base64().as_str()
            )
        );
    }

    #[test]
    fn a_peer_without_a_preshared_key_gets_no_preshared_key_line() {
        let private = PrivateKey::generate();
        let server = PrivateKey::generate().public_key();
        let config = ClientConfig::render(
            &PeerName::parse("old-phone").unwrap(),
            &private,
            None,
            Ipv4Addr::new(10, 213, 0, 2),
            &settings(),
            &server,
            &Endpoint::parse("vault.example.net:51820").unwrap(),
        );
        assert_eq!(
            config.text(),
            format!(
                "[Interface]\nPrivateKey = {}\nAddress = 10.213.0.2/32\n\n[Peer]\nPublicKey = \
                 {server}\nEndpoint = vault.example.net:51820\nAllowedIPs = 10.213.0.0/24\n\
                 PersistentKeepalive = 25\n",
                private.to_base64().as_str()
            )
        );
    }

    #[test]
    fn dns_and_allowed_ips_are_lists() {
        let mut s = settings();
        s.dns = vec![
            "10.213.0.1".parse().unwrap(),
            "2001:db8::53".parse().unwrap(),
        ];
        s.client_allowed_ips = vec![
            allowed_ips("0.0.0.0/0").unwrap(),
            allowed_ips("::/0").unwrap(),
        ];
        let config = sample(&s).config;
        assert!(config.text().contains("\nDNS = 10.213.0.1, 2001:db8::53\n"));
        assert!(config.text().contains("\nAllowedIPs = 0.0.0.0/0, ::/0\n"));
    }

    #[test]
    fn debug_shows_no_secret() {
        let Sample {
            config,
            private,
            psk,
            ..
        } = sample(&settings());
        let shown = format!("{config:?}");
        assert_eq!(
            shown,
            r#"ClientConfig { peer: "olivia-phone", text: "(secret)" }"#
        );
        assert!(!shown.contains(private.to_base64().as_str()));
        assert!(!shown.contains(psk.to_base64().as_str()));
    }

    /// Rasterises the SVG that [`qr_svg`] wrote (one `<rect>` background and one `<path>`
    /// of `M x y h w v h H x V y` squares) into a grey image, one byte a pixel.
    fn rasterise(svg: &str) -> (usize, usize, Vec<u8>) {
        let attr = |name: &str| -> usize {
            let start = svg.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
            svg[start..].split('"').next().unwrap().parse().unwrap()
        };
        let (w, h) = (attr("width"), attr("height"));
        let mut pixels = vec![255u8; w * h];
        let d_start = svg.find(" d=\"").unwrap() + 4;
        let d = svg[d_start..].split('"').next().unwrap();
        for square in d.split('M').filter(|s| !s.is_empty()) {
            let numbers: Vec<usize> = square
                .split(|c: char| c.is_ascii_alphabetic() || c == ' ')
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().unwrap())
                .collect();
            let [x, y, width, height, x_back, y_back] = numbers[..] else {
                panic!("unexpected path segment {square:?}");
            };
            assert_eq!((x_back, y_back), (x, y), "{square:?}");
            for row in y..y + height {
                for col in x..x + width {
                    pixels[row * w + col] = 0;
                }
            }
        }
        (w, h, pixels)
    }

    fn decode(svg: &str) -> String {
        let (w, h, pixels) = rasterise(svg);
        let mut image = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| pixels[y * w + x]);
        let grids = image.detect_grids();
        assert_eq!(grids.len(), 1, "one QR code in the image");
        grids[0].decode().unwrap().1
    }

    #[test]
    fn the_qr_code_decodes_to_exactly_the_configuration() {
        let mut s = settings();
        // A long configuration: DNS, IPv6, a long host name.
        s.dns = vec![
            "10.213.0.1".parse().unwrap(),
            "2001:db8::53".parse().unwrap(),
        ];
        s.client_allowed_ips = vec![
            allowed_ips("0.0.0.0/0").unwrap(),
            allowed_ips("::/0").unwrap(),
        ];
        let private = PrivateKey::generate();
        let config = ClientConfig::render(
            &PeerName::parse("olivia-work-laptop").unwrap(),
            &private,
            Some(&PresharedKey::generate()),
            Ipv4Addr::new(10, 213, 0, 254),
            &s,
            &PrivateKey::generate().public_key(),
            &Endpoint::parse("home-vault.some-dynamic-dns.example.net:51820").unwrap(),
        );
        assert!(config.text().len() > 350, "{}", config.text().len());
        assert!(config.text().contains("\nPresharedKey = "));
        let svg = config.qr_svg().unwrap();
        assert!(svg.starts_with("<?xml"), "an SVG document");
        assert_eq!(decode(&svg), config.text());
    }

    #[test]
    fn the_qr_code_is_read_by_zbar_too() {
        let Ok(out) = std::process::Command::new("zbarimg")
            .arg("--version")
            .output()
        else {
            println!("skipped: zbarimg (zbar-tools) is not installed");
            return;
        };
        assert!(out.status.success());
        let config = sample(&settings()).config;
        let (w, h, pixels) = rasterise(&config.qr_svg().unwrap());
        // A PGM (netpbm greyscale), which zbarimg reads through ImageMagick.
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("qr.pgm");
        let mut pgm = format!("P5\n{w} {h}\n255\n").into_bytes();
        pgm.extend_from_slice(&pixels);
        std::fs::write(&path, pgm).unwrap();
        let out = std::process::Command::new("zbarimg")
            .args(["--quiet", "--raw", "-Sbinary"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "zbarimg: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), config.text());
    }

    #[test]
    fn text_too_long_for_a_qr_code_is_an_error() {
        let e = qr_svg(&"x".repeat(5000)).unwrap_err();
        assert!(matches!(e, WgError::Qr(_)), "{e}");
    }
}
