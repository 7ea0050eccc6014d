//! Exact decimals: JSON number text to cents with .NET `decimal.Round(x, 2)`
//! (banker's rounding), and scaled-integer rendering. No floats anywhere.

/// Largest magnitude a .NET `decimal` holds (2^96 - 1); beyond it binding fails.
const DECIMAL_MAX: i128 = 79_228_162_514_264_337_593_543_950_335;
/// Digits kept before the exponent is applied; longer inputs are rejected.
const MAX_DIGITS: usize = 64;

/// A decimal as `mantissa / 10^scale`, exactly as written (scale kept).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decimal {
    pub mantissa: i128,
    pub scale: u32,
}

/// The pieces of a JSON number literal: sign, significant digits, power of ten.
struct Parts {
    negative: bool,
    digits: Vec<u8>,
    exponent: i64,
}

/// Splits a JSON number (`-?(0|[1-9]d*)(.d+)?([eE][+-]?d+)?`) into its parts.
fn split(text: &[u8]) -> Option<Parts> {
    let (negative, rest) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let int_len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if int_len == 0 || (int_len > 1 && rest.first() == Some(&b'0')) {
        return None;
    }
    let (int_part, mut rest) = rest.split_at(int_len);
    let mut digits: Vec<u8> = int_part.iter().map(|b| b - b'0').collect();
    let mut exponent: i64 = 0;
    if let Some((b'.', after)) = rest.split_first() {
        let frac_len = after.iter().take_while(|b| b.is_ascii_digit()).count();
        if frac_len == 0 {
            return None;
        }
        let (frac, after) = after.split_at(frac_len);
        digits.extend(frac.iter().map(|b| b - b'0'));
        exponent -= i64::try_from(frac_len).ok()?;
        rest = after;
    }
    if let Some((b'e' | b'E', after)) = rest.split_first() {
        let (exp_negative, after) = match after.split_first() {
            Some((b'-', a)) => (true, a),
            Some((b'+', a)) => (false, a),
            _ => (false, after),
        };
        if after.is_empty() || after.len() > 9 || !after.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let value = after
            .iter()
            .fold(0i64, |acc, b| acc * 10 + i64::from(b - b'0'));
        exponent += if exp_negative { -value } else { value };
        rest = &[];
    }
    if !rest.is_empty() {
        return None;
    }
    let first_nonzero = digits.iter().position(|&d| d != 0).unwrap_or(digits.len());
    digits.drain(..first_nonzero);
    if digits.len() > MAX_DIGITS {
        return None;
    }
    Some(Parts {
        negative,
        digits,
        exponent,
    })
}

fn to_integer(digits: &[u8]) -> Option<i128> {
    digits.iter().try_fold(0i128, |acc, &d| {
        acc.checked_mul(10)?.checked_add(i128::from(d))
    })
}

/// Parses a JSON number and rounds it to cents like `decimal.Round(x, 2)`
/// (midpoint to even). `None` when it is not a number or overflows a decimal.
pub fn parse_cents(text: &[u8]) -> Option<i128> {
    let parts = split(text)?;
    let shift = parts.exponent + 2;
    let magnitude = if parts.digits.is_empty() {
        0
    } else if shift >= 0 {
        let shift = u32::try_from(shift).ok().filter(|&s| s <= 40)?;
        to_integer(&parts.digits)?.checked_mul(10i128.checked_pow(shift)?)?
    } else {
        let dropped = usize::try_from(-shift).ok()?;
        let keep = parts.digits.len().saturating_sub(dropped);
        let kept = to_integer(&parts.digits[..keep])?;
        // Digits below the cent: the first decides, the rest only break a tie.
        let tail = &parts.digits[keep..];
        let pad = dropped - tail.len();
        let (first, rest_nonzero) = if pad > 0 {
            (0, tail.iter().any(|&d| d != 0))
        } else {
            (
                tail.first().copied().unwrap_or(0),
                tail.iter().skip(1).any(|&d| d != 0),
            )
        };
        let round_up = first > 5 || (first == 5 && (rest_nonzero || kept % 2 == 1));
        kept + i128::from(round_up)
    };
    if magnitude > DECIMAL_MAX.checked_mul(100)? {
        return None;
    }
    Some(if parts.negative {
        -magnitude
    } else {
        magnitude
    })
}

