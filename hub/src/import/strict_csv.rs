//! The CSV reader both CSV imports share: strict about the shape of each record.
//!
//! The `csv` crate reads an unclosed quote to the end of the file as one field and accepts
//! rows of any width; neither is ever right in our formats. So each record must have exactly
//! the header's number of fields, no field may span lines (no column allows a newline), and
//! the record's raw bytes must hold an even number of quotes (an odd one is a quote left
//! open, or a stray one that would make the reader guess).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{BufRead, Read};
use std::rc::Rc;

use super::progress::EVERY;
use super::{Columns, ImportError, ImportSummary, ProgressFn, Rejection};

/// What the reader sees of the bytes: the offsets of the quotes not yet checked.
struct QuoteTap<R> {
    inner: R,
    offset: u64,
    quotes: Rc<RefCell<VecDeque<u64>>>,
}

impl<R: Read> Read for QuoteTap<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut quotes = self.quotes.borrow_mut();
        for (i, _) in buf[..n].iter().enumerate().filter(|(_, b)| **b == b'"') {
            quotes.push_back(self.offset + i as u64);
        }
        self.offset += n as u64;
        Ok(n)
    }
}

pub(super) struct StrictCsv<R> {
    csv: csv::Reader<QuoteTap<R>>,
    quotes: Rc<RefCell<VecDeque<u64>>>,
    width: usize,
    record: csv::StringRecord,
}

impl<R: BufRead> StrictCsv<R> {
    /// Reads the header and checks it has the `required` columns.
    pub(super) fn open(reader: R, required: &[&str]) -> Result<(Self, Columns), ImportError> {
        let quotes = Rc::new(RefCell::new(VecDeque::new()));
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(true)
            // Widths are checked here, per line, so every bad line is reported.
            .flexible(true)
            .from_reader(QuoteTap {
                inner: reader,
                offset: 0,
                quotes: Rc::clone(&quotes),
            });
        let header = csv.headers().map_err(header_error)?.clone();
        let file = Self {
            width: header.len(),
            csv,
            quotes,
            record: csv::StringRecord::new(),
        };
        if let Some(reason) = file.quote_problem(0, &header) {
            return Err(ImportError::Header(format!("line 1: {reason}")));
        }
        Ok((file, Columns::new(&header, required)?))
    }

    /// The next well-formed record with its line number (`None` at the end of the file).
    /// Every record counts as read in `summary`; a malformed one is rejected there and
    /// skipped; `progress` hears every [`EVERY`] records.
    pub(super) fn next(
        &mut self,
        summary: &mut ImportSummary,
        progress: ProgressFn<'_>,
    ) -> Result<Option<(u64, &csv::StringRecord)>, ImportError> {
        loop {
            let Some(read) = self.read()? else {
                return Ok(None);
            };
            summary.read += 1;
            if summary.read.is_multiple_of(EVERY) {
                progress(summary.read);
            }
            match read {
                Ok(line) => return Ok(Some((line, &self.record))),
                Err(rejection) => summary.rejected.push(rejection),
            }
        }
    }

    /// Reads the next record into `self.record`: its line, or why it is malformed.
    fn read(&mut self) -> Result<Option<Result<u64, Rejection>>, ImportError> {
        let start = self.csv.position().clone();
        match self.csv.read_record(&mut self.record) {
            Ok(false) => Ok(None),
            Ok(true) => {
                let start = self.record.position().unwrap_or(&start).clone();
                let line = start.line();
                let shape = self.quote_problem(start.byte(), &self.record).or_else(|| {
                    (self.record.len() != self.width).then(|| {
                        format!(
                            "{} fields, the header has {}",
                            self.record.len(),
                            self.width
                        )
                    })
                });
                Ok(Some(match shape {
                    Some(reason) => Err(Rejection { line, reason }),
                    None => Ok(line),
                }))
            }
            Err(e) => {
                if let csv::ErrorKind::Io(_) = e.kind() {
                    return Err(header_error(e));
                }
                Ok(Some(Err(Rejection {
                    line: e.position().map_or(start.line(), |p| p.line()),
                    reason: e.to_string(),
                })))
            }
        }
    }

    /// An unclosed or stray quote in the record that started at byte `start` and ends where
    /// the reader now is; forgets the quotes checked.
    fn quote_problem(&self, start: u64, record: &csv::StringRecord) -> Option<String> {
        let end = self.csv.position();
        let mut quotes = self.quotes.borrow_mut();
        let mut odd = false;
        while quotes.front().is_some_and(|&q| q < end.byte()) {
            if quotes.pop_front().is_some_and(|q| q >= start) {
                odd = !odd;
            }
        }
        let spans_lines = record.iter().any(|f| f.contains(['\n', '\r']));
        if !odd && !spans_lines {
            return None;
        }
        let line = record.position().map_or(end.line(), |p| p.line());
        // The reader's line is the next record's (1 past a final newline).
        let last = end.line().saturating_sub(1).max(line);
        Some(if last > line {
            format!("an unclosed quote: the record runs on to line {last}")
        } else {
            "an unclosed or stray quote".to_string()
        })
    }
}

fn header_error(e: csv::Error) -> ImportError {
    match e.into_kind() {
        csv::ErrorKind::Io(io) => ImportError::Io(io),
        other => ImportError::Header(format!("line 1: {other:?}")),
    }
}
