//! ISO-8601 UTC timestamps <-> microseconds since the Unix epoch, and the clocks.
//!
//! Hand-written (no chrono): the summary bounds and `requestedAt` are the only dates we
//! handle, and the civil-date arithmetic is a dozen lines (H. Hinnant's algorithms).

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Wall-clock microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_micros() as i64,
        Err(e) => -(e.duration().as_micros() as i64),
    }
}

/// Monotonic milliseconds since the first call in this process.
pub fn mono_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

fn digits(s: &[u8], at: usize, n: usize) -> Option<i64> {
    let part = s.get(at..at + n)?;
    part.iter().try_fold(0i64, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fffffff][Z|±hh:mm]` (no zone means UTC; a space may
/// stand for `T`) into microseconds; digits past the 6th are truncated.
pub fn parse_iso_us(s: &[u8]) -> Option<i64> {
    let (y, mo, d) = (digits(s, 0, 4)?, digits(s, 5, 2)?, digits(s, 8, 2)?);
    let (h, mi, sec) = (digits(s, 11, 2)?, digits(s, 14, 2)?, digits(s, 17, 2)?);
    if s[4] != b'-'
        || s[7] != b'-'
        || !matches!(s[10], b'T' | b't' | b' ')
        || s[13] != b':'
        || s[16] != b':'
    {
        return None;
    }
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 59
    {
        return None;
    }
    let mut i = 19;
    let mut frac_us = 0i64;
    if s.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while s.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 6 {
                frac_us = frac_us * 10 + i64::from(s[i] - b'0');
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 || n > 9 {
            return None;
        }
        for _ in n..6 {
            frac_us *= 10;
        }
    }
    let offset_s = match s.get(i) {
        None => 0,
        Some(b'Z' | b'z') if i + 1 == s.len() => 0,
        Some(&sign @ (b'+' | b'-')) if s.len() == i + 6 && s[i + 3] == b':' => {
            let (oh, om) = (digits(s, i + 1, 2)?, digits(s, i + 4, 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let v = oh * 3600 + om * 60;
            if sign == b'+' {
                v
            } else {
                -v
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset_s;
    Some(secs * 1_000_000 + frac_us)
}

/// Appends `us` as `YYYY-MM-DDTHH:MM:SS.mmmZ` (millisecond precision; `us` must be a
/// whole number of milliseconds for the text to be exact).
pub fn write_iso_ms(out: &mut Vec<u8>, us: i64) {
    let ms = us.div_euclid(1000);
    let secs = ms.div_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let two = |out: &mut Vec<u8>, v: i64| {
        out.extend_from_slice(&[b'0' + (v / 10) as u8, b'0' + (v % 10) as u8])
    };
    let y = y.clamp(0, 9999);
    two(out, y / 100);
    two(out, y % 100);
    out.push(b'-');
    two(out, m);
    out.push(b'-');
    two(out, d);
    out.push(b'T');
    two(out, sod / 3600);
    out.push(b':');
    two(out, sod % 3600 / 60);
    out.push(b':');
    two(out, sod % 60);
    let frac = ms.rem_euclid(1000);
    out.extend_from_slice(&[
        b'.',
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
    out.push(b'Z');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Option<i64> {
        parse_iso_us(s.as_bytes())
    }

    #[test]
    fn parses_k6_form_and_variants() {
        assert_eq!(p("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(p("1970-01-01T00:00:01Z"), Some(1_000_000));
        assert_eq!(p("2025-07-15T12:34:56.789Z"), Some(1_752_582_896_789_000));
        assert_eq!(p("2025-07-15T12:34:56.789"), Some(1_752_582_896_789_000));
        assert_eq!(
            p("2025-07-15T12:34:56.7891234Z"),
            Some(1_752_582_896_789_123)
        );
        assert_eq!(
            p("2025-07-15T15:34:56.789+03:00"),
            Some(1_752_582_896_789_000)
        );
        assert_eq!(
            p("2025-07-15T09:34:56.789-03:00"),
            Some(1_752_582_896_789_000)
        );
        assert_eq!(
            p("2024-02-29T00:00:00Z").map(|v| v % 86_400_000_000),
            Some(0)
        );
        assert_eq!(p("1969-12-31T23:59:59.999Z"), Some(-1_000));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "2025-07-15",
            "2025-07-15T12:34",
            "2025-13-15T12:34:56Z",
            "2025-02-29T12:34:56Z",
            "2025-07-15T24:00:00Z",
            "2025-07-15T12:34:56.Z",
            "2025-07-15T12:34:56.1234567890Z",
            "2025-07-15T12:34:56ZZ",
            "2025-07-15T12:34:56+0300",
            "2025/07/15T12:34:56Z",
            "2025-07-15T12:34:5xZ",
            "+025-07-15T12:34:56Z",
        ] {
            assert_eq!(p(bad), None, "{bad}");
        }
    }

    #[test]
    fn writes_round_trip() {
        for us in [
            0,
            1_752_582_896_789_000,
            951_782_400_000_000,
            -1_000,
            4_102_444_799_999_000,
        ] {
            let mut out = Vec::new();
            write_iso_ms(&mut out, us);
            assert_eq!(
                p(std::str::from_utf8(&out).unwrap()),
                Some(us),
                "{}",
                String::from_utf8_lossy(&out)
            );
        }
        let mut out = Vec::new();
        write_iso_ms(&mut out, 1_752_582_896_789_000);
        assert_eq!(out, b"2025-07-15T12:34:56.789Z");
    }
}
