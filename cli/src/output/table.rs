//! The table printer: left-aligned columns two spaces apart, sentences, `name: value` details.

use std::fmt::Display;
use std::io::IsTerminal;

/// How table cells show values that are not set.
pub mod cell {
    /// A unix-ms time as UTC to the second (`2026-12-01 15:09:12Z`); `-` for 0 (never).
    /// JSON output keeps the milliseconds.
    pub fn time(ms: i64) -> String {
        if ms == 0 {
            return "-".into();
        }
        let secs = ms.div_euclid(1000);
        let (days, day_secs) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let (year, month, day) = civil_from_days(days);
        format!(
            "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
            day_secs / 3600,
            day_secs % 3600 / 60,
            day_secs % 60
        )
    }

    /// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
    /// `civil_from_days`).
    fn civil_from_days(days: i64) -> (i64, i64, i64) {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        (year, month, day)
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

    #[cfg(test)]
    mod tests {
        #[test]
        fn times_show_as_utc_seconds() {
            assert_eq!(super::time(0), "-");
            assert_eq!(super::time(1), "1970-01-01 00:00:00Z");
            assert_eq!(super::time(951_782_400_000), "2000-02-29 00:00:00Z");
            assert_eq!(super::time(1_796_137_771_096), "2026-12-01 15:09:31Z");
            assert_eq!(super::time(-1_000), "1969-12-31 23:59:59Z");
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
