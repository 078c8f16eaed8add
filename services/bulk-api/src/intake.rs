//! Reading a job's input: NDJSON or CSV, one operation per line, parsed line by line as the
//! upload streams in (never buffered whole). A malformed line is reported by its number and a
//! fixed reason that never repeats the line's content (which may name a person: INV-6).
//!
//! NDJSON: `{"op":"add","group_id":"<uuid>","subject":"alice","email":"alice@corp.example"}`.
//! CSV: a header naming the columns (`op,group_id,subject,email`, any order; `subject` or
//! `email` may be left out), then one row per operation; fields may be double-quoted.

use crate::chunk::{Op, OpKind};
use domain::{Email, GroupId, Subject};
use serde::Deserialize;

/// Longest line accepted, in bytes.
pub const MAX_LINE: usize = 4096;

/// The input's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    Ndjson,
    /// A header line, then comma-separated rows.
    Csv,
}

impl Format {
    /// The format a `Content-Type` names, if any.
    pub fn from_content_type(ctype: &str) -> Option<Self> {
        let essence = ctype
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/json-lines"
            | "application/jsonlines" => Some(Self::Ndjson),
            "text/csv" | "application/csv" => Some(Self::Csv),
            _ => None,
        }
    }
}

/// Why a line was refused. Fixed texts: none repeats the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineError {
    /// Not valid JSON, or not an object with the expected fields.
    NotJson,
    /// `op` is missing or neither `add` nor `remove`.
    BadOp,
    /// `group_id` is missing or not a UUID.
    BadGroup,
    /// Neither `subject` nor `email`.
    Unnamed,
    /// `subject` is not a valid subject.
    BadSubject,
    /// `email` is not a valid address.
    BadEmail,
    /// A CSV row with a different number of fields than the header.
    FieldCount,
    /// A CSV header that does not name `op` and `group_id` and one of `subject`, `email`.
    BadHeader,
    /// The line is longer than [`MAX_LINE`] bytes.
    TooLong,
    /// The line is not UTF-8.
    NotUtf8,
}

impl LineError {
    /// The reason, as reports show it.
    pub fn reason(self) -> &'static str {
        match self {
            Self::NotJson => "not a JSON object with op, group_id and subject or email",
            Self::BadOp => "op must be \"add\" or \"remove\"",
            Self::BadGroup => "group_id must be a UUID",
            Self::Unnamed => "names neither a subject nor an email",
            Self::BadSubject => "subject is not valid",
            Self::BadEmail => "email is not a valid address",
            Self::FieldCount => "the row's number of fields differs from the header's",
            Self::BadHeader => "the CSV header must name op, group_id and subject and/or email",
            Self::TooLong => "the line is longer than 4096 bytes",
            Self::NotUtf8 => "the line is not UTF-8",
        }
    }
}

#[derive(Deserialize)]
struct JsonLine {
    op: Option<String>,
    group_id: Option<String>,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    email: Option<String>,
}

/// Builds the operation from its fields, checking each.
fn build(
    op: Option<&str>,
    group: Option<&str>,
    subject: Option<&str>,
    email: Option<&str>,
) -> Result<Op, LineError> {
    let op = match op.map(str::trim) {
        Some("add") => OpKind::Add,
        Some("remove") => OpKind::Remove,
        _ => return Err(LineError::BadOp),
    };
    let group_id = group
        .map(str::trim)
        .and_then(|g| uuid::Uuid::parse_str(g).ok())
        .map(GroupId::from)
        .ok_or(LineError::BadGroup)?;
    let subject = subject.map(str::trim).filter(|s| !s.is_empty());
    let email = email.map(str::trim).filter(|s| !s.is_empty());
    if subject.is_none() && email.is_none() {
        return Err(LineError::Unnamed);
    }
    let subject = subject
        .map(Subject::parse)
        .transpose()
        .map_err(|_| LineError::BadSubject)?;
    let email = email
        .map(Email::parse)
        .transpose()
        .map_err(|_| LineError::BadEmail)?;
    Ok(Op {
        op,
        group_id,
        subject,
        email,
    })
}

