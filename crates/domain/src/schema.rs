//! The JSON Schemas of the newtypes whose `parse` enforces more than "a string": length, blank
//! text, control characters, the shape of an address. Written by hand from the same limits the
//! parsers use, so an OpenAPI document built from these types states every rule, and a request
//! that is valid by the document is not refused for a rule the document kept quiet about.
//!
//! Patterns are ECMA-262 regular expressions, as JSON Schema specifies, limited to what every
//! common engine reads alike (no `\p{…}` classes). Where a rule is about Unicode categories (a
//! label name's letters) the pattern is the closest such expression and the description says
//! the rule in words.

use std::borrow::Cow;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::RefOr;

/// Control characters as `char::is_control` counts them (C0, DEL, C1), for character classes.
const CONTROL: &str = r"\u0000-\u001F\u007F-\u009F";

/// Text that is not blank and holds no control character (what `check_text` accepts, length
/// aside): any run of allowed characters with at least one that is not white space.
pub fn not_blank_pattern() -> String {
    format!(r"^[^{CONTROL}]*[^\s{CONTROL}][^{CONTROL}]*$")
}

/// A string schema with a description, length bounds and a pattern.
pub fn string(
    description: impl Into<String>,
    min_length: usize,
    max_length: usize,
    pattern: impl Into<String>,
) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .min_length(Some(min_length))
        .max_length(Some(max_length))
        .pattern(Some(pattern))
}

/// The schema of a `text_newtype!`: not blank, no control characters, at most `max`.
pub fn text(description: &str, max: usize) -> RefOr<Schema> {
    string(
        format!("{description} Not blank, no control characters, at most {max} characters."),
        1,
        max,
        not_blank_pattern(),
    )
    .into()
}

/// A label name: letters, digits, spaces, `-` and `_`, 1 to 64 characters, no space at either
/// end. The pattern refuses ASCII punctuation and control characters; letters and digits beyond
/// ASCII are allowed, as the parser allows them.
pub fn label_name(max: usize) -> RefOr<Schema> {
    let other = format!(r"{CONTROL}!-,./:-@\[-^`{{-~");
    string(
        format!(
            "A label's name: letters, digits, spaces, `-` and `_`, at most {max} characters, \
             not starting or ending with a space."
        ),
        1,
        max,
        format!(r"^[^\s{other}](?:[^{other}]*[^\s{other}])?$"),
    )
    .examples(["Confidential"])
    .into()
}

/// The local part of a group's contact address.
pub fn local_part(max: usize) -> RefOr<Schema> {
    string(
        format!(
            "The local part of a contact address: lowercase ASCII letters, digits, `.`, `-` and \
             `_`, 1 to {max} characters, starting and ending with a letter or digit, no `..`."
        ),
        1,
        max,
        format!(
            r"^(?!.*\.\.)[a-z0-9](?:[a-z0-9._-]{{0,{}}}[a-z0-9])?$",
            max - 2
        ),
    )
    .examples(["witness-support"])
    .into()
}

/// An e-mail address as `Email::parse` accepts it. The parser trims the value first, so the
/// pattern is a little stricter than the parser: a value valid by the schema is always accepted.
pub fn email(max: usize, max_local: usize) -> RefOr<Schema> {
    string(
        format!(
            "An e-mail address, at most {max} characters: one `@`, a local part of 1 to \
             {max_local} characters without spaces, controls or `<>()[],;:\"\\`, and a domain of \
             letters, digits, `-` and `.` with at least one dot."
        ),
        3,
        max,
        format!(
            r#"^[^\s{CONTROL}<>()\[\],;:"\\@]{{1,{max_local}}}@(?!.*\.\.)(?=[^@]*\.)[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$"#
        ),
    )
    .format(Some(SchemaFormat::KnownFormat(
        utoipa::openapi::KnownFormat::Email,
    )))
    .examples(["alice@corp.example"])
    .into()
}

/// The name a hand-written schema is registered under.
pub(crate) fn name(s: &'static str) -> Cow<'static, str> {
    Cow::Borrowed(s)
}
