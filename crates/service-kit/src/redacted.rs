//! Secrets in configuration: database URLs that carry a password, seal keys given inline.

use std::fmt;
use std::str::FromStr;

/// A secret string from the command line or the environment. `Debug` and `Display` print
/// `<redacted>`, so a configuration can derive `Debug` and be logged; the value is wiped from
/// memory when dropped.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Redacted(zeroize::Zeroizing<String>);

impl Redacted {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(zeroize::Zeroizing::new(secret.into()))
    }

    /// The secret itself; hand it only to what needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for Redacted {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(s))
    }
}

impl From<String> for Redacted {
    fn from(secret: String) -> Self {
        Self::new(secret)
    }
}

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neither_debug_nor_display_shows_the_secret() {
        let s = Redacted::new("postgres://hush:hunter2@db/hush");
        assert_eq!(format!("{s:?} {s}"), "<redacted> <redacted>");
        assert_eq!(s.expose(), "postgres://hush:hunter2@db/hush");
    }
}