/// Parses one NDJSON line.
pub fn parse_json_line(line: &str) -> Result<Op, LineError> {
    let v: JsonLine = serde_json::from_str(line).map_err(|_| LineError::NotJson)?;
    build(
        v.op.as_deref(),
        v.group_id.as_deref(),
        v.subject.as_deref(),
        v.email.as_deref(),
    )
}

/// Splits one CSV row into fields (RFC 4180 quoting within the line).
pub fn split_csv(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if cur.is_empty() => quoted = true,
            (',', false) => fields.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    fields.push(cur);
    fields
}

/// The column positions a CSV header names.
#[derive(Debug, Clone, Copy)]
pub struct CsvColumns {
    op: usize,
    group: usize,
    subject: Option<usize>,
    email: Option<usize>,
    count: usize,
}

impl CsvColumns {
    /// Reads the header line.
    pub fn parse(header: &str) -> Result<Self, LineError> {
        let names: Vec<String> = split_csv(header)
            .into_iter()
            .map(|n| n.trim().to_ascii_lowercase())
            .collect();
        let find = |n: &str| names.iter().position(|c| c == n);
        let cols = Self {
            op: find("op").ok_or(LineError::BadHeader)?,
            group: find("group_id").ok_or(LineError::BadHeader)?,
            subject: find("subject"),
            email: find("email"),
            count: names.len(),
        };
        if cols.subject.is_none() && cols.email.is_none() {
            return Err(LineError::BadHeader);
        }
        Ok(cols)
    }

    /// Parses one row under this header.
    pub fn parse_row(&self, line: &str) -> Result<Op, LineError> {
        let fields = split_csv(line);
        if fields.len() != self.count {
            return Err(LineError::FieldCount);
        }
        let get = |i: Option<usize>| i.map(|i| fields[i].as_str());
        build(
            get(Some(self.op)),
            get(Some(self.group)),
            get(self.subject),
            get(self.email),
        )
    }
}

/// A line-by-line parser fed with the upload's bytes as they arrive.
pub struct LineParser {
    format: Format,
    csv: Option<CsvColumns>,
    buf: Vec<u8>,
    line_no: u64,
    overlong: bool,
}

/// What one line was.
pub type Parsed = (u64, Result<Op, LineError>);

impl LineParser {
    /// A parser for `format`.
    pub fn new(format: Format) -> Self {
        Self {
            format,
            csv: None,
            buf: Vec::new(),
            line_no: 0,
            overlong: false,
        }
    }

    /// Feeds `bytes`, calling `out` for every complete line's result (blank lines and the CSV
    /// header produce none).
    pub fn feed(&mut self, bytes: &[u8], out: &mut impl FnMut(Parsed)) {
        let mut rest = bytes;
        while let Some(i) = rest.iter().position(|b| *b == b'\n') {
            let (head, tail) = rest.split_at(i);
            self.push(head);
            let line = std::mem::take(&mut self.buf);
            self.finish_line(&line, out);
            rest = &tail[1..];
        }
        self.push(rest);
    }

