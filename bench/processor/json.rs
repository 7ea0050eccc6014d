//! A small strict JSON reader (RFC 8259, depth-limited, numbers kept as text)
//! and the field binding rules of ASP.NET minimal APIs with System.Text.Json web
//! defaults: case-insensitive names, last duplicate wins, missing → default,
//! numbers also read from strings, `null` into a value type is an error.

use crate::decimal;
use crate::guid;
use crate::time;

/// System.Text.Json's default maximum depth.
const MAX_DEPTH: usize = 64;

#[derive(Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    /// The literal as written, validated against the JSON number grammar.
    Number(String),
    Str(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

/// Why a body could not be bound; every case is a 400 in the original.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Invalid;

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
}

/// Parses one JSON document (a UTF-8 BOM and surrounding whitespace allowed).
pub fn parse(input: &[u8]) -> Result<Value, Invalid> {
    let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    let mut p = Parser { input, pos: 0 };
    let value = p.value(0)?;
    p.skip_ws();
    if p.pos == input.len() {
        Ok(value)
    } else {
        Err(Invalid)
    }
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn next(&mut self) -> Result<u8, Invalid> {
        let b = self.peek().ok_or(Invalid)?;
        self.pos += 1;
        Ok(b)
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn literal(&mut self, word: &[u8], value: Value) -> Result<Value, Invalid> {
        let end = self.pos.checked_add(word.len()).ok_or(Invalid)?;
        if self.input.get(self.pos..end) == Some(word) {
            self.pos = end;
            Ok(value)
        } else {
            Err(Invalid)
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, Invalid> {
        if depth > MAX_DEPTH {
            return Err(Invalid);
        }
        self.skip_ws();
        match self.peek().ok_or(Invalid)? {
            b'{' => self.object(depth),
            b'[' => self.array(depth),
            b'"' => self.string().map(Value::Str),
            b't' => self.literal(b"true", Value::Bool(true)),
            b'f' => self.literal(b"false", Value::Bool(false)),
            b'n' => self.literal(b"null", Value::Null),
            _ => self.number(),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, Invalid> {
        self.pos += 1;
        let mut fields = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(fields));
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(Invalid);
            }
            let name = self.string()?;
            self.skip_ws();
            if self.next()? != b':' {
                return Err(Invalid);
            }
            fields.push((name, self.value(depth + 1)?));
            self.skip_ws();
            match self.next()? {
                b',' => continue,
                b'}' => return Ok(Value::Object(fields)),
                _ => return Err(Invalid),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, Invalid> {
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            match self.next()? {
                b',' => continue,
                b']' => return Ok(Value::Array(items)),
                _ => return Err(Invalid),
            }
        }
    }

    fn number(&mut self) -> Result<Value, Invalid> {
        let start = self.pos;
        while matches!(
            self.peek(),
            Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
        ) {
            self.pos += 1;
        }
        let text = self.input.get(start..self.pos).ok_or(Invalid)?;
        if !is_number(text) {
            return Err(Invalid);
        }
        Ok(Value::Number(String::from_utf8_lossy(text).into_owned()))
    }

    fn hex4(&mut self) -> Result<u32, Invalid> {
        (0..4).try_fold(0u32, |acc, _| {
            let digit = char::from(self.next()?).to_digit(16).ok_or(Invalid)?;
            Ok((acc << 4) | digit)
        })
    }

    fn escape(&mut self, out: &mut Vec<u8>) -> Result<(), Invalid> {
        let c = match self.next()? {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let high = self.hex4()?;
                let code = if (0xD800..0xDC00).contains(&high) {
                    if self.next()? != b'\\' || self.next()? != b'u' {
                        return Err(Invalid);
                    }
                    let low = self.hex4()?;
                    if !(0xDC00..0xE000).contains(&low) {
                        return Err(Invalid);
                    }
                    0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                } else {
                    high
                };
                char::from_u32(code).ok_or(Invalid)?
            }
            _ => return Err(Invalid),
        };
        let mut buf = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        Ok(())
    }

    fn string(&mut self) -> Result<String, Invalid> {
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.next()? {
                b'"' => return String::from_utf8(out).map_err(|_| Invalid),
                b'\\' => self.escape(&mut out)?,
                b if b < 0x20 => return Err(Invalid),
                b => out.push(b),
            }
        }
    }
}

/// The JSON number grammar: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
pub fn is_number(text: &[u8]) -> bool {
    let digits = |s: &[u8]| s.iter().take_while(|b| b.is_ascii_digit()).count();
    let s = text.strip_prefix(b"-").unwrap_or(text);
    let int = digits(s);
    if int == 0 || (int > 1 && s[0] == b'0') {
        return false;
    }
    let mut s = &s[int..];
    if let Some(rest) = s.strip_prefix(b".") {
        let n = digits(rest);
        if n == 0 {
            return false;
        }
        s = &rest[n..];
    }
    if let Some(rest) = s.strip_prefix(b"e").or_else(|| s.strip_prefix(b"E")) {
        let rest = rest
            .strip_prefix(b"+")
            .or_else(|| rest.strip_prefix(b"-"))
            .unwrap_or(rest);
        let n = digits(rest);
        if n == 0 {
            return false;
        }
        s = &rest[n..];
    }
    s.is_empty()
}

/// The fields of a bound JSON object (the body must be an object).
pub struct Fields(Vec<(String, Value)>);

impl Fields {
    /// Parses a request body; `null`, arrays and scalars fail like the original.
    pub fn from_body(body: &[u8]) -> Result<Fields, Invalid> {
        match parse(body)? {
            Value::Object(fields) => Ok(Fields(fields)),
            _ => Err(Invalid),
        }
    }

    /// The last property whose name matches case-insensitively.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    pub fn guid(&self, name: &str) -> Result<u128, Invalid> {
        match self.get(name) {
            None => Ok(0),
            Some(Value::Str(s)) => guid::parse_d(s.as_bytes()).ok_or(Invalid),
            Some(_) => Err(Invalid),
        }
    }

    /// A `decimal` rounded to cents; numbers may also come as strings.
    pub fn cents(&self, name: &str) -> Result<i128, Invalid> {
        match self.get(name) {
            None => Ok(0),
            Some(Value::Number(n) | Value::Str(n)) => {
                decimal::parse_cents(n.as_bytes()).ok_or(Invalid)
            }
            Some(_) => Err(Invalid),
        }
    }

    /// A `DateTime` in ticks, converted to UTC when it carries an offset.
    pub fn datetime(&self, name: &str) -> Result<i64, Invalid> {
        match self.get(name) {
            None => Ok(0),
            Some(Value::Str(s)) => time::parse_iso(s.as_bytes(), false).ok_or(Invalid),
            Some(_) => Err(Invalid),
        }
    }

    /// An `int`: an integer literal (no fraction or exponent), maybe in a string.
    pub fn int(&self, name: &str) -> Result<i32, Invalid> {
        match self.get(name) {
            None => Ok(0),
            Some(Value::Number(n) | Value::Str(n)) => {
                let digits = n.strip_prefix('-').unwrap_or(n);
                if !is_number(n.as_bytes()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(Invalid);
                }
                n.parse().map_err(|_| Invalid)
            }
            Some(_) => Err(Invalid),
        }
    }

    pub fn bool(&self, name: &str) -> Result<bool, Invalid> {
        match self.get(name) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(Invalid),
        }
    }

    /// A nullable `string`: missing or `null` is `None`.
    pub fn string(&self, name: &str) -> Result<Option<String>, Invalid> {
        match self.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s.clone())),
            Some(_) => Err(Invalid),
        }
    }
}

