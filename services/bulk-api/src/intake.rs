//! Reading a job's input: NDJSON or CSV, one operation per line, parsed line by line as the
//! upload streams in (never buffered whole). A malformed line is reported by its number and a
//! fixed reason that never repeats the line's content (which may name a person: INV-6).
//!
//! NDJSON: `{"op":"add","group_id":"<uuid>","subject":"alice","email":"alice@corp.example"}`.
//! CSV (RFC 4180, read by `csv-core`): a header naming the columns (`op,group_id,subject,email`,
//! any order; `subject` or `email` may be left out), then one row per operation; fields may be
//! double-quoted, and a quoted field may hold a line break (the row is reported by the line it
//! starts on). The delimiter is `,`, or `;` when the header has more semicolons than commas
//! outside quotes (spreadsheets in locales whose decimal mark is a comma export that way).
//! A UTF-8 byte order mark at the start of the input (Excel's "CSV UTF-8") is skipped, for
//! both formats.

use crate::chunk::{Op, OpKind};
use domain::{Email, GroupId, Subject};
use serde::Deserialize;

/// Longest line (NDJSON) or row (CSV, without its quotes) accepted, in bytes.
pub const MAX_LINE: usize = 4096;
/// Most fields a CSV row may have.
pub const MAX_FIELDS: usize = 64;
/// The UTF-8 byte order mark.
const BOM: &str = "\u{feff}";

/// The input's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    Ndjson,
    /// A header line, then rows separated by commas (or semicolons).
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

/// The delimiter a CSV header uses: `;` when it has more semicolons than commas outside
/// quotes, else `,`.
fn delimiter_of(header: &str) -> u8 {
    let (mut commas, mut semicolons, mut quoted) = (0, 0, false);
    for c in header.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => commas += 1,
            ';' if !quoted => semicolons += 1,
            _ => {}
        }
    }
    if semicolons > commas {
        b';'
    } else {
        b','
    }
}

/// Splits a CSV header line into its names, read by `csv-core` as the rows are (a header holds
/// no line break).
fn split_header(line: &str, delimiter: u8) -> Vec<String> {
    let mut reader = csv_core::ReaderBuilder::new().delimiter(delimiter).build();
    // Quotes removed, the names are no longer than the line, and no more than its bytes + 1.
    let mut out = vec![0; line.len()];
    let mut ends = vec![0; line.len() + 1];
    let (mut n_out, mut n_end) = (0, 0);
    // The whole line, then the end of input, which completes its one record.
    for input in [line.as_bytes(), &[]] {
        let (_, _, o, e) = reader.read_record(input, &mut out[n_out..], &mut ends[n_end..]);
        n_out += o;
        n_end += e;
    }
    let mut start = 0;
    ends[..n_end]
        .iter()
        .map(|&end| {
            let name = String::from_utf8_lossy(&out[start..end]).into_owned();
            start = end;
            name
        })
        .collect()
}

/// The column positions a CSV header names, and its delimiter.
#[derive(Debug, Clone, Copy)]
pub struct CsvColumns {
    op: usize,
    group: usize,
    subject: Option<usize>,
    email: Option<usize>,
    count: usize,
    delimiter: u8,
}

impl CsvColumns {
    /// Reads the header line.
    pub fn parse(header: &str) -> Result<Self, LineError> {
        let delimiter = delimiter_of(header);
        let names: Vec<String> = split_header(header, delimiter)
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
            delimiter,
        };
        if cols.subject.is_none() && cols.email.is_none() {
            return Err(LineError::BadHeader);
        }
        Ok(cols)
    }

    /// Parses one row's fields under this header.
    pub fn parse_row(&self, fields: &[&str]) -> Result<Op, LineError> {
        if fields.len() != self.count {
            return Err(LineError::FieldCount);
        }
        let get = |i: Option<usize>| i.map(|i| fields[i]);
        build(
            get(Some(self.op)),
            get(Some(self.group)),
            get(self.subject),
            get(self.email),
        )
    }
}

/// A parser fed with the upload's bytes as they arrive: NDJSON and a CSV header line by line,
/// CSV rows by [`CsvRows`] once the header is read.
pub struct LineParser {
    format: Format,
    rows: Option<CsvRows>,
    buf: Vec<u8>,
    line_no: u64,
    overlong: bool,
}

