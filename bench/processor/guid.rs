//! GUIDs as `u128` (hex digits in written order): the strict `D` form that
//! System.Text.Json reads, the looser `Guid.TryParse` forms a route binds, and
//! the lowercase `D` rendering.

fn hex(bytes: &[u8]) -> Option<u128> {
    if bytes.len() != 32 {
        return None;
    }
    bytes.iter().try_fold(0u128, |acc, &b| {
        let v = char::from(b).to_digit(16)?;
        Some((acc << 4) | u128::from(v))
    })
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (any case) only, like System.Text.Json.
pub fn parse_d(text: &[u8]) -> Option<u128> {
    if text.len() != 36 || [8, 13, 18, 23].iter().any(|&i| text.get(i) != Some(&b'-')) {
        return None;
    }
    let digits: Vec<u8> = text.iter().copied().filter(|&b| b != b'-').collect();
    hex(&digits)
}

/// `Guid.TryParse`: the `D`, `N` (32 digits), `B` (`{D}`) and `P` (`(D)`) forms,
/// surrounding whitespace allowed.
pub fn parse_any(text: &str) -> Option<u128> {
    let t = text.trim().as_bytes();
    match (t.first(), t.last(), t.len()) {
        (_, _, 32) => hex(t),
        (_, _, 36) => parse_d(t),
        (Some(b'{'), Some(b'}'), 38) | (Some(b'('), Some(b')'), 38) => parse_d(&t[1..37]),
        _ => None,
    }
}

/// Lowercase `D` form, as .NET serialises a `Guid`.
pub fn format(id: u128) -> String {
    let h = format!("{id:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3";

    #[test]
    fn d_form_round_trips_lowercase() {
        let id = parse_d(D.as_bytes()).unwrap();
        assert_eq!(format(id), D);
        assert_eq!(parse_d(D.to_uppercase().as_bytes()), Some(id));
        assert_eq!(format(0), "00000000-0000-0000-0000-000000000000");
    }

    #[test]
    fn json_accepts_only_d() {
        assert_eq!(parse_d(b"4a7901b87d264d9daa194dc1c7cf60b3"), None);
        assert_eq!(parse_d(b"4a7901b8-7d26-4d9d-aa19-4dc1c7cf60bz"), None);
        assert_eq!(parse_d(b"4a7901b8+7d26-4d9d-aa19-4dc1c7cf60b3"), None);
        assert_eq!(parse_d(b""), None);
    }

    #[test]
    fn route_accepts_other_forms() {
        let id = parse_d(D.as_bytes());
        assert_eq!(parse_any(D), id);
        assert_eq!(parse_any("4a7901b87d264d9daa194dc1c7cf60b3"), id);
        assert_eq!(parse_any(&format!("{{{D}}}")), id);
        assert_eq!(parse_any(&format!("({D})")), id);
        assert_eq!(parse_any(&format!(" {D} ")), id);
        assert_eq!(parse_any("not-a-guid"), None);
        assert_eq!(parse_any(&format!("{{{D})")), None);
    }
}
