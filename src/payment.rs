//! The payment vocabulary shared by every module: correlation ids, processors, amounts.
//!
//! Amounts are integer cents everywhere (never floats), rounded the way the processors
//! round (.NET `decimal.Round`, half to even), so what we record is what they store.

use std::fmt;

/// A UUID kept as 16 bytes; rendered back in canonical lower-case form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct CorrelationId(pub [u8; 16]);

impl CorrelationId {
    /// Parses the canonical 8-4-4-4-12 hex form (either case).
    pub fn parse(s: &[u8]) -> Option<CorrelationId> {
        if s.len() != 36 {
            return None;
        }
        let mut out = [0u8; 16];
        let mut n = 0;
        let mut i = 0;
        while i < 36 {
            if matches!(i, 8 | 13 | 18 | 23) {
                if s[i] != b'-' {
                    return None;
                }
                i += 1;
                continue;
            }
            let hi = hex(s[i])?;
            let lo = hex(s[i + 1])?;
            out[n] = (hi << 4) | lo;
            n += 1;
            i += 2;
        }
        Some(CorrelationId(out))
    }

    /// The canonical 36-byte lower-case text.
    pub fn text(&self) -> [u8; 36] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [b'-'; 36];
        let mut j = 0;
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                j += 1;
            }
            out[j] = DIGITS[(b >> 4) as usize];
            out[j + 1] = DIGITS[(b & 15) as usize];
            j += 2;
        }
        out
    }

    /// Picks the owner instance: exactly what nginx's `hash $key` (not `consistent`)
    /// computes for the canonical text, `(crc32(key) >> 16) & 0x7fff`, so that an
    /// nginx hashing on the correlationId (nginx.conf) delivers each payment to its
    /// owner and nothing crosses the peer link. Any other spelling of the id is still
    /// owned by one instance, just forwarded to it.
    pub fn owner_hash(&self) -> u64 {
        u64::from((crc32(&self.text()) >> 16) & 0x7fff)
    }
}

/// CRC-32 (IEEE 802.3, reflected, as zlib and nginx's `ngx_crc32_long`).
pub fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    !data
        .iter()
        .fold(!0u32, |c, &b| TABLE[usize::from((c as u8) ^ b)] ^ (c >> 8))
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Debug for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(&self.text()).map_err(|_| fmt::Error)?)
    }
}

/// The two payment processors; `Default` is always the cheaper one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Processor {
    Default = 0,
    Fallback = 1,
}

impl Processor {
    pub const ALL: [Processor; 2] = [Processor::Default, Processor::Fallback];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_index(i: u8) -> Option<Processor> {
        match i {
            0 => Some(Processor::Default),
            1 => Some(Processor::Fallback),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Processor::Default => "default",
            Processor::Fallback => "fallback",
        }
    }
}

/// A payment accepted by the server and not yet paid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Payment {
    pub id: CorrelationId,
    pub cents: u64,
    /// Monotonic milliseconds (see `time::mono_ms`) when the server accepted it.
    pub accepted_ms: u64,
    /// The only processor that may already hold it (see `journal`), if any.
    pub pin: Option<Processor>,
}

/// A payment a processor has stored: exactly the fields its summary sums over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub id: CorrelationId,
    /// `requestedAt` as stored by the processor, microseconds since the Unix epoch (UTC).
    pub requested_at_us: i64,
    pub cents: u64,
    pub processor: Processor,
}

/// Largest amount accepted: 10^12 cents keeps every sum far from u64 overflow.
pub const MAX_CENTS: u64 = 1_000_000_000_000;

