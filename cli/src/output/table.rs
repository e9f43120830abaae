//! The table printer: left-aligned columns two spaces apart, sentences, `name: value` details.

use std::fmt::Display;
use std::io::IsTerminal;

/// How table cells show values that are not set.
pub mod cell {
    /// A unix-ms time as UTC to the second (`2026-12-01 15:09:12 UTC`); `-` for 0 (never).
    /// JSON output keeps the milliseconds.
    pub fn time(ms: i64) -> String {
        if ms == 0 {
            return "-".into();
        }
        flashgate_proto::clock::format_utc(ms)
    }

    /// A version; `-` for 0 (unknown).
    pub fn version(v: u32) -> String {
        if v == 0 {
            "-".into()
        } else {
            v.to_string()
        }
    }

    /// Text; `-` when empty.
    pub fn text(s: &str) -> String {
        if s.is_empty() {
            "-".into()
        } else {
            s.to_owned()
        }
    }
}

/// Widths of the columns: the widest of the header and every cell.
fn widths(headers: &[&str], rows: &[Vec<String>]) -> Vec<usize> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    widths
}

fn aligned<S: AsRef<str>>(cells: &[S], widths: &[usize]) -> String {
    let parts: Vec<String> = cells
        .iter()
        .zip(widths)
        .map(|(c, w)| format!("{:<w$}", c.as_ref()))
        .collect();
    parts.join("  ").trim_end().to_owned()
}

/// A header and its rows.
pub(super) fn list(headers: &[&str], rows: impl Iterator<Item = Vec<String>>) {
    let rows: Vec<Vec<String>> = rows.collect();
    let widths = widths(headers, &rows);
    println!("{}", aligned(headers, &widths));
    for row in &rows {
        println!("{}", aligned(row, &widths));
    }
}

/// Rows with no header, unaligned (more of a list already printed).
pub(super) fn rows(rows: impl Iterator<Item = Vec<String>>) {
    for row in rows {
        println!("{}", row.join("  "));
    }
}

pub(super) fn sentence(text: impl Display) {
    println!("{text}");
}

/// `name:` padded so the values line up.
pub(super) fn fields(fields: &[(&str, String)]) {
    for (name, value) in fields {
        println!("{:<20} {value}", format!("{name}:"));
    }
}

/// Before refresh `n` of a watched list: clear a terminal, else a blank line between refreshes.
pub(super) fn new_screen(n: u64) {
    if std::io::stdout().is_terminal() {
        print!("\x1b[2J\x1b[H");
    } else if n > 0 {
        println!();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let rows = vec![vec!["1".to_owned(), "a long name".to_owned()]];
        let widths = widths(&["ID", "NAME"], &rows);
        assert_eq!(widths, [2, 11]);
        assert_eq!(aligned(&["ID", "NAME"], &widths), "ID  NAME");
        assert_eq!(aligned(&rows[0], &widths), "1   a long name");
    }
}