    /// Ends the input: the last line, if it had no newline.
    pub fn finish(&mut self, out: &mut impl FnMut(Parsed)) {
        if !self.buf.is_empty() || self.overlong {
            let line = std::mem::take(&mut self.buf);
            self.finish_line(&line, out);
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        if self.overlong {
            return;
        }
        if self.buf.len() + bytes.len() > MAX_LINE {
            self.overlong = true;
            self.buf.clear();
        } else {
            self.buf.extend_from_slice(bytes);
        }
    }

    fn finish_line(&mut self, raw: &[u8], out: &mut impl FnMut(Parsed)) {
        self.line_no += 1;
        let n = self.line_no;
        if std::mem::take(&mut self.overlong) {
            out((n, Err(LineError::TooLong)));
            return;
        }
        let Ok(line) = std::str::from_utf8(raw) else {
            out((n, Err(LineError::NotUtf8)));
            return;
        };
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            return;
        }
        match self.format {
            Format::Ndjson => out((n, parse_json_line(line))),
            Format::Csv => match &self.csv {
                None => match CsvColumns::parse(line) {
                    Ok(cols) => self.csv = Some(cols),
                    Err(e) => out((n, Err(e))),
                },
                Some(cols) => out((n, cols.parse_row(line))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(
        format: Format,
        input: &str,
        piece: usize,
    ) -> Vec<(u64, Result<OpKind, LineError>)> {
        let mut p = LineParser::new(format);
        let mut got = Vec::new();
        for chunk in input.as_bytes().chunks(piece) {
            p.feed(chunk, &mut |(n, r)| got.push((n, r.map(|o| o.op))));
        }
        p.finish(&mut |(n, r)| got.push((n, r.map(|o| o.op))));
        got
    }

    #[test]
    fn ndjson_lines_parse_whatever_the_upload_pieces_and_bad_lines_name_their_number() {
        let g = uuid::Uuid::new_v4();
        let input = format!(
            "{{\"op\":\"add\",\"group_id\":\"{g}\",\"subject\":\"alice\"}}\n\n\
             {{\"op\":\"remove\",\"group_id\":\"{g}\",\"email\":\"Bob@Corp.example\"}}\r\n\
             not json\n\
             {{\"op\":\"ad\",\"group_id\":\"{g}\",\"subject\":\"x\"}}\n\
             {{\"op\":\"add\",\"group_id\":\"nope\",\"subject\":\"x\"}}\n\
             {{\"op\":\"add\",\"group_id\":\"{g}\"}}\n\
             {{\"op\":\"add\",\"group_id\":\"{g}\",\"email\":\"not-an-address\"}}\n\
             {{\"op\":\"add\",\"group_id\":\"{g}\",\"subject\":\"last\"}}"
        );
        let expected = vec![
            (1, Ok(OpKind::Add)),
            (3, Ok(OpKind::Remove)),
            (4, Err(LineError::NotJson)),
            (5, Err(LineError::BadOp)),
            (6, Err(LineError::BadGroup)),
            (7, Err(LineError::Unnamed)),
            (8, Err(LineError::BadEmail)),
            (9, Ok(OpKind::Add)),
        ];
        for piece in [1, 7, 64, 10_000] {
            assert_eq!(
                parse_all(Format::Ndjson, &input, piece),
                expected,
                "pieces of {piece}"
            );
        }
    }

    #[test]
    fn csv_reads_its_header_quotes_and_counts_fields() {
        let g = uuid::Uuid::new_v4();
        let input = format!(
            "email,op,group_id,subject\n\
             \"a@corp.example\",add,{g},\n\
             ,remove,{g},\"sub,with \"\"comma\"\"\"\n\
             a@corp.example,add,{g}\n"
        );
        let got = parse_all(Format::Csv, &input, 5);
        assert_eq!(
            got,
            vec![
                (2, Ok(OpKind::Add)),
                (3, Ok(OpKind::Remove)),
                (4, Err(LineError::FieldCount)),
            ]
        );
        assert_eq!(
            parse_all(Format::Csv, "op,group_id\nadd,x\n", 100),
            vec![
                (1, Err(LineError::BadHeader)),
                (2, Err(LineError::BadHeader))
            ]
        );
    }

    #[test]
    fn overlong_lines_are_refused_without_buffering_them() {
        let long = "x".repeat(MAX_LINE * 3);
        let got = parse_all(Format::Ndjson, &format!("{long}\n{{}}\n"), 1000);
        assert_eq!(
            got,
            vec![(1, Err(LineError::TooLong)), (2, Err(LineError::BadOp))]
        );
    }

    #[test]
    fn reasons_never_repeat_the_line() {
        let secret = "alice@corp.example";
        let line = format!("{{\"op\":\"zap\",\"email\":\"{secret}\"}}");
        let err = parse_json_line(&line).unwrap_err();
        assert!(!err.reason().contains("alice"));
    }

    #[test]
    fn content_types_name_formats() {
        assert_eq!(
            Format::from_content_type("application/x-ndjson"),
            Some(Format::Ndjson)
        );
        assert_eq!(
            Format::from_content_type("text/csv; charset=utf-8"),
            Some(Format::Csv)
        );
        assert_eq!(Format::from_content_type("text/plain"), None);
    }
}
