//! The one wall clock of the host programs (coordinator, station, CLI): unix time in
//! milliseconds, the unit every timestamp on the `flashgate.v1` wire uses.

/// Current unix time in milliseconds (0 if the system clock is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A unix-ms instant as UTC to the second, `YYYY-MM-DD HH:MM:SS UTC`: how the CLI's tables and
/// the console show times (JSON keeps the milliseconds).
pub fn format_utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
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

#[cfg(test)]
mod tests {
    #[test]
    fn instants_show_as_utc_seconds() {
        assert_eq!(super::format_utc(1), "1970-01-01 00:00:00 UTC");
        assert_eq!(
            super::format_utc(951_782_400_000),
            "2000-02-29 00:00:00 UTC"
        );
        assert_eq!(
            super::format_utc(1_796_137_771_096),
            "2026-12-01 15:09:31 UTC"
        );
        assert_eq!(super::format_utc(-1_000), "1969-12-31 23:59:59 UTC");
    }
}