/// Parses a decimal literal keeping its scale (like `decimal.Parse("0.05")`).
pub fn parse_exact(text: &str) -> Option<Decimal> {
    let parts = split(text.as_bytes())?;
    let (mantissa, scale) = if parts.exponent >= 0 {
        let shift = u32::try_from(parts.exponent).ok()?;
        (
            to_integer(&parts.digits)?.checked_mul(10i128.checked_pow(shift)?)?,
            0,
        )
    } else {
        (
            to_integer(&parts.digits)?,
            u32::try_from(-parts.exponent).ok()?,
        )
    };
    if mantissa > DECIMAL_MAX || scale > 28 {
        return None;
    }
    let mantissa = if parts.negative { -mantissa } else { mantissa };
    Some(Decimal { mantissa, scale })
}

/// Appends `mantissa / 10^scale` with exactly `scale` fraction digits.
pub fn write_scaled(out: &mut String, mantissa: i128, scale: u32) {
    if mantissa < 0 {
        out.push('-');
    }
    let digits = mantissa.unsigned_abs().to_string();
    let scale = scale as usize;
    if scale == 0 {
        out.push_str(&digits);
        return;
    }
    if digits.len() <= scale {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', scale - digits.len()));
        out.push_str(&digits);
    } else {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    }
}

/// Renders a scaled integer as a string (see [`write_scaled`]).
pub fn scaled(mantissa: i128, scale: u32) -> String {
    let mut out = String::new();
    write_scaled(&mut out, mantissa, scale);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cents(s: &str) -> Option<i128> {
        parse_cents(s.as_bytes())
    }

    #[test]
    fn plain_amounts() {
        assert_eq!(cents("19.90"), Some(1990));
        assert_eq!(cents("19.9"), Some(1990));
        assert_eq!(cents("20"), Some(2000));
        assert_eq!(cents("0"), Some(0));
        assert_eq!(cents("-1.5"), Some(-150));
        assert_eq!(cents("0.01"), Some(1));
    }

    #[test]
    fn bankers_rounding_to_two_places() {
        assert_eq!(cents("0.125"), Some(12));
        assert_eq!(cents("0.135"), Some(14));
        assert_eq!(cents("0.1250001"), Some(13));
        assert_eq!(cents("0.124999"), Some(12));
        assert_eq!(cents("2.675"), Some(268));
        assert_eq!(cents("2.665"), Some(266));
        assert_eq!(cents("-0.125"), Some(-12));
        assert_eq!(cents("-0.135"), Some(-14));
        assert_eq!(cents("0.005"), Some(0));
        assert_eq!(cents("0.015"), Some(2));
        assert_eq!(cents("0.0051"), Some(1));
        assert_eq!(cents("0.0004"), Some(0));
        assert_eq!(cents("19.999"), Some(2000));
    }

    #[test]
    fn exponents() {
        assert_eq!(cents("1e2"), Some(10000));
        assert_eq!(cents("1.5E-1"), Some(15));
        assert_eq!(cents("125e-3"), Some(12));
        assert_eq!(cents("5e-3"), Some(0));
        assert_eq!(cents("5e-1000"), Some(0));
        assert_eq!(cents("1e+1"), Some(1000));
    }

    #[test]
    fn rejects_non_numbers_and_overflow() {
        for bad in [
            "", "-", "01", "1.", ".5", "1e", "1e+", "abc", "1.2.3", "+1", "1 ", "NaN",
        ] {
            assert_eq!(cents(bad), None, "{bad:?}");
        }
        assert_eq!(
            cents("79228162514264337593543950335"),
            Some(DECIMAL_MAX * 100)
        );
        assert_eq!(cents("79228162514264337593543950336"), None);
        assert_eq!(cents("1e40"), None);
        assert_eq!(cents("1e999999999"), None);
    }

    #[test]
    fn exact_fee_keeps_scale() {
        assert_eq!(
            parse_exact("0.05"),
            Some(Decimal {
                mantissa: 5,
                scale: 2
            })
        );
        assert_eq!(
            parse_exact("0.150"),
            Some(Decimal {
                mantissa: 150,
                scale: 3
            })
        );
        assert_eq!(
            parse_exact("1"),
            Some(Decimal {
                mantissa: 1,
                scale: 0
            })
        );
        assert_eq!(parse_exact("x"), None);
    }

    #[test]
    fn rendering() {
        assert_eq!(scaled(1990, 2), "19.90");
        assert_eq!(scaled(5, 2), "0.05");
        assert_eq!(scaled(-5, 3), "-0.005");
        assert_eq!(scaled(0, 2), "0.00");
        assert_eq!(scaled(0, 0), "0");
        assert_eq!(scaled(99_500, 4), "9.9500");
    }
}
