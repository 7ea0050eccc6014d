//! A small JSON reader for the one body we accept: `{"correlationId":..,"amount":..}`.
//!
//! It validates the whole top-level object (other fields are skipped, nesting is
//! bounded) but only decodes the two fields, with no allocation: serde would cost more
//! than the rest of the request path together.

use crate::payment::{parse_cents, CorrelationId};

/// Why a payment body was refused; each maps to a short 400 reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonError {
    Syntax,
    MissingCorrelationId,
    MissingAmount,
    BadCorrelationId,
    BadAmount,
    DuplicateField,
}

impl JsonError {
    pub fn reason(self) -> &'static str {
        match self {
            JsonError::Syntax => "malformed JSON",
            JsonError::MissingCorrelationId => "missing correlationId",
            JsonError::MissingAmount => "missing amount",
            JsonError::BadCorrelationId => "correlationId must be a UUID string",
            JsonError::BadAmount => "amount must be a positive number",
            JsonError::DuplicateField => "duplicate field",
        }
    }
}

const MAX_DEPTH: usize = 16;

struct Reader<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    fn ws(&mut self) {
        while matches!(self.s.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Result<(), JsonError> {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            Ok(())
        } else {
            Err(JsonError::Syntax)
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }

    /// A string's raw content (escapes left as they are, validated for shape).
    fn string(&mut self) -> Result<&'a [u8], JsonError> {
        self.eat(b'"')?;
        let start = self.i;
        loop {
            match self.s.get(self.i) {
                None => return Err(JsonError::Syntax),
                Some(b'"') => break,
                Some(b'\\') => match self.s.get(self.i + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 2,
                    Some(b'u') => {
                        let hex = self
                            .s
                            .get(self.i + 2..self.i + 6)
                            .ok_or(JsonError::Syntax)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return Err(JsonError::Syntax);
                        }
                        self.i += 6;
                    }
                    _ => return Err(JsonError::Syntax),
                },
                Some(c) if *c < 0x20 => return Err(JsonError::Syntax),
                Some(_) => self.i += 1,
            }
        }
        let out = &self.s[start..self.i];
        self.i += 1;
        Ok(out)
    }

    fn number(&mut self) -> Result<&'a [u8], JsonError> {
        self.ws();
        let start = self.i;
        while matches!(
            self.s.get(self.i),
            Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
        ) {
            self.i += 1;
        }
        if self.i == start {
            return Err(JsonError::Syntax);
        }
        Ok(&self.s[start..self.i])
    }

    fn literal(&mut self) -> Result<(), JsonError> {
        for word in [&b"true"[..], b"false", b"null"] {
            if self.s.get(self.i..self.i + word.len()) == Some(word) {
                self.i += word.len();
                return Ok(());
            }
        }
        Err(JsonError::Syntax)
    }

    /// Skips any value, nesting at most `MAX_DEPTH` deep.
    fn skip(&mut self, depth: usize) -> Result<(), JsonError> {
        if depth > MAX_DEPTH {
            return Err(JsonError::Syntax);
        }
        match self.peek().ok_or(JsonError::Syntax)? {
            b'"' => self.string().map(drop),
            b'{' | b'[' => {
                let close = if self.s[self.i] == b'{' { b'}' } else { b']' };
                self.i += 1;
                if self.peek() == Some(close) {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    if close == b'}' {
                        self.string()?;
                        self.eat(b':')?;
                    }
                    self.skip(depth + 1)?;
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(c) if c == close => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return Err(JsonError::Syntax),
                    }
                }
            }
            b't' | b'f' | b'n' => self.literal(),
            _ => self.number().map(drop),
        }
    }
}