/// CSV rows after the header, read by `csv-core`'s state machine, so a quoted field may hold
/// the delimiter, quotes and line breaks. Memory stays bounded: a row longer than
/// [`MAX_LINE`] or with more than [`MAX_FIELDS`] fields is read to its end and dropped.
struct CsvRows {
    reader: csv_core::Reader,
    cols: CsvColumns,
    /// The current row's field bytes (quotes removed).
    row: Vec<u8>,
    row_len: usize,
    /// Where each field of the current row ends in `row`.
    ends: [usize; MAX_FIELDS],
    n_ends: usize,
    overlong: bool,
    too_many: bool,
    /// The line number of the next byte to read.
    line: u64,
    /// The line the current row starts on.
    row_line: u64,
    /// Between rows: the next byte that is not a line break starts a row.
    between: bool,
}

impl CsvRows {
    fn new(cols: CsvColumns, header_line: u64) -> Self {
        Self {
            reader: csv_core::ReaderBuilder::new()
                .delimiter(cols.delimiter)
                .build(),
            cols,
            row: vec![0; MAX_LINE],
            row_len: 0,
            ends: [0; MAX_FIELDS],
            n_ends: 0,
            overlong: false,
            too_many: false,
            line: header_line + 1,
            row_line: header_line + 1,
            between: true,
        }
    }

    /// Notes the lines `consumed` spans, and where a row starts.
    fn track(&mut self, consumed: &[u8]) {
        for &b in consumed {
            if self.between && b != b'\n' && b != b'\r' {
                self.between = false;
                self.row_line = self.line;
            }
            if b == b'\n' {
                self.line += 1;
            }
        }
    }

    /// Reads `input`, calling `out` for every row it completes; `end`: the upload ends after
    /// it. (`csv-core` takes an empty input as the end, so one is never passed before.)
    fn feed(&mut self, mut input: &[u8], end: bool, out: &mut impl FnMut(Parsed)) {
        use csv_core::ReadRecordResult as R;
        loop {
            if input.is_empty() && !end {
                return;
            }
            let (res, n_in, n_out, n_end) = self.reader.read_record(
                input,
                &mut self.row[self.row_len..],
                &mut self.ends[self.n_ends..],
            );
            self.track(&input[..n_in]);
            input = &input[n_in..];
            self.row_len += n_out;
            self.n_ends += n_end;
            match res {
                R::InputEmpty => return,
                R::End => return,
                // Too long: read on to the row's end, keeping nothing.
                R::OutputFull => {
                    self.overlong = true;
                    self.row_len = 0;
                }
                R::OutputEndsFull => {
                    self.too_many = true;
                    self.n_ends = 0;
                }
                R::Record => self.row_done(out),
            }
        }
    }

    fn row_done(&mut self, out: &mut impl FnMut(Parsed)) {
        let n = self.row_line;
        let result = if std::mem::take(&mut self.overlong) {
            Err(LineError::TooLong)
        } else if std::mem::take(&mut self.too_many) {
            Err(LineError::FieldCount)
        } else {
            match std::str::from_utf8(&self.row[..self.row_len]) {
                Err(_) => Err(LineError::NotUtf8),
                Ok(text) => {
                    let mut fields = Vec::with_capacity(self.n_ends);
                    let mut start = 0;
                    for &end in &self.ends[..self.n_ends] {
                        fields.push(text.get(start..end).unwrap_or_default());
                        start = end;
                    }
                    if fields.iter().all(|f| f.trim().is_empty()) {
                        // A row of empty fields (`,,,` from a spreadsheet) is a blank line.
                        self.reset();
                        return;
                    }
                    self.cols.parse_row(&fields)
                }
            }
        };
        self.reset();
        out((n, result));
    }

    fn reset(&mut self) {
        self.row_len = 0;
        self.n_ends = 0;
        self.between = true;
    }
}

/// What one line was.
pub type Parsed = (u64, Result<Op, LineError>);

impl LineParser {
    /// A parser for `format`.
    pub fn new(format: Format) -> Self {
        Self {
            format,
            rows: None,
            buf: Vec::new(),
            line_no: 0,
            overlong: false,
        }
    }

    /// Feeds `bytes`, calling `out` for every complete line's or row's result (blank lines and
    /// the CSV header produce none).
    pub fn feed(&mut self, bytes: &[u8], out: &mut impl FnMut(Parsed)) {
        let mut rest = bytes;
        loop {
            if let Some(rows) = &mut self.rows {
                rows.feed(rest, false, out);
                return;
            }
            let Some(i) = rest.iter().position(|b| *b == b'\n') else {
                break;
            };
            let (head, tail) = rest.split_at(i);
            self.push(head);
            let line = std::mem::take(&mut self.buf);
            self.finish_line(&line, out);
            rest = &tail[1..];
        }
        self.push(rest);
    }

