//! Newtypes for identifiers and names. Each has a `parse` constructor; there is no other way to
//! build one, so a `Subject` in a handler is always a valid subject.

use crate::{schema, DomainError};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;
use utoipa::ToSchema;
use uuid::Uuid;

/// The identifier of a group: a random UUID chosen by control-api at creation.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(transparent)]
#[schema(value_type = String, format = Uuid)]
pub struct GroupId(Uuid);

impl GroupId {
    /// A fresh random id.
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }

    /// Parses the canonical hyphenated form.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| DomainError::invalid("group id", "must be a UUID"))
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl Default for GroupId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<Uuid> for GroupId {
    fn from(u: Uuid) -> Self {
        Self(u)
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

fn check_text(field: &'static str, s: &str, max: usize) -> Result<(), DomainError> {
    if s.trim().is_empty() {
        return Err(DomainError::invalid(field, "must not be empty"));
    }
    if s.chars().count() > max {
        return Err(DomainError::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(DomainError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

macro_rules! text_newtype {
    ($(#[$doc:meta])* $name:ident, $summary:literal, $field:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                schema::text($summary, Self::MAX_LEN)
            }
        }

        impl utoipa::ToSchema for $name {
            fn name() -> Cow<'static, str> {
                schema::name(stringify!($name))
            }
        }

        impl $name {
            /// Longest accepted value, in characters.
            pub const MAX_LEN: usize = $max;

            /// Accepts a non-empty value without control characters, at most `MAX_LEN` long.
            pub fn parse(s: impl Into<String>) -> Result<Self, DomainError> {
                let s = s.into();
                check_text($field, &s, Self::MAX_LEN)?;
                Ok(Self(s))
            }

            /// The value as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The value, owned.
            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

text_newtype!(
    /// The stable identifier of a person or agent as the company IdP names it (`sub`).
    Subject,
    "The IdP's stable identifier of a person or agent (`sub`).",
    "subject",
    256
);
text_newtype!(
    /// A group's display name.
    GroupName,
    "A group's display name.",
    "name",
    120
);

/// A label's name, e.g. `Confidential`: letters, digits, spaces, `-` and `_`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct LabelName(String);

impl LabelName {
    /// Longest accepted name, in characters.
    pub const MAX_LEN: usize = 64;
}

impl utoipa::PartialSchema for LabelName {
    fn schema() -> RefOr<Schema> {
        schema::label_name(Self::MAX_LEN)
    }
}

impl utoipa::ToSchema for LabelName {
    fn name() -> Cow<'static, str> {
        schema::name("LabelName")
    }
}

impl LabelName {
    /// Accepts 1..=64 characters of letters, digits, space, `-`, `_`.
    pub fn parse(s: impl Into<String>) -> Result<Self, DomainError> {
        let s = s.into();
        check_text("label name", &s, Self::MAX_LEN)?;
        if s.trim() != s {
            return Err(DomainError::invalid(
                "label name",
                "must not start or end with a space",
            ));
        }
        if !s
            .chars()
            .all(|c| c.is_alphanumeric() || c == ' ' || c == '-' || c == '_')
        {
            return Err(DomainError::invalid(
                "label name",
                "may hold only letters, digits, spaces, '-' and '_'",
            ));
        }
        Ok(Self(s))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LabelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for LabelName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// The local part of a group's contact address: lowercase ASCII letters, digits, `.`, `-`, `_`;
/// 1..=64 characters, starting and ending with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct LocalPart(String);

impl utoipa::PartialSchema for LocalPart {
    fn schema() -> RefOr<Schema> {
        schema::local_part(Self::MAX_LEN)
    }
}

impl utoipa::ToSchema for LocalPart {
    fn name() -> Cow<'static, str> {
        schema::name("LocalPart")
    }
}

impl LocalPart {
    /// Longest accepted local part, in characters (ASCII, so also bytes).
    pub const MAX_LEN: usize = 64;

    /// Accepts a conservative dot-atom local part (see the type's doc).
    pub fn parse(s: impl Into<String>) -> Result<Self, DomainError> {
        let s = s.into();
        let ok_edge =
            |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if s.is_empty() || s.len() > Self::MAX_LEN {
            return Err(DomainError::invalid(
                "address",
                "must be 1 to 64 characters",
            ));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_'))
            || !ok_edge(s.chars().next())
            || !ok_edge(s.chars().last())
            || s.contains("..")
        {
            return Err(DomainError::invalid(
                "address",
                "may hold lowercase letters, digits, '.', '-' and '_', and must start and end with a letter or digit",
            ));
        }
        Ok(Self(s))
    }

    /// Derives a local part from a display name: lowercase, runs of other characters become
    /// one `-`, trimmed to 48 characters so a suffix still fits.
    pub fn slug_of(name: &str) -> Option<Self> {
        let mut out = String::new();
        for c in name.chars().flat_map(char::to_lowercase) {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                out.push(c);
            } else if !out.ends_with('-') && !out.is_empty() {
                out.push('-');
            }
            if out.len() >= 48 {
                break;
            }
        }
        let out = out.trim_end_matches('-').to_string();
        Self::parse(out).ok()
    }

    /// The local part as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for LocalPart {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// An e-mail address, normalised to lowercase. Deliberately strict: one `@`, a non-empty local
/// part without spaces or angle brackets, a domain with at least one dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl utoipa::PartialSchema for Email {
    fn schema() -> RefOr<Schema> {
        schema::email(Self::MAX_LEN, Self::MAX_LOCAL_LEN)
    }
}

impl utoipa::ToSchema for Email {
    fn name() -> Cow<'static, str> {
        schema::name("Email")
    }
}

impl Email {
    /// Longest accepted address, in characters.
    pub const MAX_LEN: usize = 254;
    /// Longest accepted local part (before `@`), in characters.
    pub const MAX_LOCAL_LEN: usize = 64;

    /// Parses and lowercases an address.
    pub fn parse(s: impl AsRef<str>) -> Result<Self, DomainError> {
        let s = s.as_ref().trim().to_ascii_lowercase();
        // Characters, not bytes, as the schema's maxLength counts them (a local part may hold
        // non-ASCII letters, RFC 6531).
        if s.chars().count() > Self::MAX_LEN {
            return Err(DomainError::invalid(
                "email",
                "must be at most 254 characters",
            ));
        }
        let Some((local, domain)) = s.split_once('@') else {
            return Err(DomainError::invalid("email", "must contain '@'"));
        };
        let bad = |c: char| c.is_whitespace() || c.is_control() || "<>()[],;:\"\\@".contains(c);
        if local.is_empty() || local.chars().count() > Self::MAX_LOCAL_LEN || local.chars().any(bad)
        {
            return Err(DomainError::invalid("email", "has an invalid local part"));
        }
        if domain.len() < 3
            || !domain.contains('.')
            || domain.starts_with(['.', '-'])
            || domain.ends_with(['.', '-'])
            || domain.contains("..")
            || !domain
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        {
            return Err(DomainError::invalid("email", "has an invalid domain"));
        }
        Ok(Self(s))
    }

    /// The address as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part after `@`.
    pub fn domain(&self) -> &str {
        self.0.split_once('@').map(|(_, d)| d).unwrap_or_default()
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Email {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_lowercased_and_checked() {
        assert_eq!(
            Email::parse(" Alice@Corp.Example ").unwrap().as_str(),
            "alice@corp.example"
        );
        for bad in [
            "",
            "alice",
            "@corp.example",
            "alice@",
            "alice@corp",
            "a b@corp.example",
            "a@b@c.example",
            "<a>@corp.example",
            "a@corp..example",
            "a@-corp.example",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    /// The limits count characters, as the schema's `maxLength` does: a local part of 64
    /// non-ASCII letters (128 bytes) is accepted, one of 65 is not.
    #[test]
    fn email_limits_count_characters_as_the_schema_does() {
        let local = "é".repeat(Email::MAX_LOCAL_LEN);
        assert!(Email::parse(format!("{local}@corp.example")).is_ok());
        assert!(Email::parse(format!("{local}é@corp.example")).is_err());
    }

    #[test]
    fn subjects_refuse_empty_long_and_control_characters() {
        assert!(Subject::parse("alice").is_ok());
        assert!(Subject::parse("").is_err());
        assert!(Subject::parse("   ").is_err());
        assert!(Subject::parse("a\nb").is_err());
        assert!(Subject::parse("x".repeat(257)).is_err());
        assert!(Subject::parse("x".repeat(256)).is_ok());
    }

    #[test]
    fn label_names_allow_words_and_refuse_punctuation() {
        assert!(LabelName::parse("Highly Confidential").is_ok());
        assert!(LabelName::parse("Team_A-1").is_ok());
        assert!(LabelName::parse("x/../y").is_err());
        assert!(LabelName::parse(" padded").is_err());
    }

    #[test]
    fn local_parts_are_conservative_and_slugs_are_derived() {
        assert!(LocalPart::parse("witness-support").is_ok());
        assert!(LocalPart::parse("Upper").is_err());
        assert!(LocalPart::parse("-edge").is_err());
        assert!(LocalPart::parse("a..b").is_err());
        assert_eq!(
            LocalPart::slug_of("Women in Engineering!")
                .unwrap()
                .as_str(),
            "women-in-engineering"
        );
        assert!(LocalPart::slug_of("!!!").is_none());
    }

    #[test]
    fn deserialising_goes_through_parse() {
        let bad: Result<Email, _> = serde_json::from_str("\"not-an-address\"");
        assert!(bad.is_err());
        let bad: Result<Subject, _> = serde_json::from_str("\"\"");
        assert!(bad.is_err());
    }
}