/// Parses a positive JSON decimal (`19.90`, `20`, `1e2`, `0.125`) into cents with
/// half-to-even rounding. Rejects signs, zero, NaN-likes and absurd magnitudes.
pub fn parse_cents(s: &[u8]) -> Option<u64> {
    let (mant, exp) = match s.iter().position(|&c| c == b'e' || c == b'E') {
        Some(i) => (&s[..i], parse_exp(&s[i + 1..])?),
        None => (s, 0i32),
    };
    let (int, frac) = match mant.iter().position(|&c| c == b'.') {
        Some(i) => (&mant[..i], &mant[i + 1..]),
        None => (mant, &mant[mant.len()..]),
    };
    let json_int_ok = !int.is_empty() && (int.len() == 1 || int[0] != b'0');
    if !json_int_ok || (mant.len() > int.len() && frac.is_empty()) {
        return None;
    }
    if !int.iter().chain(frac).all(u8::is_ascii_digit) {
        return None;
    }
    // digits = int ++ frac, value = digits * 10^(exp - frac.len()); cents shift by +2.
    let digits: Vec<u8> = int.iter().chain(frac).copied().collect();
    let first = digits
        .iter()
        .position(|&d| d != b'0')
        .unwrap_or(digits.len());
    let digits = &digits[first..];
    if digits.is_empty() {
        return None;
    }
    let shift = i64::from(exp) - frac.len() as i64 + 2;
    let whole_len = digits.len() as i64 + shift;
    if whole_len > 13 {
        return None;
    }
    let split = whole_len.clamp(0, digits.len() as i64) as usize;
    let mut cents: u64 = 0;
    for &d in &digits[..split] {
        cents = cents * 10 + u64::from(d - b'0');
    }
    for _ in 0..shift.max(0) {
        cents *= 10;
    }
    let rest = &digits[split..];
    // Rounding digits lie below the cent if any remain (whole_len may be negative).
    let leading_zeros = (-whole_len).max(0);
    if let Some(&r0) = rest.first().filter(|_| leading_zeros == 0) {
        let tail_nonzero = rest[1..].iter().any(|&d| d != b'0');
        let round_up = r0 > b'5' || (r0 == b'5' && (tail_nonzero || cents % 2 == 1));
        if round_up {
            cents += 1;
        }
    }
    (cents > 0 && cents <= MAX_CENTS).then_some(cents)
}

fn parse_exp(s: &[u8]) -> Option<i32> {
    let (neg, digits) = match s.first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 3 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v = digits
        .iter()
        .fold(0i32, |a, &d| a * 10 + i32::from(d - b'0'));
    Some(if neg { -v } else { v })
}

/// Appends `cents` as an exact decimal with two places (`1990` → `19.90`).
pub fn write_cents(out: &mut Vec<u8>, cents: u64) {
    let mut buf = itoa::Buffer::new();
    out.extend_from_slice(buf.format(cents / 100).as_bytes());
    let c = cents % 100;
    out.extend_from_slice(&[b'.', b'0' + (c / 10) as u8, b'0' + (c % 10) as u8]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check values from zlib (`(zlib.crc32(text) >> 16) & 0x7fff` in Python).
    #[test]
    fn owner_hash_is_nginx_hash_of_the_text() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        let id = CorrelationId::parse(b"4A7901B8-7D26-4D9D-AA19-4DC1C7CF60B3").unwrap();
        assert_eq!(id.owner_hash(), 25_951);
        assert_eq!(CorrelationId([0; 16]).owner_hash(), 337);
    }

    #[test]
    fn uuid_round_trip() {
        let t = b"4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3";
        let id = CorrelationId::parse(t).unwrap();
        assert_eq!(&id.text(), t);
        let upper = CorrelationId::parse(b"4A7901B8-7D26-4D9D-AA19-4DC1C7CF60B3").unwrap();
        assert_eq!(upper, id);
    }

    #[test]
    fn uuid_rejects_malformed() {
        for bad in [
            &b"4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b"[..],
            b"4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b33",
            b"4a7901b87d264d9daa194dc1c7cf60b3",
            b"4a7901b8_7d26-4d9d-aa19-4dc1c7cf60b3",
            b"4a7901b8-7d26-4d9d-aa19-4dc1c7cf60bg",
            b"",
        ] {
            assert_eq!(
                CorrelationId::parse(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn cents_exact_and_bankers_rounding() {
        let cases: &[(&str, Option<u64>)] = &[
            ("19.90", Some(1990)),
            ("20.05", Some(2005)),
            ("20", Some(2000)),
            ("0.01", Some(1)),
            ("0.125", Some(12)),
            ("0.135", Some(14)),
            ("0.1251", Some(13)),
            ("1e2", Some(10000)),
            ("1.5E-1", Some(15)),
            ("0.005", None),
            ("0.0051", Some(1)),
            ("0.015", Some(2)),
            ("0", None),
            ("0.00", None),
            ("-1", None),
            ("01", None),
            ("1.", None),
            (".5", None),
            ("abc", None),
            ("", None),
            ("1e999", None),
            (
                "99999999999.99",
                Some(9_999_999_999_999).filter(|c| *c <= MAX_CENTS),
            ),
            ("10000000000", Some(1_000_000_000_000)),
            ("100000000000", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_cents(s.as_bytes()), *want, "{s}");
        }
    }

    #[test]
    fn writes_two_places() {
        let mut v = Vec::new();
        write_cents(&mut v, 1990);
        v.push(b' ');
        write_cents(&mut v, 5);
        v.push(b' ');
        write_cents(&mut v, 0);
        assert_eq!(v, b"19.90 0.05 0.00");
    }
}