    /// Ends the input: the last line or row, if it had no line break.
    pub fn finish(&mut self, out: &mut impl FnMut(Parsed)) {
        if let Some(rows) = &mut self.rows {
            rows.feed(&[], true, out);
            return;
        }
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
        let line = if n == 1 {
            line.strip_prefix(BOM).unwrap_or(line)
        } else {
            line
        };
        if line.trim().is_empty() {
            return;
        }
        match self.format {
            Format::Ndjson => out((n, parse_json_line(line))),
            // Until a header reads, every line is tried as one (and refused as one).
            Format::Csv => match CsvColumns::parse(line) {
                Ok(cols) => self.rows = Some(CsvRows::new(cols, n)),
                Err(e) => out((n, Err(e))),
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
    fn csv_from_a_spreadsheet_reads_whatever_its_pieces_bom_semicolons_crlf_and_quoted_line_breaks()
    {
        let g = uuid::Uuid::new_v4();
        // Excel's "CSV UTF-8" in a locale whose decimal mark is a comma: a byte order mark,
        // semicolons, CRLF, a quoted field holding a semicolon and a line break, a row of empty
        // fields, and no line break at the end.
        let input = format!(
            "\u{feff}op;group_id;subject;email\r\n\
             add;{g};alice;\r\n\
             remove;{g};\"bo;b\";\r\n\
             add;{g};\"two\r\nlines\";\r\n\
             ;;;\r\n\
             \r\n\
             zap;{g};x;\r\n\
             add;{g};;\"c@corp.example\""
        );
        let expected = vec![
            (2, Ok(OpKind::Add)),
            (3, Ok(OpKind::Remove)),
            // Starts on line 4, spans two: a subject holding a line break is not valid.
            (4, Err(LineError::BadSubject)),
            (8, Err(LineError::BadOp)),
            (9, Ok(OpKind::Add)),
        ];
        for piece in [1, 2, 3, 5, 17, 10_000] {
            assert_eq!(
                parse_all(Format::Csv, &input, piece),
                expected,
                "pieces of {piece}"
            );
        }
        // The same with commas and LF, and NDJSON behind a byte order mark.
        let plain =
            format!("op,group_id,email\nadd,{g},\"a,b@corp.example\"\nadd,{g},c@corp.example\n");
        assert_eq!(
            parse_all(Format::Csv, &plain, 4),
            vec![(2, Err(LineError::BadEmail)), (3, Ok(OpKind::Add))]
        );
        let ndjson = format!("\u{feff}{{\"op\":\"add\",\"group_id\":\"{g}\",\"subject\":\"a\"}}\n");
        assert_eq!(
            parse_all(Format::Ndjson, &ndjson, 1),
            vec![(1, Ok(OpKind::Add))]
        );
    }

    #[test]
    fn csv_rows_too_long_too_wide_or_not_utf8_are_refused_and_reading_goes_on() {
        let g = uuid::Uuid::new_v4();
        let long = "x".repeat(MAX_LINE * 2);
        let wide = ",".repeat(MAX_FIELDS + 5);
        let mut input =
            format!("op,group_id,subject\nadd,{g},\"{long}\"\n{wide}x\nadd,{g},ok\n").into_bytes();
        input.extend_from_slice(b"add,");
        input.extend_from_slice(g.to_string().as_bytes());
        input.extend_from_slice(b",\xff\xfe\nadd,");
        input.extend_from_slice(g.to_string().as_bytes());
        input.extend_from_slice(b",last\n");
        let mut p = LineParser::new(Format::Csv);
        let mut got = Vec::new();
        for chunk in input.chunks(100) {
            p.feed(chunk, &mut |(n, r)| got.push((n, r.map(|o| o.op))));
        }
        p.finish(&mut |(n, r)| got.push((n, r.map(|o| o.op))));
        assert_eq!(
            got,
            vec![
                (2, Err(LineError::TooLong)),
                (3, Err(LineError::FieldCount)),
                (4, Ok(OpKind::Add)),
                (5, Err(LineError::NotUtf8)),
                (6, Ok(OpKind::Add)),
            ]
        );
    }

    #[test]
    fn a_header_is_split_by_the_same_rules_as_its_rows() {
        assert_eq!(
            split_header("\"op\",\"group \"\"id\"\"\",sub;ject,", b','),
            ["op", "group \"id\"", "sub;ject", ""]
        );
        assert_eq!(split_header("op;\"a;b\"", b';'), ["op", "a;b"]);
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
