//! Timestamps as .NET ticks (100 ns since 0001-01-01T00:00:00): ISO 8601 parsing
//! like System.Text.Json (offsets converted to UTC), and the round-trip rendering
//! the original uses for a `timestamp` column read back (no offset suffix).

pub const TICKS_PER_SECOND: i64 = 10_000_000;
const TICKS_PER_DAY: i64 = 86_400 * TICKS_PER_SECOND;
/// Ticks of 9999-12-31T23:59:59.9999999, the largest `DateTime`.
const MAX_TICKS: i64 = 3_155_378_975_999_999_999;
/// Days from 0001-01-01 to 1970-01-01.
const UNIX_EPOCH_DAYS: i64 = 719_162;

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A cursor over the timestamp text with fixed-width digit readers.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl Cursor<'_> {
    fn digits(&mut self, n: usize) -> Option<u32> {
        let (head, tail) = self.rest.split_at_checked(n)?;
        if !head.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.rest = tail;
        Some(head.iter().fold(0, |acc, b| acc * 10 + u32::from(b - b'0')))
    }

    fn eat(&mut self, byte: u8) -> bool {
        match self.rest.split_first() {
            Some((&b, tail)) if b == byte => {
                self.rest = tail;
                true
            }
            _ => false,
        }
    }
}

/// Parses `yyyy-MM-dd[(T| )HH:mm[:ss[.fffffff…]]][Z|±HH[:mm]]` into UTC ticks.
/// Fraction digits past the seventh are dropped, like .NET. `allow_space`
/// also accepts a space before the time (query strings, `DateTime.Parse`).
pub fn parse_iso(text: &[u8], allow_space: bool) -> Option<i64> {
    let mut c = Cursor { rest: text };
    let year = c.digits(4)?;
    if !c.eat(b'-') {
        return None;
    }
    let month = c.digits(2)?;
    if !c.eat(b'-') {
        return None;
    }
    let day = c.digits(2)?;
    if year == 0 || !(1..=12).contains(&month) {
        return None;
    }
    if day == 0 || day > days_in_month(i64::from(year), month) {
        return None;
    }
    let mut ticks =
        (days_from_civil(i64::from(year), month, day) + UNIX_EPOCH_DAYS) * TICKS_PER_DAY;
    if c.rest.is_empty() {
        return Some(ticks);
    }
    if !(c.eat(b'T') || (allow_space && c.eat(b' '))) {
        return None;
    }
    let hour = c.digits(2)?;
    if !c.eat(b':') {
        return None;
    }
    let minute = c.digits(2)?;
    let second = if c.eat(b':') { c.digits(2)? } else { 0 };
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    ticks += i64::from(hour * 3600 + minute * 60 + second) * TICKS_PER_SECOND;
    if c.eat(b'.') {
        let count = c.rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if count == 0 {
            return None;
        }
        let (frac, rest) = c.rest.split_at(count);
        let mut fraction: i64 = 0;
        for i in 0..7 {
            fraction = fraction * 10 + frac.get(i).map_or(0, |b| i64::from(b - b'0'));
        }
        ticks += fraction;
        c.rest = rest;
    }
    ticks -= parse_offset(&mut c)?;
    (c.rest.is_empty() && (0..=MAX_TICKS).contains(&ticks)).then_some(ticks)
}

/// The UTC offset in ticks (`Z`, `±HH`, `±HH:mm`, or none = 0 as-is).
fn parse_offset(c: &mut Cursor<'_>) -> Option<i64> {
    if c.eat(b'Z') || c.rest.is_empty() {
        return Some(0);
    }
    let sign = if c.eat(b'+') {
        1
    } else if c.eat(b'-') {
        -1
    } else {
        return None;
    };
    let hours = c.digits(2)?;
    let minutes = if c.eat(b':') { c.digits(2)? } else { 0 };
    if hours > 14 || minutes > 59 {
        return None;
    }
    Some(sign * i64::from(hours * 60 + minutes) * 60 * TICKS_PER_SECOND)
}