/// Appends `s` as a JSON string literal.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_documents() {
        let v =
            parse(br#" {"a":[1,-2.5e3,true,false,null],"b":"x\u00e9\ud83d\ude00\n"} "#).unwrap();
        let Value::Object(fields) = v else {
            panic!("not an object")
        };
        assert_eq!(
            fields[1],
            ("b".to_string(), Value::Str("xé😀\n".to_string()))
        );
        assert!(parse(b"\xEF\xBB\xBF{}").is_ok());
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            &b""[..],
            b"{",
            b"{\"a\":1,}",
            b"[1,]",
            b"{'a':1}",
            b"{\"a\":01}",
            b"{\"a\":1}x",
            b"{\"a\":\"\x01\"}",
            b"{\"a\":\"\\ud800\"}",
            b"{\"a\":\"\xff\"}",
            b"nul",
            b"{\"a\" 1}",
            b"// c\n{}",
        ] {
            assert_eq!(
                parse(bad),
                Err(Invalid),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert_eq!(parse(deep.as_bytes()), Err(Invalid));
    }

    #[test]
    fn binding_defaults_and_case_insensitivity() {
        let f = Fields::from_body(
            br#"{"CORRELATIONID":"4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3","extra":{"x":[1]}}"#,
        )
        .unwrap();
        assert_ne!(f.guid("correlationId"), Ok(0));
        assert_eq!(f.cents("amount"), Ok(0));
        assert_eq!(f.datetime("requestedAt"), Ok(0));
        assert_eq!(f.bool("failure"), Ok(false));
        assert_eq!(f.string("token"), Ok(None));
        let dup = Fields::from_body(br#"{"delay":1,"Delay":2}"#).unwrap();
        assert_eq!(dup.int("delay"), Ok(2));
    }

    #[test]
    fn binding_type_errors() {
        assert!(Fields::from_body(b"null").is_err());
        assert!(Fields::from_body(b"[]").is_err());
        let f = Fields::from_body(
            br#"{"g":null,"a":null,"d":5,"i":1.5,"b":"true","s":1,"n":"19.90","e":1e3,"x":"2e1"}"#,
        )
        .unwrap();
        assert_eq!(f.guid("g"), Err(Invalid));
        assert_eq!(f.cents("a"), Err(Invalid));
        assert_eq!(f.datetime("d"), Err(Invalid));
        assert_eq!(f.int("i"), Err(Invalid));
        assert_eq!(f.int("e"), Err(Invalid));
        assert_eq!(f.int("x"), Err(Invalid));
        assert_eq!(f.bool("b"), Err(Invalid));
        assert_eq!(f.string("s"), Err(Invalid));
        assert_eq!(f.cents("n"), Ok(1990), "numbers may be read from strings");
        assert_eq!(f.cents("e"), Ok(100_000));
        let big = Fields::from_body(br#"{"delay":2147483648}"#).unwrap();
        assert_eq!(big.int("delay"), Err(Invalid));
    }

    #[test]
    fn string_escaping() {
        let mut out = String::new();
        write_str(&mut out, "a\"b\\c\n\u{1}");
        assert_eq!(out, r#""a\"b\\c\n\u0001""#);
    }
}
