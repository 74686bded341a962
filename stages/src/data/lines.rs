//! Line-by-line reading of text files, gzip-compressed or not (told apart by the gzip magic bytes, not
//! the name), with line numbers for error messages and bounded memory whatever the file size.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use crate::data::DataError;

/// Reads one line at a time; a line longer than the limit is an error, never a memory blow-up.
pub struct LineReader {
    path: PathBuf,
    reader: Box<dyn BufRead + Send>,
    line: u64,
    buf: Vec<u8>,
    max_line_bytes: usize,
}

/// One line as read: its number (from 1) and its text, or why it is not text.
#[derive(Debug)]
pub enum Line {
    Text {
        number: u64,
        text: String,
    },
    /// The line is not UTF-8 or too long; the reader has moved past it.
    Bad {
        number: u64,
        reason: String,
    },
}

impl LineReader {
    /// Opens `path`, decompressing gzip transparently.
    pub fn open(path: &Path, max_line_bytes: usize) -> Result<Self, DataError> {
        let mut file = File::open(path).map_err(|e| DataError::read(path, e))?;
        let mut magic = [0u8; 2];
        let n = read_up_to(&mut file, &mut magic).map_err(|e| DataError::read(path, e))?;
        let file = File::open(path).map_err(|e| DataError::read(path, e))?;
        let reader: Box<dyn BufRead + Send> = if n == 2 && magic == [0x1f, 0x8b] {
            Box::new(BufReader::with_capacity(
                1 << 20,
                MultiGzDecoder::new(BufReader::with_capacity(1 << 16, file)),
            ))
        } else {
            Box::new(BufReader::with_capacity(1 << 20, file))
        };
        Ok(Self {
            path: path.to_path_buf(),
            reader,
            line: 0,
            buf: Vec::new(),
            max_line_bytes,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next line without its `\n` (and `\r`), or `None` at the end of the file.
    pub fn next_line(&mut self) -> Result<Option<Line>, DataError> {
        self.buf.clear();
        let limit = self.max_line_bytes as u64 + 2;
        let n = (&mut self.reader)
            .take(limit)
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| DataError::read(&self.path, e))?;
        if n == 0 {
            return Ok(None);
        }
        self.line += 1;
        let number = self.line;
        if !self.buf.ends_with(b"\n") && n as u64 == limit {
            self.skip_rest_of_line()?;
            return Ok(Some(Line::Bad {
                number,
                reason: format!("line is longer than {} bytes", self.max_line_bytes),
            }));
        }
        if self.buf.ends_with(b"\n") {
            self.buf.pop();
            if self.buf.ends_with(b"\r") {
                self.buf.pop();
            }
        }
        match String::from_utf8(std::mem::take(&mut self.buf)) {
            Ok(text) => Ok(Some(Line::Text { number, text })),
            Err(e) => Ok(Some(Line::Bad {
                number,
                reason: format!("not UTF-8 text ({})", e.utf8_error()),
            })),
        }
    }

    fn skip_rest_of_line(&mut self) -> Result<(), DataError> {
        loop {
            let available = self
                .reader
                .fill_buf()
                .map_err(|e| DataError::read(&self.path, e))?;
            if available.is_empty() {
                return Ok(());
            }
            if let Some(i) = available.iter().position(|&b| b == b'\n') {
                self.reader.consume(i + 1);
                return Ok(());
            }
            let len = available.len();
            self.reader.consume(len);
        }
    }
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn read_all(path: &Path, max: usize) -> Vec<Line> {
        let mut reader = LineReader::open(path, max).unwrap();
        let mut lines = Vec::new();
        while let Some(line) = reader.next_line().unwrap() {
            lines.push(line);
        }
        lines
    }

    #[test]
    fn plain_and_gzip_read_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("a.txt");
        std::fs::write(&plain, "one\r\ntwo\n\nthree").unwrap();
        let gz = dir.path().join("b.data");
        let mut enc =
            flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::fast());
        enc.write_all(b"one\r\ntwo\n\nthree").unwrap();
        enc.finish().unwrap();
        for path in [&plain, &gz] {
            let texts: Vec<String> = read_all(path, 100)
                .into_iter()
                .map(|l| match l {
                    Line::Text { text, .. } => text,
                    Line::Bad { reason, .. } => panic!("{reason}"),
                })
                .collect();
            assert_eq!(texts, ["one", "two", "", "three"]);
        }
    }

    #[test]
    fn bad_lines_are_reported_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        std::fs::write(&path, b"ok\n\xff\xfe\nxxxxxxxxxxxxxxxxxxxx\nlast\n").unwrap();
        let lines = read_all(&path, 10);
        assert!(matches!(&lines[0], Line::Text { number: 1, text } if text == "ok"));
        assert!(matches!(&lines[1], Line::Bad { number: 2, reason } if reason.contains("UTF-8")));
        assert!(matches!(&lines[2], Line::Bad { number: 3, reason } if reason.contains("longer")));
        assert!(matches!(&lines[3], Line::Text { number: 4, text } if text == "last"));
        assert_eq!(lines.len(), 4);
    }
}
