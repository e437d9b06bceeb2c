//! Markdown, rendered safely: a note is shown as its author formatted it, and nothing
//! in it can run, load or hide anything.
//!
//! - Raw HTML in a note is shown as text, never interpreted.
//! - Links keep only `http:`, `https:`, `mailto:` and relative destinations; anything
//!   else (`javascript:`, `data:`, …) becomes a link to nowhere (`#`).
//! - Images become links to the image: the page never fetches anything on its own
//!   (the Content-Security-Policy would block remote images anyway).
//!
//! The CSP forbids scripts altogether; this is the second wall, not the only one.

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, TagEnd};

/// Renders `text` (Markdown) to HTML that is safe to put in a page.
pub(crate) fn to_html(text: &str) -> String {
    let options =
        Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS | Options::ENABLE_TABLES;
    let events = Parser::new_ext(text, options).map(|event| match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        })
        | Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Link {
            link_type,
            dest_url: safe_url(dest_url),
            title,
            id,
        }),
        Event::End(TagEnd::Image) => Event::End(TagEnd::Link),
        other => other,
    });
    let mut html = String::with_capacity(text.len() * 5 / 4);
    pulldown_cmark::html::push_html(&mut html, events);
    html
}

/// `url` if its scheme is harmless (or it has none), `#` otherwise.
fn safe_url(url: CowStr<'_>) -> CowStr<'_> {
    let trimmed = url.trim_start();
    // A scheme is what comes before the first ':' when no '/', '?' or '#' precedes it.
    let scheme_end = trimmed.find([':', '/', '?', '#']);
    let scheme = match scheme_end {
        Some(i) if trimmed[i..].starts_with(':') => Some(trimmed[..i].to_ascii_lowercase()),
        _ => None,
    };
    let has_control = url.chars().any(char::is_control);
    match scheme.as_deref() {
        _ if has_control => CowStr::Borrowed("#"),
        None | Some("http" | "https" | "mailto") => url,
        Some(_) => CowStr::Borrowed("#"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_is_rendered() {
        let html = to_html("# Title\n\n**bold** and *it*\n\n- [x] done\n- one");
        assert!(html.contains("<h1>Title</h1>"));
        assert!(html.contains("<strong>bold</strong>"));
        assert!(html.contains("<li>"));
        assert!(html.contains("checkbox"));
    }

    #[test]
    fn raw_html_is_shown_as_text() {
        let html = to_html("<script>alert(1)</script>\n\nhi <img src=x onerror=alert(1)>");
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
    }

    #[test]
    fn dangerous_links_lead_nowhere() {
        for bad in [
            "javascript:alert(1)",
            "JaVaScRiPt:alert(1)",
            " javascript:alert(1)",
            "data:text/html;base64,PHNjcmlwdD4=",
            "vbscript:x",
        ] {
            let html = to_html(&format!("[click](<{bad}>)"));
            assert!(html.contains(r##"href="#""##), "{bad}: {html}");
        }
        for good in [
            "https://example.org/a?b#c",
            "mailto:a@b.c",
            "/notes",
            "page#x",
        ] {
            let html = to_html(&format!("[ok]({good})"));
            assert!(!html.contains(r##"href="#""##), "{good}: {html}");
        }
    }

    #[test]
    fn images_become_links_and_load_nothing() {
        let html = to_html("![a cat](https://example.org/cat.png)");
        assert!(!html.contains("<img"), "{html}");
        assert!(
            html.contains(r#"<a href="https://example.org/cat.png">a cat</a>"#),
            "{html}"
        );
    }
}
