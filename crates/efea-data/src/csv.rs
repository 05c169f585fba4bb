//! A minimal CSV reader for the dataset files: streams the file in chunks (memory stays at
//! one chunk, whatever the file size), keeps 1-based line numbers, handles quoted fields and
//! CRLF, and hands out batches of lines to parse in parallel.

use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::path::Path;

use crate::error::{DataError, FileProblem, Result, RowProblem};

/// Bytes read per step; a few thousand FER2013 rows.
const CHUNK: usize = 8 << 20;

/// One non-blank line: its 1-based number and its bytes without the line ending.
pub(crate) type Line<'a> = (usize, &'a [u8]);

/// Calls `on_header(line)` for line 1, then `on_lines(header, batch)` for every batch of
/// non-blank data lines, in order. Returns the parsed header and the number of data lines. An empty (or all-blank) file is
/// [`FileProblem::Empty`]; a header without rows is [`FileProblem::HeaderOnly`].
pub(crate) fn read_lines<H>(
    path: &Path,
    expected_header: &str,
    on_header: impl Fn(&[u8]) -> Result<H>,
    mut on_lines: impl FnMut(&H, &[Line<'_>]) -> Result<()>,
) -> Result<(H, usize)> {
    let mut file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK);
    let mut want = CHUNK;
    let mut eof = false;
    let mut line_no = 0usize;
    let mut header: Option<H> = None;
    let mut rows = 0usize;
    loop {
        while buf.len() < want && !eof {
            let start = buf.len();
            buf.resize(want, 0);
            let n = file
                .read(&mut buf[start..])
                .map_err(|e| DataError::io(path, e))?;
            buf.truncate(start + n);
            eof = n == 0;
        }
        let end = if eof {
            buf.len()
        } else {
            match memchr::memrchr(b'\n', &buf) {
                Some(position) => position + 1,
                None => {
                    // One line longer than the buffer: read more before splitting.
                    want *= 2;
                    continue;
                }
            }
        };
        let region = &buf[..end];
        let mut lines: Vec<Line<'_>> = Vec::new();
        let mut line_start = 0;
        let ends = memchr::memchr_iter(b'\n', region)
            .chain((eof && !region.ends_with(b"\n") && !region.is_empty()).then_some(end));
        for line_end in ends {
            let mut line = &region[line_start..line_end];
            line_start = line_end + 1;
            line_no += 1;
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            let blank = line.trim_ascii().is_empty();
            if header.is_none() {
                let header_line = line.strip_prefix("\u{feff}".as_bytes()).unwrap_or(line);
                if header_line.trim_ascii().is_empty() {
                    // All blank is an empty file (reported at the end); text after a blank
                    // first line means the header is missing.
                    continue;
                }
                if line_no > 1 {
                    return Err(DataError::row(
                        path,
                        1,
                        RowProblem::Header {
                            found: String::new(),
                            expected: expected_header.into(),
                        },
                    ));
                }
                header = Some(on_header(header_line)?);
                continue;
            }
            if blank {
                continue;
            }
            lines.push((line_no, line));
        }
        rows += lines.len();
        if let (Some(header), false) = (&header, lines.is_empty()) {
            on_lines(header, &lines)?;
        }
        drop(lines);
        buf.drain(..end);
        want = want.max(CHUNK);
        if eof {
            break;
        }
    }
    let Some(header) = header else {
        return Err(DataError::file(
            path,
            FileProblem::Empty {
                expected: expected_header.into(),
            },
        ));
    };
    if rows == 0 {
        return Err(DataError::file(path, FileProblem::HeaderOnly));
    }
    Ok((header, rows))
}

/// Splits `line` at commas outside double quotes into `fields` (byte ranges, quotes and
/// surrounding spaces removed).
pub(crate) fn split_fields(line: &[u8], fields: &mut Vec<Range<usize>>) -> Result<(), RowProblem> {
    fields.clear();
    let mut i = 0;
    let n = line.len();
    loop {
        while i < n && line[i] == b' ' {
            i += 1;
        }
        if i < n && line[i] == b'"' {
            let start = i + 1;
            let mut j = start;
            loop {
                match memchr::memchr(b'"', &line[j..]) {
                    // A doubled quote is an escaped quote inside the field.
                    Some(k) if line.get(j + k + 1) == Some(&b'"') => j += k + 2,
                    Some(k) => {
                        j += k;
                        break;
                    }
                    None => return Err(RowProblem::UnterminatedQuote),
                }
            }
            fields.push(start..j);
            i = j + 1;
            match memchr::memchr(b',', &line[i..]) {
                Some(k) => i += k + 1,
                None => return Ok(()),
            }
        } else {
            let start = i;
            match memchr::memchr(b',', &line[i..]) {
                Some(k) => {
                    fields.push(trim_range(line, start..i + k));
                    i += k + 1;
                }
                None => {
                    fields.push(trim_range(line, start..n));
                    return Ok(());
                }
            }
        }
    }
}

fn trim_range(line: &[u8], mut range: Range<usize>) -> Range<usize> {
    while range.start < range.end && line[range.start].is_ascii_whitespace() {
        range.start += 1;
    }
    while range.end > range.start && line[range.end - 1].is_ascii_whitespace() {
        range.end -= 1;
    }
    range
}

/// A header's column names: trimmed and unquoted (compare them ignoring case).
pub(crate) fn header_names(line: &[u8]) -> Vec<String> {
    let mut fields = Vec::new();
    // An unbalanced quote in a header is reported as a bad header by the caller.
    let _ = split_fields(line, &mut fields);
    fields
        .into_iter()
        .map(|range| String::from_utf8_lossy(&line[range]).trim().to_string())
        .collect()
}

/// `bytes` as text for an error message, shortened to `max` characters.
pub(crate) fn shown(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max).collect();
        format!("{cut}...")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(line: &str) -> Result<Vec<String>, RowProblem> {
        let mut ranges = Vec::new();
        split_fields(line.as_bytes(), &mut ranges)?;
        Ok(ranges.into_iter().map(|r| line[r].to_string()).collect())
    }

    #[test]
    fn splits_plain_quoted_and_spaced_fields() {
        assert_eq!(
            fields("0,1 2 3,Training").unwrap(),
            ["0", "1 2 3", "Training"]
        );
        assert_eq!(
            fields("0, \"1 2 3\" ,Training").unwrap(),
            ["0", "1 2 3", "Training"]
        );
        assert_eq!(
            fields(" 0 , Training, 4 5").unwrap(),
            ["0", "Training", "4 5"]
        );
        assert_eq!(fields("a,").unwrap(), ["a", ""]);
        assert_eq!(fields("\"1 2").unwrap_err(), RowProblem::UnterminatedQuote);
    }
}