/// Renders like `DateTime.ToString("O")` of an unspecified-kind value, trailing
/// fraction zeros trimmed (System.Text.Json): `2025-07-15T12:34:56.12`.
pub fn format_iso(ticks: i64) -> String {
    let days = ticks.div_euclid(TICKS_PER_DAY);
    let of_day = ticks.rem_euclid(TICKS_PER_DAY);
    let (year, month, day) = civil_from_days(days - UNIX_EPOCH_DAYS);
    let seconds = of_day / TICKS_PER_SECOND;
    let fraction = of_day % TICKS_PER_SECOND;
    let mut out = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    );
    if fraction != 0 {
        let digits = format!("{fraction:07}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out
}

/// Ticks of a Unix time in seconds + nanoseconds (for the HTTP `Date` header).
pub fn ticks_from_unix(secs: u64, nanos: u32) -> i64 {
    let secs = i64::try_from(secs).unwrap_or(0);
    (UNIX_EPOCH_DAYS * 86_400 + secs) * TICKS_PER_SECOND + i64::from(nanos / 100)
}

/// An RFC 7231 IMF-fixdate (`Tue, 15 Jul 2025 12:34:56 GMT`) of a tick count.
pub fn http_date(ticks: i64) -> String {
    const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = ticks.div_euclid(TICKS_PER_DAY);
    let seconds = ticks.rem_euclid(TICKS_PER_DAY) / TICKS_PER_SECOND;
    let (year, month, day) = civil_from_days(days - UNIX_EPOCH_DAYS);
    // 0001-01-01 was a Monday.
    let weekday = WEEKDAYS[days.rem_euclid(7) as usize];
    let month_name = MONTHS[(month as usize).saturating_sub(1) % 12];
    format!(
        "{weekday}, {day:02} {month_name} {year} {:02}:{:02}:{:02} GMT",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Option<i64> {
        parse_iso(s.as_bytes(), false)
    }

    #[test]
    fn utc_with_and_without_millis() {
        let base = p("2025-07-15T12:34:56Z").unwrap();
        assert_eq!(p("2025-07-15T12:34:56.000Z"), Some(base));
        assert_eq!(p("2025-07-15T12:34:56.123Z"), Some(base + 1_230_000));
        assert_eq!(format_iso(base), "2025-07-15T12:34:56");
        assert_eq!(format_iso(base + 1_230_000), "2025-07-15T12:34:56.123");
    }

    #[test]
    fn seven_fraction_digits_kept_and_more_dropped() {
        let base = p("2025-07-15T12:34:56Z").unwrap();
        assert_eq!(p("2025-07-15T12:34:56.1234567Z"), Some(base + 1_234_567));
        assert_eq!(p("2025-07-15T12:34:56.12345678Z"), Some(base + 1_234_567));
        assert_eq!(p("2025-07-15T12:34:56.1Z"), Some(base + 1_000_000));
        assert_eq!(format_iso(base + 1_234_567), "2025-07-15T12:34:56.1234567");
        assert_eq!(format_iso(base + 1), "2025-07-15T12:34:56.0000001");
    }

    #[test]
    fn offsets_convert_to_utc() {
        let utc = p("2025-07-15T12:34:56Z").unwrap();
        assert_eq!(p("2025-07-15T15:34:56+03:00"), Some(utc));
        assert_eq!(p("2025-07-15T09:04:56-03:30"), Some(utc));
        assert_eq!(p("2025-07-15T15:34:56+03"), Some(utc));
        assert_eq!(p("2025-07-16T00:34:56+12:00"), Some(utc));
        assert_eq!(p("2025-07-15T12:34:56+00:00"), Some(utc));
        assert_eq!(
            p("2025-07-15T12:34:56"),
            Some(utc),
            "no offset: stored as is"
        );
    }

    #[test]
    fn short_forms() {
        let midnight = p("2025-07-15T00:00:00Z").unwrap();
        assert_eq!(p("2025-07-15"), Some(midnight));
        assert_eq!(p("2025-07-15T00:00"), Some(midnight));
        assert_eq!(parse_iso(b"2025-07-15 00:00:00", true), Some(midnight));
        assert_eq!(parse_iso(b"2025-07-15 00:00:00", false), None);
    }

    #[test]
    fn rejects_invalid() {
        for bad in [
            "",
            "2025",
            "2025-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2025-07-15T24:00:00Z",
            "2025-07-15T12:60:00Z",
            "2025-07-15T12:00:60Z",
            "2025-07-15T12:00:00.Z",
            "2025-07-15T12:00:00+15:00",
            "2025-07-15T12:00:00 ",
            "2025-07-15T12",
            "0000-01-01",
            "0001-01-01T00:00:00+01:00",
            "abcd-07-15",
        ] {
            assert_eq!(p(bad), None, "{bad:?}");
        }
        assert!(p("2024-02-29T00:00:00Z").is_some());
    }

    #[test]
    fn extremes_and_civil_round_trip() {
        assert_eq!(p("0001-01-01T00:00:00Z"), Some(0));
        assert_eq!(format_iso(0), "0001-01-01T00:00:00");
        assert_eq!(p("9999-12-31T23:59:59.9999999Z"), Some(MAX_TICKS));
        for days in [-719_162, -1, 0, 1, 11_016, 20_284, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn http_dates() {
        assert_eq!(
            http_date(ticks_from_unix(0, 0)),
            "Thu, 01 Jan 1970 00:00:00 GMT"
        );
        let t = p("2025-07-15T12:34:56Z").unwrap();
        assert_eq!(http_date(t), "Tue, 15 Jul 2025 12:34:56 GMT");
    }
}
