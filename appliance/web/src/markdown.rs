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

use std::ops::Range;

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, TagEnd};

/// Renders `text` (Markdown) to HTML that is safe to put in a page.
pub(crate) fn to_html(text: &str) -> String {
    let events = Parser::new_ext(text, options()).map(|event| match event {
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

/// The options notes are parsed with, for HTML and for plain text alike.
fn options() -> Options {
    Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS | Options::ENABLE_TABLES
}

/// `text` (Markdown) as plain text on one line, for previews in lists: the words as a
/// reader sees them (`# Title` is "Title", `**bold**` is "bold", a task list's `- [ ]`
/// is "☐"), blocks and line breaks joined by a space.
pub(crate) fn to_plain(text: &str) -> String {
    to_plain_mapped(text, &[]).0
}

/// [`to_plain`], carrying byte ranges of `text` (a search snippet's highlights) over to
/// the plain text. A range that does not lie in text as typed (one over Markdown
/// syntax, or an escape such as `\*`) is dropped rather than misplaced.
pub(crate) fn to_plain_mapped(text: &str, ranges: &[Range<usize>]) -> (String, Vec<Range<usize>>) {
    let mut out = String::with_capacity(text.len());
    // (start in `text`, start in `out`, length): where `out` copies `text` verbatim.
    let mut verbatim: Vec<(usize, usize, usize)> = Vec::new();
    let separate = |out: &mut String| {
        if !out.is_empty() && !out.ends_with(' ') {
            out.push(' ');
        }
    };
    for (event, source) in Parser::new_ext(text, options()).into_offset_iter() {
        match event {
            Event::Text(t)
            | Event::Code(t)
            | Event::Html(t)
            | Event::InlineHtml(t)
            | Event::InlineMath(t)
            | Event::DisplayMath(t) => {
                // A code block's text holds its line breaks; one line has none (a
                // newline and a space are one byte each, so offsets stay put).
                let t = t.replace(['\n', '\r', '\t'], " ");
                if text
                    .get(source.clone())
                    .is_some_and(|s| s.replace(['\n', '\r', '\t'], " ") == t)
                {
                    verbatim.push((source.start, out.len(), t.len()));
                }
                out.push_str(&t);
            }
            Event::TaskListMarker(done) => {
                out.push_str(if done { "☑ " } else { "☐ " });
            }
            Event::SoftBreak | Event::HardBreak | Event::Rule => separate(&mut out),
            Event::End(
                TagEnd::Paragraph
                | TagEnd::Heading(_)
                | TagEnd::Item
                | TagEnd::BlockQuote(_)
                | TagEnd::CodeBlock
                | TagEnd::TableCell,
            ) => separate(&mut out),
            _ => {}
        }
    }
    let trimmed_end = out.trim_end().len();
    out.truncate(trimmed_end);
    let map_start = |at: usize| {
        verbatim
            .iter()
            .find(|&&(src, _, len)| src <= at && at < src + len)
            .map(|&(src, dst, _)| dst + (at - src))
    };
    let map_end = |at: usize| {
        verbatim
            .iter()
            .find(|&&(src, _, len)| src < at && at <= src + len)
            .map(|&(src, dst, _)| dst + (at - src))
    };
    let mut mapped: Vec<Range<usize>> = Vec::new();
    for range in ranges {
        if let (Some(start), Some(end)) = (map_start(range.start), map_end(range.end))
            && start < end
            && end <= out.len()
            && mapped.last().is_none_or(|last| last.end <= start)
        {
            mapped.push(start..end);
        }
    }
    (out, mapped)
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
    fn plain_text_has_no_markdown_left() {
        let text = "# Garden plan\n\nBuy **tomato** seeds and `twine`.\n\n- [ ] water the beds\n- [x] dig\n\n> quoted _line_";
        assert_eq!(
            to_plain(text),
            "Garden plan Buy tomato seeds and twine. ☐ water the beds ☑ dig quoted line"
        );
        assert_eq!(to_plain("[the shop](https://example.org)"), "the shop");
        assert_eq!(to_plain("<b>raw</b> html"), "<b>raw</b> html");
        assert_eq!(to_plain(""), "");
    }

    #[test]
    fn highlights_follow_the_words_once_the_markdown_is_gone() {
        let text = "# Boat\n\nAsk Sam about the **boat trailer**.";
        let trailer = text.find("trailer").unwrap();
        let boat = text.find("Boat").unwrap();
        let (plain, ranges) = to_plain_mapped(text, &[boat..boat + 4, trailer..trailer + 7]);
        assert_eq!(plain, "Boat Ask Sam about the boat trailer.");
        let words: Vec<&str> = ranges.iter().map(|r| &plain[r.clone()]).collect();
        assert_eq!(words, ["Boat", "trailer"]);
        // A range over the syntax itself is dropped, not misplaced.
        let stars = text.find("**").unwrap();
        let over_syntax = [stars..stars + 6, stars..stars + 2];
        assert!(to_plain_mapped(text, &over_syntax).1.is_empty());
        // Multibyte text keeps char boundaries.
        let text = "**Café** crème";
        let creme = text.find("crème").unwrap();
        let ranges = [2..2 + "Café".len(), creme..creme + "crème".len()];
        let (plain, ranges) = to_plain_mapped(text, &ranges);
        let words: Vec<&str> = ranges.iter().map(|r| &plain[r.clone()]).collect();
        assert_eq!(words, ["Café", "crème"]);
    }

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