/// Reads `correlationId` and `amount` (as cents) from a payment body.
pub fn parse_payment(body: &[u8]) -> Result<(CorrelationId, u64), JsonError> {
    let mut r = Reader { s: body, i: 0 };
    let mut id = None;
    let mut cents = None;
    r.eat(b'{')?;
    if r.peek() == Some(b'}') {
        r.i += 1;
    } else {
        loop {
            let key = r.string()?;
            r.eat(b':')?;
            match key {
                b"correlationId" => {
                    if id.is_some() {
                        return Err(JsonError::DuplicateField);
                    }
                    if r.peek() != Some(b'"') {
                        r.skip(0)?;
                        return Err(JsonError::BadCorrelationId);
                    }
                    id =
                        Some(CorrelationId::parse(r.string()?).ok_or(JsonError::BadCorrelationId)?);
                }
                b"amount" => {
                    if cents.is_some() {
                        return Err(JsonError::DuplicateField);
                    }
                    if !matches!(r.peek(), Some(b'0'..=b'9' | b'-')) {
                        r.skip(0)?;
                        return Err(JsonError::BadAmount);
                    }
                    cents = Some(parse_cents(r.number()?).ok_or(JsonError::BadAmount)?);
                }
                _ => r.skip(1)?,
            }
            match r.peek() {
                Some(b',') => r.i += 1,
                Some(b'}') => {
                    r.i += 1;
                    break;
                }
                _ => return Err(JsonError::Syntax),
            }
        }
    }
    r.ws();
    if r.i != body.len() {
        return Err(JsonError::Syntax);
    }
    Ok((
        id.ok_or(JsonError::MissingCorrelationId)?,
        cents.ok_or(JsonError::MissingAmount)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3";

    #[test]
    fn reads_the_official_body() {
        let body = format!(r#"{{"correlationId":"{ID}","amount":19.90}}"#);
        let (id, cents) = parse_payment(body.as_bytes()).unwrap();
        assert_eq!(&id.text(), ID.as_bytes());
        assert_eq!(cents, 1990);
    }

    #[test]
    fn tolerates_whitespace_order_and_extra_fields() {
        let body = format!(
            " {{ \"amount\" : 20.05 , \"x\":[1,{{\"y\":null}},\"a\\\"b\"], \"correlationId\" : \"{ID}\" }}\n"
        );
        assert_eq!(parse_payment(body.as_bytes()).unwrap().1, 2005);
    }

    #[test]
    fn every_error_is_named() {
        let cases: Vec<(String, JsonError)> = vec![
            (String::new(), JsonError::Syntax),
            ("{".into(), JsonError::Syntax),
            ("[]".into(), JsonError::Syntax),
            ("{}".into(), JsonError::MissingCorrelationId),
            (
                format!(r#"{{"correlationId":"{ID}"}}"#),
                JsonError::MissingAmount,
            ),
            (r#"{"amount":1}"#.into(), JsonError::MissingCorrelationId),
            (
                r#"{"correlationId":"nope","amount":1}"#.into(),
                JsonError::BadCorrelationId,
            ),
            (
                r#"{"correlationId":42,"amount":1}"#.into(),
                JsonError::BadCorrelationId,
            ),
            (
                format!(r#"{{"correlationId":"{ID}","amount":"1"}}"#),
                JsonError::BadAmount,
            ),
            (
                format!(r#"{{"correlationId":"{ID}","amount":-1}}"#),
                JsonError::BadAmount,
            ),
            (
                format!(r#"{{"correlationId":"{ID}","amount":0}}"#),
                JsonError::BadAmount,
            ),
            (
                format!(r#"{{"correlationId":"{ID}","amount":1,"amount":2}}"#),
                JsonError::DuplicateField,
            ),
            (
                format!(r#"{{"correlationId":"{ID}","amount":1}} x"#),
                JsonError::Syntax,
            ),
            (
                format!(r#"{{"correlationId":"{ID}","amount":1,}}"#),
                JsonError::Syntax,
            ),
            (
                format!(r#"{{"correlationId":"{ID}" "amount":1}}"#),
                JsonError::Syntax,
            ),
            (
                format!(
                    r#"{{"correlationId":"{ID}","amount":1,"z":{}}}"#,
                    "[".repeat(40)
                ),
                JsonError::Syntax,
            ),
        ];
        for (body, want) in cases {
            assert_eq!(parse_payment(body.as_bytes()), Err(want), "{body}");
        }
    }

    #[test]
    fn every_truncated_prefix_is_an_error() {
        let body = format!(r#"{{"correlationId":"{ID}","amount":19.90}}"#);
        for n in 0..body.len() {
            assert!(parse_payment(&body.as_bytes()[..n]).is_err(), "{n}");
        }
    }
}
