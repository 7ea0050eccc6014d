//! Where a listener or a peer lives: `host:port` or `unix:PATH`. Below both `config`
//! (which parses flags into it) and `identity` (which hashes it), so neither imports
//! the other for it.

use std::fmt;

/// Where a listener or a peer lives: TCP `host:port` or a unix socket `unix:PATH`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Addr {
    Tcp(String),
    Unix(String),
}

impl Addr {
    pub fn parse(s: &str) -> Result<Addr, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(format!("empty unix socket path in {s:?}"));
            }
            return Ok(Addr::Unix(path.to_string()));
        }
        if s.rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        {
            Ok(Addr::Tcp(s.to_string()))
        } else {
            Err(format!("expected HOST:PORT or unix:PATH, got {s:?}"))
        }
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Tcp(a) => f.write_str(a),
            Addr::Unix(p) => write!(f, "unix:{p}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_round_trip() {
        assert_eq!(Addr::parse("a:1"), Ok(Addr::Tcp("a:1".into())));
        assert_eq!(Addr::parse("unix:/tmp/p"), Ok(Addr::Unix("/tmp/p".into())));
        assert_eq!(Addr::Unix("/tmp/p".into()).to_string(), "unix:/tmp/p");
        assert!(Addr::parse("nohost").is_err());
        assert!(Addr::parse("unix:").is_err());
    }
}
