//! Building pages: escaping, the shared layout (skip link, navigation, logout), and the few
//! widgets every page uses (times, the order progress bar, refusals).

use std::fmt::Write;

use tonic::Status;

/// Text made safe for HTML element content and quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What the layout needs of the logged-in operator: the CSRF token for the logout form.
pub struct Chrome<'a> {
    /// The session's CSRF token.
    pub csrf: &'a str,
}

/// The navigation, in order: path and label.
const NAV: &[(&str, &str)] = &[
    ("/orders", "Orders"),
    ("/stations", "Stations"),
    ("/devices", "Devices"),
    ("/updates", "Updates"),
    ("/audit", "Audit"),
    ("/ingest", "Data ingest"),
];

/// A whole page. `current` is the navigation entry to mark; `chrome` is `None` on the login page.
pub fn page(title: &str, current: &str, chrome: Option<&Chrome<'_>>, body: &str) -> String {
    let mut nav = String::new();
    if let Some(chrome) = chrome {
        nav.push_str(r#"<nav aria-label="Main"><ul>"#);
        for (path, label) in NAV {
            let aria = if *path == current {
                r#" aria-current="page""#
            } else {
                ""
            };
            let _ = write!(nav, r#"<li><a href="{path}"{aria}>{label}</a></li>"#);
        }
        let _ = write!(
            nav,
            r#"</ul><form method="post" action="/logout" class="logout">{}<button type="submit">Log out</button></form></nav>"#,
            csrf_field(chrome.csrf)
        );
    }
    format!(
        r##"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · flashgate</title>
<link rel="stylesheet" href="/assets/console.css">
<script src="/assets/console.js" defer></script>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header><a class="brand" href="/orders">flashgate</a>{nav}</header>
<main id="main" tabindex="-1">
<h1>{title}</h1>
{body}
</main>
</body>
</html>
"##,
        title = esc(title)
    )
}

/// The hidden CSRF field every form carries.
pub fn csrf_field(csrf: &str) -> String {
    format!(r#"<input type="hidden" name="csrf" value="{}">"#, esc(csrf))
}

/// A unix-ms instant as `YYYY-MM-DD HH:MM:SS UTC`; `-` for 0 (never).
pub fn time(ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    flashgate_proto::clock::format_utc(ms)
}

/// Hex of bytes; `-` when empty.
pub fn hex_or_dash(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        "-".into()
    } else {
        hex::encode(bytes)
    }
}

/// Where an order stands, as the progress bar draws it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Progress {
    /// Devices the order allows.
    pub ordered: u64,
    /// Devices registered.
    pub consumed: u64,
    /// Failed targets (not counted against the quota).
    pub failed: u64,
    /// Slots held by live leases.
    pub reserved: u64,
    /// Slots free.
    pub remaining: u64,
}

impl Progress {
    /// Percent of the ordered count (failures are drawn on the same scale, capped).
    fn percent(&self, part: u64) -> f64 {
        if self.ordered == 0 {
            0.0
        } else {
            (part as f64 * 100.0 / self.ordered as f64).min(100.0)
        }
    }

    /// The sentence a screen reader reads for the bar.
    pub fn label(&self) -> String {
        format!(
            "{} of {} consumed, {} reserved, {} remaining, {} failed",
            self.consumed, self.ordered, self.reserved, self.remaining, self.failed
        )
    }
}

/// A stacked bar (consumed, reserved, remaining) with a failure tick below, as SVG: its
/// geometry lives in attributes, so the strict style policy (no inline styles) holds and
/// `console.js` can move it.
pub fn progress_bar(id: &str, p: &Progress) -> String {
    let consumed = p.percent(p.consumed);
    let reserved = p.percent(p.reserved);
    let remaining = (100.0 - consumed - reserved).max(0.0);
    let failed = p.percent(p.failed);
    format!(
        r#"<svg class="bar" id="bar-{id}" role="img" aria-label="{label}" viewBox="0 0 100 12" preserveAspectRatio="none" data-ordered="{ordered}">
<rect class="consumed" x="0" y="0" height="9" width="{consumed:.2}"></rect>
<rect class="reserved" x="{consumed:.2}" y="0" height="9" width="{reserved:.2}"></rect>
<rect class="remaining" x="{rx:.2}" y="0" height="9" width="{remaining:.2}"></rect>
<rect class="failed" x="0" y="10" height="2" width="{failed:.2}"></rect>
</svg>"#,
        id = esc(id),
        label = esc(&p.label()),
        ordered = p.ordered,
        rx = consumed + reserved,
    )
}

/// The legend under progress bars.
pub const PROGRESS_LEGEND: &str = r#"<p class="legend"><span class="key consumed"></span>consumed <span class="key reserved"></span>reserved <span class="key remaining"></span>remaining <span class="key failed"></span>failed (thin line)</p>"#;

/// The API's refusal, as the operator should read it.
pub fn refusal(status: &Status) -> String {
    format!(
        r#"<div class="refused" role="alert"><p><strong>The coordinator refused: {}</strong></p><p>{}</p></div>"#,
        esc(&format!("{:?}", status.code())),
        esc(status.message())
    )
}

/// A notice that the API does not offer something (yet).
pub fn not_available(what: &str) -> String {
    format!(
        r#"<p class="na" role="status">Not available: {}</p>"#,
        esc(what)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn formats_times_in_utc() {
        assert_eq!(time(0), "-");
        assert_eq!(time(1_000), "1970-01-01 00:00:01 UTC");
        assert_eq!(time(1_709_210_096_000), "2024-02-29 12:34:56 UTC");
    }

    #[test]
    fn the_bar_never_overflows() {
        let p = Progress {
            ordered: 4,
            consumed: 3,
            failed: 9,
            reserved: 1,
            remaining: 0,
        };
        let svg = progress_bar("o1", &p);
        assert!(svg.contains(r#"class="consumed" x="0" y="0" height="9" width="75.00""#));
        assert!(svg.contains(r#"class="failed" x="0" y="10" height="2" width="100.00""#));
        assert!(svg.contains("3 of 4 consumed"));
    }
}
