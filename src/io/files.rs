//! Readers for the two recorded-cascade layouts of SPEC §2.1.
//!
//! - Course layout: a data CSV (the header `time,magnitude[,info]`, then rows) and an index
//!   CSV (the header `start_ind,end_ind`, then 1-based inclusive ranges over the data rows),
//!   read with the `csv` crate. Both headers are required: a data file without one used to
//!   lose its first row silently, which shifted every range after it.
//! - SEISMIC raw layout: one file per cascade, a `<retweets> <post time in days>` header,
//!   then `<seconds> <followers>` lines, the original tweet first at time 0.
//!
//! Files are curated datasets, so the readers are strict: the first malformed line is an
//! error naming the file and its 1-based line (non-UTF-8 bytes, non-numbers, NaN or infinity,
//! negative or out-of-range times and magnitudes — the bounds are the `tweets` decoder's,
//! [`crate::io::wire::MAX_TIME`] and [`crate::io::wire::MAX_MAGNITUDE`] —, a cascade not starting at
//! time 0 or going back in time), and nothing is skipped: skipping a course-layout data row
//! would shift every index range after it. (The Kafka source, by contrast, counts and
//! dead-letters each bad message and goes on: a stream cannot be fixed and re-run.)
//! [`parse_course`] and [`parse_seismic`] take bytes, for the fuzz targets in `fuzz/`.

use std::path::{Path, PathBuf};

use crate::io::wire::{MAX_MAGNITUDE, MAX_TIME};
use crate::Time;

/// One recorded cascade.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedCascade {
    /// 1-based position in the index or folder order: the cascade id in outputs.
    pub id: u64,
    /// Post time in seconds on the dataset's own clock, when the layout records it
    /// (SEISMIC); the replay then starts the cascade there.
    pub post_time: Option<Time>,
    /// Events as (seconds since the original tweet, magnitude), the original tweet first.
    pub events: Vec<(Time, f64)>,
}

/// A whole dataset, in index or folder order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dataset {
    /// The cascades.
    pub cascades: Vec<RecordedCascade>,
}

impl Dataset {
    /// Total number of events.
    pub fn events(&self) -> usize {
        self.cascades.iter().map(|c| c.events.len()).sum()
    }
}

/// A malformed or unreadable input file.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The file or folder could not be read.
    #[error("{path}")]
    Io {
        /// The file at fault.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A line is malformed.
    #[error("{path}:{line}: {message}")]
    Malformed {
        /// The file at fault.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// What is wrong, for the error line.
        message: String,
    },
    /// The input as a whole makes no sense (e.g. a data CSV without its index).
    #[error("{path}: {message}")]
    Invalid {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong, for the error line.
        message: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> InputError + '_ {
    move |source| InputError::Io { path: path.to_owned(), source }
}

fn malformed(path: &Path, line: usize, message: impl Into<String>) -> InputError {
    InputError::Malformed { path: path.to_owned(), line, message: message.into() }
}

/// Parses a time in seconds: a finite, non-negative number, rounded to the nearest second
/// (event time is kept in whole seconds; all recorded data is in whole seconds already).
fn parse_time(field: &str) -> Result<Time, String> {
    let x: f64 = field.trim().parse().map_err(|_| format!("time {field:?} is not a number"))?;
    if !x.is_finite() || x < 0.0 {
        return Err(format!("time {field:?} must be a finite number ≥ 0"));
    }
    if x > MAX_TIME {
        return Err(format!("time {field:?} is out of range (> {MAX_TIME} s)"));
    }
    Ok(x.round() as Time)
}

/// Parses a magnitude (follower count): finite, ≥ 0 and at most [`MAX_MAGNITUDE`] (the
/// `tweets` decoder's bound: beyond it sums of marks lose all precision).
fn parse_magnitude(field: &str) -> Result<f64, String> {
    let x: f64 = field.trim().parse().map_err(|_| format!("magnitude {field:?} is not a number"))?;
    if !x.is_finite() || x < 0.0 {
        return Err(format!("magnitude {field:?} must be a finite number ≥ 0"));
    }
    if x > MAX_MAGNITUDE {
        return Err(format!("magnitude {field:?} is out of range (> {MAX_MAGNITUDE})"));
    }
    Ok(x)
}

/// Splits bytes into lines (`\n`, an optional `\r` before it dropped, as `str::lines`; a
/// leading byte-order mark dropped), each checked to be UTF-8: the first line that is not is
/// an error naming it.
fn text_lines<'a>(path: &Path, bytes: &'a [u8]) -> Result<Vec<&'a str>, InputError> {
    // A UTF-8 byte-order mark (files saved by some Windows editors) is not content.
    let bytes = bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(bytes);
    let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop(); // the newline ending the last line
    }
    lines
        .into_iter()
        .enumerate()
        .map(|(i, line)| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            std::str::from_utf8(line)
                .map_err(|e| malformed(path, i + 1, format!("not valid UTF-8 (invalid byte at column {})", e.valid_up_to() + 1)))
        })
        .collect()
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, InputError> {
    std::fs::read(path).map_err(io_err(path))
}

/// Reads either layout: a folder (or a single `.txt` file) is SEISMIC raw; a data CSV needs
/// its index.
pub fn read_dataset(path: &Path, index: Option<&Path>) -> Result<Dataset, InputError> {
    let meta = std::fs::metadata(path).map_err(io_err(path))?;
    match index {
        Some(index) => read_course(path, index),
        None if meta.is_dir() => read_seismic_folder(path),
        None => {
            let bytes = read_bytes(path)?;
            if bytes.split(|b| *b == b'\n').next().is_some_and(|l| l.contains(&b',')) {
                return Err(not_a_seismic_file(path, &bytes));
            }
            Ok(Dataset { cascades: vec![parse_seismic(path, &bytes, 1)?] })
        }
    }
}

/// Reads the course layout (data CSV + index CSV).
pub fn read_course(data: &Path, index: &Path) -> Result<Dataset, InputError> {
    parse_course(data, &read_bytes(data)?, index, &read_bytes(index)?)
}

/// The header of a course-layout data CSV.
const DATA_HEADER: [&str; 2] = ["time", "magnitude"];
/// The header of a course-layout index CSV.
const INDEX_HEADER: [&str; 2] = ["start_ind", "end_ind"];

/// Calls `visit` with each record of a CSV file (the `csv` crate: quoting, CRLF, a
/// byte-order mark and blank lines are handled there) as (1-based line, fields), each field
/// checked to be UTF-8 and trimmed; blank lines are skipped; `visit` returns `Ok(false)` to
/// stop. The fields borrow one reused buffer: a NEWS-sized data file has 3.2 M rows, and
/// owning them (a `String` per field) took 500 MB, whose fresh pages the kernel zeroed for
/// over a second before the replay could start.
fn for_each_record(
    path: &Path,
    bytes: &[u8],
    mut visit: impl FnMut(usize, &[&str]) -> Result<bool, InputError>,
) -> Result<(), InputError> {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(bytes);
    let mut record = csv::ByteRecord::new();
    loop {
        let line = reader.position().line() as usize;
        match reader.read_byte_record(&mut record) {
            Ok(false) => return Ok(()),
            Ok(true) => {}
            Err(e) => {
                let at = e.position().map_or(line, |p| p.line() as usize);
                return Err(malformed(path, at, format!("not a CSV record ({e})")));
            }
        }
        let line = record.position().map_or(line, |p| p.line() as usize);
        // A small vector per record (freed at once, so the allocator reuses it).
        let mut fields: Vec<&str> = Vec::with_capacity(record.len());
        for (k, field) in record.iter().enumerate() {
            let text = std::str::from_utf8(field)
                .map_err(|e| malformed(path, line, format!("not valid UTF-8 (field {}, byte {})", k + 1, e.valid_up_to() + 1)))?;
            fields.push(text.trim());
        }
        if !fields.iter().all(|f| f.is_empty()) && !visit(line, &fields)? {
            return Ok(());
        }
    }
}

/// The records of a CSV file as owned fields ([`for_each_record`]): for the small files
/// (index CSVs, a header's first record).
fn csv_records(path: &Path, bytes: &[u8], limit: usize) -> Result<Vec<(usize, Vec<String>)>, InputError> {
    let mut out = Vec::new();
    for_each_record(path, bytes, |line, fields| {
        out.push((line, fields.iter().map(|f| (*f).to_owned()).collect()));
        Ok(out.len() < limit)
    })?;
    Ok(out)
}

/// Whether a record is the header `expected` (case and surrounding spaces ignored; more
/// columns allowed).
fn is_header<S: AsRef<str>>(fields: &[S], expected: [&str; 2]) -> bool {
    fields.len() >= 2 && fields.iter().zip(expected).all(|(f, e)| f.as_ref().eq_ignore_ascii_case(e))
}

/// Checks that a course-layout file starts with its header. A file without one used to lose
/// its first row silently (and every index range after it pointed one row off), so the
/// header is required and a missing one named; a data file given as the index, or the
/// reverse, is named as such.
fn check_header<S: AsRef<str>>(
    path: &Path,
    first: Option<(usize, &[S])>,
    expected: [&str; 2],
    other: [&str; 2],
) -> Result<(), InputError> {
    // `first` is the file's first record (`None`: an empty file); `other` is the header of
    // the other file of the layout (a swapped pair is named).
    let Some((line, first)) = first else {
        return Err(InputError::Invalid {
            path: path.to_owned(),
            message: format!("empty file; expected the header `{}`", expected.join(",")),
        });
    };
    if is_header(first, expected) {
        return Ok(());
    }
    let found = first.iter().map(AsRef::as_ref).collect::<Vec<&str>>().join(",");
    let why = if is_header(first, other) && expected == DATA_HEADER {
        format!(
            "this is an index CSV (header `{found}`): pass it as --index, and the data CSV (header `time,magnitude`) as --input"
        )
    } else if is_header(first, other) {
        format!("this is a data CSV (header `{found}`): pass it as --input, and the index CSV (header `start_ind,end_ind`) as --index")
    } else if first.iter().take(2).all(|f| f.as_ref().parse::<f64>().is_ok()) {
        format!(
            "expected the header `{}`, found the row `{found}` (a file without its header would lose its first row)",
            expected.join(",")
        )
    } else {
        format!("expected the header `{}`, found `{found}`", expected.join(","))
    };
    Err(malformed(path, line, why))
}

/// Parses the course layout from the bytes of its data CSV and index CSV (the paths name
/// them in errors). Both files start with their header; an index without any cascade is an
/// error, as an empty SEISMIC folder is.
pub fn parse_course(data: &Path, data_bytes: &[u8], index: &Path, index_bytes: &[u8]) -> Result<Dataset, InputError> {
    // (time, magnitude, 1-based line in the data file); one row per line at most.
    let mut rows: Vec<(Time, f64, usize)> = Vec::with_capacity(data_bytes.iter().filter(|&&b| b == b'\n').count());
    let mut header_seen = false;
    for_each_record(data, data_bytes, |line, fields| {
        if !header_seen {
            header_seen = true;
            check_header(data, Some((line, fields)), DATA_HEADER, INDEX_HEADER)?;
            return Ok(true);
        }
        let (Some(t), Some(m)) = (fields.first(), fields.get(1)) else {
            return Err(malformed(data, line, "expected `time,magnitude[,info]`"));
        };
        let t = parse_time(t).map_err(|e| malformed(data, line, e))?;
        let m = parse_magnitude(m).map_err(|e| malformed(data, line, e))?;
        rows.push((t, m, line));
        Ok(true)
    })?;
    if !header_seen {
        check_header::<&str>(data, None, DATA_HEADER, INDEX_HEADER)?;
    }
    let index_records = csv_records(index, index_bytes, usize::MAX)?;
    check_header(index, index_records.first().map(|(l, f)| (*l, f.as_slice())), INDEX_HEADER, DATA_HEADER)?;
    let mut cascades = Vec::new();
    for (line, fields) in &index_records[1..] {
        let line = *line;
        let parse = |f: Option<&String>| f.and_then(|s| s.parse::<usize>().ok());
        let (Some(start), Some(end)) = (parse(fields.first()), parse(fields.get(1))) else {
            return Err(malformed(index, line, "expected `start_ind,end_ind` (1-based row numbers)"));
        };
        if start == 0 {
            return Err(malformed(index, line, format!("range {start}..={end}: rows are numbered from 1")));
        }
        if start > end {
            return Err(malformed(index, line, format!("range {start}..={end} is reversed (start_ind > end_ind)")));
        }
        if end > rows.len() {
            return Err(malformed(
                index,
                line,
                format!("range {start}..={end} is outside the {} data rows of {}", rows.len(), data.display()),
            ));
        }
        let range = &rows[start - 1..end];
        let times: Vec<Time> = range.iter().map(|r| r.0).collect();
        check_cascade(&times)
            .map_err(|(k, e)| malformed(index, line, format!("rows {start}..={end}: {e} ({}:{})", data.display(), range[k].2)))?;
        let events = range.iter().map(|&(t, m, _)| (t, m)).collect();
        cascades.push(RecordedCascade { id: cascades.len() as u64 + 1, post_time: None, events });
    }
    if cascades.is_empty() {
        return Err(InputError::Invalid { path: index.to_owned(), message: "the index lists no cascade".into() });
    }
    Ok(Dataset { cascades })
}

/// The original tweet comes first at time 0 and times never decrease; an error gives the
/// offending event's position in `times`.
fn check_cascade(times: &[Time]) -> Result<(), (usize, String)> {
    match times.first() {
        Some(0) => {}
        Some(t) => return Err((0, format!("the original tweet must be at time 0, not {t}"))),
        None => return Err((0, "empty cascade".into())),
    }
    if let Some(w) = times.windows(2).position(|w| w[1] < w[0]) {
        return Err((w + 1, format!("event {} goes back in time ({} after {})", w + 2, times[w + 1], times[w])));
    }
    Ok(())
}

/// A CSV given alone: what it is and what to pass instead (a data CSV without its index, an
/// index given as the data, or a CSV of another kind, e.g. `cascades-meta.csv` or `truth.csv`).
fn not_a_seismic_file(path: &Path, bytes: &[u8]) -> InputError {
    let header: Vec<String> =
        csv_records(path, bytes, 1).ok().and_then(|r| r.into_iter().next()).map(|(_, fields)| fields).unwrap_or_default();
    let sibling = |needle: &str| {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p != path
                    && p.file_name().is_some_and(|n| n.to_string_lossy().contains(needle))
                    && p.extension().is_some_and(|e| e == "csv")
            })
            .collect();
        found.sort();
        found.into_iter().next().map_or(String::new(), |p| format!(" (e.g. {})", p.display()))
    };
    let message = if is_header(&header, DATA_HEADER) {
        format!("a course-layout data CSV needs its index CSV: add --index{}", sibling("index"))
    } else if is_header(&header, INDEX_HEADER) {
        format!("this is a course-layout index CSV: pass it as --index, and its data CSV as --input{}", sibling("data"))
    } else {
        format!(
            "not a dataset (header `{}`): --input takes a SEISMIC raw file or folder (`<retweets> <post time in days>` first), \
             or a course-layout data CSV (`time,magnitude`) with --index",
            header.join(",")
        )
    };
    InputError::Invalid { path: path.to_owned(), message }
}

/// Files that never hold a SEISMIC cascade: a folder holding them is a dataset's folder
/// (documentation, derived CSVs), not a folder of raw cascade files.
const NOT_RAW: [&str; 8] = ["csv", "md", "json", "toml", "yml", "yaml", "html", "pdf"];

/// A folder that is not a SEISMIC raw folder (it has subfolders or documentation and CSV
/// files): the error names the folders and files to pass instead.
fn not_a_raw_folder(folder: &Path, entries: &[PathBuf]) -> Option<InputError> {
    let is_doc = |p: &PathBuf| p.is_file() && p.extension().is_some_and(|e| NOT_RAW.iter().any(|x| e.eq_ignore_ascii_case(x)));
    let subfolders: Vec<&PathBuf> = entries.iter().filter(|p| p.is_dir()).collect();
    if subfolders.is_empty() && !entries.iter().any(is_doc) {
        return None;
    }
    // Raw folders below (one or two levels), and a data/index pair beside.
    let mut raw: Vec<String> = Vec::new();
    for sub in &subfolders {
        let mut level: Vec<PathBuf> = vec![(*sub).clone()];
        level
            .extend(std::fs::read_dir(sub).into_iter().flatten().filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()));
        for dir in level {
            let has_txt = std::fs::read_dir(&dir).into_iter().flatten().filter_map(|e| e.ok()).any(|e| {
                let p = e.path();
                p.is_file() && p.extension().is_some_and(|x| x == "txt")
            });
            if has_txt {
                raw.push(dir.display().to_string());
            }
        }
    }
    raw.sort();
    let named = |needle: &str| {
        entries.iter().find(|p| p.is_file() && p.file_name().is_some_and(|n| n.to_string_lossy().ends_with(needle)))
    };
    let mut hints: Vec<String> = raw.iter().map(|r| format!("--input {r}")).collect();
    if let (Some(data), Some(index)) = (named("-data.csv"), named("-index.csv")) {
        hints.push(format!("--input {} --index {}", data.display(), index.display()));
    }
    let message = if hints.is_empty() {
        "not a folder of SEISMIC raw cascade files (it holds subfolders or documentation): pass the folder of the RT*.txt files"
            .to_owned()
    } else {
        format!("a dataset's folder, not a folder of SEISMIC raw cascade files: pass {}", hints.join(", or "))
    };
    Some(InputError::Invalid { path: folder.to_owned(), message })
}

/// Reads a SEISMIC raw folder: every regular file in it, in natural order of names
/// (RT2 before RT10), cascade ids 1, 2, … in that order. A dataset's folder (subfolders,
/// CSV or Markdown files) is an error naming what to pass instead.
pub fn read_seismic_folder(folder: &Path) -> Result<Dataset, InputError> {
    let entries: Vec<PathBuf> = std::fs::read_dir(folder)
        .map_err(io_err(folder))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    if let Some(e) = not_a_raw_folder(folder, &entries) {
        return Err(e);
    }
    let mut files: Vec<PathBuf> = entries.into_iter().filter(|p| p.is_file()).collect();
    files.sort_by_key(|p| natural_key(p));
    if files.is_empty() {
        return Err(InputError::Invalid { path: folder.to_owned(), message: "no cascade files in this folder".into() });
    }
    let mut cascades = Vec::with_capacity(files.len());
    for (i, file) in files.iter().enumerate() {
        cascades.push(parse_seismic(file, &read_bytes(file)?, i as u64 + 1)?);
    }
    Ok(Dataset { cascades })
}

/// Sort key for natural order: the name with its digits as a number.
fn natural_key(path: &Path) -> (String, u64, String) {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let digits_at = name.find(|c: char| c.is_ascii_digit()).unwrap_or(name.len());
    let digits: String = name[digits_at..].chars().take_while(|c| c.is_ascii_digit()).collect();
    (name[..digits_at].to_owned(), digits.parse().unwrap_or(0), name)
}

/// Parses one SEISMIC raw file from its bytes (`path` names it in errors).
pub fn parse_seismic(path: &Path, bytes: &[u8], id: u64) -> Result<RecordedCascade, InputError> {
    let text = text_lines(path, bytes)?;
    let mut lines = text.iter().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let Some((h, header)) = lines.next() else {
        return Err(malformed(path, 1, "empty file; expected `<retweets> <post time in days>`"));
    };
    let mut head = header.split_whitespace();
    let retweets: usize = head
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| malformed(path, h + 1, "expected `<retweets> <post time in days>`"))?;
    let days: f64 = head
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|d: &f64| d.is_finite() && *d >= 0.0 && *d < 1e6)
        .ok_or_else(|| malformed(path, h + 1, "the post time must be a finite number of days ≥ 0"))?;
    // The header's count is untrusted: it must not size an allocation (a count of 10^15 would
    // abort the process, and usize::MAX + 1 overflows). The lines bound the events.
    let mut events = Vec::with_capacity(retweets.saturating_add(1).min(text.len()));
    let mut event_lines = Vec::with_capacity(events.capacity());
    for (i, line) in lines {
        let mut fields = line.split_whitespace();
        let (Some(t), Some(m), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(malformed(path, i + 1, "expected `<seconds> <followers>`"));
        };
        let t = parse_time(t).map_err(|e| malformed(path, i + 1, e))?;
        let m = parse_magnitude(m).map_err(|e| malformed(path, i + 1, e))?;
        events.push((t, m));
        event_lines.push(i + 1);
    }
    if Some(events.len()) != retweets.checked_add(1) {
        return Err(malformed(
            path,
            h + 1,
            format!("the header announces {retweets} retweets but the file has {} events", events.len()),
        ));
    }
    let times: Vec<Time> = events.iter().map(|e| e.0).collect();
    check_cascade(&times).map_err(|(k, e)| malformed(path, event_lines.get(k).copied().unwrap_or(h + 1), e))?;
    Ok(RecordedCascade { id, post_time: Some((days * 86_400.0).round() as Time), events })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn course_layout_reads_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let d = write(dir.path(), "d.csv", "time,magnitude,info\n0,10,a\n5,3,b\n0,7,c\n2,1,d\n9,4,e\n");
        let i = write(dir.path(), "i.csv", "start_ind,end_ind\n1,2\n3,5\n");
        let ds = read_dataset(&d, Some(&i)).unwrap();
        assert_eq!(ds.cascades.len(), 2);
        assert_eq!(ds.cascades[1].events, vec![(0, 7.0), (2, 1.0), (9, 4.0)]);
        assert_eq!(ds.cascades[1].id, 2);
    }

    #[test]
    fn malformed_course_row_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let d = write(dir.path(), "d.csv", "time,magnitude\n0,10\n5,abc\n");
        let i = write(dir.path(), "i.csv", "start_ind,end_ind\n1,2\n");
        let err = read_dataset(&d, Some(&i)).unwrap_err().to_string();
        assert!(err.contains("d.csv:3"), "{err}");
        assert!(err.contains("magnitude"), "{err}");
    }

    #[test]
    fn index_out_of_range_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let d = write(dir.path(), "d.csv", "time,magnitude\n0,10\n");
        let i = write(dir.path(), "i.csv", "start_ind,end_ind\n1,3\n");
        let err = read_dataset(&d, Some(&i)).unwrap_err().to_string();
        assert!(err.contains("i.csv:2"), "{err}");
    }

    #[test]
    fn seismic_folder_in_natural_order_with_post_times() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "RT10.txt", "1 1.0 \n0 5 \n3 2 \n");
        write(dir.path(), "RT2.txt", "0 0.5 \n0 9 \n");
        let ds = read_dataset(dir.path(), None).unwrap();
        assert_eq!(ds.cascades[0].events, vec![(0, 9.0)]);
        assert_eq!(ds.cascades[0].post_time, Some(43_200));
        assert_eq!(ds.cascades[1].id, 2);
        assert_eq!(ds.cascades[1].events.len(), 2);
    }

    #[test]
    fn seismic_count_mismatch_and_negative_values_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "RT1.txt", "2 0.1\n0 5\n3 2\n");
        assert!(read_dataset(&p, None).unwrap_err().to_string().contains("RT1.txt:1"));
        let p = write(dir.path(), "RT1.txt", "1 0.1\n0 5\n3 -2\n");
        assert!(read_dataset(&p, None).unwrap_err().to_string().contains("RT1.txt:3"));
        let p = write(dir.path(), "RT1.txt", "1 0.1\n0 5\nNaN 2\n");
        assert!(read_dataset(&p, None).unwrap_err().to_string().contains("RT1.txt:3"));
    }

    #[test]
    fn csv_without_index_asks_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let d = write(dir.path(), "d-data.csv", "time,magnitude\n0,10\n");
        let i = write(dir.path(), "d-index.csv", "start_ind,end_ind\n1,1\n");
        let err = read_dataset(&d, None).unwrap_err().to_string();
        assert!(err.contains("needs its index CSV: add --index (e.g.") && err.contains("d-index.csv"), "{err}");
        let err = read_dataset(&i, None).unwrap_err().to_string();
        assert!(err.contains("this is a course-layout index CSV: pass it as --index") && err.contains("d-data.csv"), "{err}");
        // A metadata CSV is not called a data file missing its index.
        let m = write(dir.path(), "meta.csv", "cascade,source_file,post_time_day\n1,RT1.txt,0.5\n");
        let err = read_dataset(&m, None).unwrap_err().to_string();
        assert!(
            err.contains("not a dataset (header `cascade,source_file,post_time_day`)") && !err.contains("needs its index"),
            "{err}"
        );
    }

    /// The headerless file used to lose its first row silently, and the error (if any)
    /// blamed the index; a swapped pair is named; a reversed range says so.
    #[test]
    fn the_course_layout_needs_its_headers_and_names_the_right_file() {
        let err = course_err(b"0,10\n5,3\n", b"start_ind,end_ind\n1,2\n");
        assert!(err.starts_with("d.csv:1: expected the header `time,magnitude`, found the row `0,10`"), "{err}");
        let err = course_err(b"time,magnitude\n0,10\n", b"1,1\n");
        assert!(err.starts_with("i.csv:1: expected the header `start_ind,end_ind`"), "{err}");
        let err = course_err(b"start_ind,end_ind\n1,1\n", b"time,magnitude\n0,10\n");
        assert!(err.starts_with("d.csv:1: this is an index CSV") && err.contains("as --index"), "{err}");
        let err = course_err(b"time,magnitude\n0,1\n0,1\n", b"start_ind,end_ind\n2,1\n");
        assert!(err.starts_with("i.csv:2: range 2..=1 is reversed (start_ind > end_ind)"), "{err}");
        let err = course_err(b"time,magnitude\n0,1\n", b"start_ind,end_ind\n0,1\n");
        assert!(err.starts_with("i.csv:2: range 0..=1: rows are numbered from 1"), "{err}");
        let err = course_err(b"", b"start_ind,end_ind\n1,1\n");
        assert!(err.contains("d.csv") && err.contains("empty file"), "{err}");
        // Quoted fields (an `info` with a comma) are CSV, not a broken row.
        let ds = parse_course(
            Path::new("d"),
            b"time,magnitude,info\n0,1,\"a, b\"\n4,2,c\n",
            Path::new("i"),
            b"start_ind,end_ind\n1,2\n",
        )
        .unwrap();
        assert_eq!(ds.cascades[0].events, vec![(0, 1.0), (4, 2.0)]);
    }

    /// `--input data/seismic-tideh100` (the folder the README names) used to fail on
    /// `SOURCE.md:1`; it now names the raw folder and the CSV pair inside it.
    #[test]
    fn a_dataset_folder_points_to_its_raw_folder_and_csvs() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/seismic-tideh100");
        let err = read_dataset(&root, None).unwrap_err().to_string();
        assert!(err.contains("not a folder of SEISMIC raw cascade files"), "{err}");
        assert!(
            err.contains("raw/training") && err.contains("cascades-data.csv --index") && !err.contains("SOURCE.md:1"),
            "{err}"
        );
    }

    fn seismic_err(text: &[u8]) -> String {
        parse_seismic(Path::new("RT1.txt"), text, 1).unwrap_err().to_string()
    }

    fn course_err(data: &[u8], index: &[u8]) -> String {
        parse_course(Path::new("d.csv"), data, Path::new("i.csv"), index).unwrap_err().to_string()
    }

    /// Found by the hostile corpus: the header's count sized an allocation (10^15 retweets
    /// aborted the process; usize::MAX overflowed `+ 1`, a panic with debug assertions).
    #[test]
    fn seismic_header_with_a_huge_retweet_count_is_an_error_not_an_abort() {
        for header in ["1000000000000000 0.5", "18446744073709551615 0.5"] {
            let err = seismic_err(format!("{header}\n0 5\n").as_bytes());
            assert!(err.starts_with("RT1.txt:1:") && err.contains("announces"), "{err}");
        }
        let err = seismic_err(b"99999999999999999999999 0.5\n0 5\n");
        assert!(err.starts_with("RT1.txt:1:"), "{err}");
    }

    /// Found by the hostile corpus: non-UTF-8 bytes were an I/O error naming no line.
    #[test]
    fn non_utf8_bytes_are_an_error_naming_the_line() {
        let err = seismic_err(b"1 0.1\n0 5\n3 \xff\n");
        assert!(err.starts_with("RT1.txt:3: not valid UTF-8"), "{err}");
        let err = course_err(b"time,magnitude\n0,10\n\xfe\xff,1\n", b"start_ind,end_ind\n1,2\n");
        assert!(err.starts_with("d.csv:3: not valid UTF-8"), "{err}");
        let err = course_err(b"time,magnitude\n0,10\n", b"start_ind,end_ind\n1,\xc3\n");
        assert!(err.starts_with("i.csv:2: not valid UTF-8"), "{err}");
    }

    /// Found by the hostile corpus: files accepted magnitudes (1e300) that the `tweets`
    /// decoder rejects; both now share the decoder's bounds.
    #[test]
    fn a_magnitude_beyond_the_wire_bound_is_an_error_in_files_too() {
        let err = seismic_err(b"1 0.1\n0 5\n3 1e300\n");
        assert!(err.starts_with("RT1.txt:3:") && err.contains("out of range"), "{err}");
        let err = course_err(b"time,magnitude\n0,1e12\n", b"start_ind,end_ind\n1,1\n");
        assert!(err.starts_with("d.csv:2:") && err.contains("magnitude"), "{err}");
        assert!(parse_seismic(Path::new("x"), b"1 0.1\n0 1e11\n1000000000000 0\n", 1).is_ok(), "the bounds themselves are valid");
    }

    /// Found by the hostile corpus: an event going back in time was reported at the header
    /// (SEISMIC) or the index row alone (course), not at the offending line.
    #[test]
    fn going_back_in_time_names_the_offending_line() {
        let err = seismic_err(b"2 0.1\n0 5\n\n10 1\n5 1\n");
        assert!(err.starts_with("RT1.txt:5:") && err.contains("back in time"), "{err}");
        let err = seismic_err(b"1 0.1\n5 5\n6 1\n");
        assert!(err.starts_with("RT1.txt:2:") && err.contains("time 0"), "{err}");
        let err = course_err(b"time,magnitude\n0,1\n0,1\n10,1\n5,1\n", b"start_ind,end_ind\n1,1\n2,4\n");
        assert!(err.starts_with("i.csv:3:") && err.contains("(d.csv:5)"), "{err}");
    }

    #[test]
    fn an_index_without_cascades_is_an_error() {
        let err = course_err(b"time,magnitude\n0,1\n", b"start_ind,end_ind\n");
        assert!(err.contains("i.csv") && err.contains("no cascade"), "{err}");
    }

    #[test]
    fn crlf_line_endings_blank_lines_and_a_byte_order_mark_are_read() {
        let c = parse_seismic(Path::new("x"), b"\xef\xbb\xbf1 0.5\r\n\r\n0 5\r\n3 2\r\n", 1).unwrap();
        assert_eq!(c.events, vec![(0, 5.0), (3, 2.0)]);
        let ds = parse_course(
            Path::new("d"),
            b"\xef\xbb\xbftime,magnitude\r\n0,1\r\n\r\n2,3\r\n",
            Path::new("i"),
            b"start_ind,end_ind\r\n1,2\r\n",
        )
        .unwrap();
        assert_eq!(ds.cascades[0].events, vec![(0, 1.0), (2, 3.0)]);
    }

    #[test]
    fn bundled_sample_reads_in_both_layouts_identically() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/seismic-tideh100");
        let raw = read_dataset(&root.join("raw/training"), None).unwrap();
        let course = read_dataset(&root.join("cascades-data.csv"), Some(&root.join("cascades-index.csv"))).unwrap();
        assert_eq!(raw.cascades.len(), 80);
        assert_eq!(raw.events(), 298_227);
        for (a, b) in raw.cascades.iter().zip(&course.cascades) {
            assert_eq!(a.events, b.events, "cascade {}", a.id);
        }
    }
}

/// Why a models file cannot start a run.
#[derive(Debug, thiserror::Error)]
pub enum ModelsFileError {
    /// The file cannot be read.
    #[error("cannot read the models file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line is not a models record this build reads (another version, another feature set).
    #[error("{path}:{line}")]
    Record {
        /// The file.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// What is wrong with it.
        #[source]
        source: crate::io::schema::ModelRecordError,
    },
    /// Models of a window the run does not have (another window set).
    #[error("{path}: models of windows {found:?} but the run's windows are {expected:?}")]
    Windows {
        /// The file.
        path: PathBuf,
        /// The windows of its records.
        found: Vec<Time>,
        /// `pipeline.windows`.
        expected: Vec<Time>,
    },
    /// No model at all.
    #[error("{path}: no models record")]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// The models a run starts from (`run --models`): a `models.jsonl` written by an earlier run
/// (`--out`), folded to the newest models of each window. Refused, with the line at fault,
/// when a record is of another schema or feature set, and when its windows are not exactly
/// `windows`.
pub fn read_models(path: &Path, windows: &[Time]) -> Result<Vec<crate::records::Model>, ModelsFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ModelsFileError::Read { path: path.to_owned(), source })?;
    let mut updates = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let model = crate::io::schema::ModelRecord::parse(line).map_err(|source| ModelsFileError::Record {
            path: path.to_owned(),
            line: i + 1,
            source,
        })?;
        updates.push(model);
    }
    if updates.is_empty() {
        return Err(ModelsFileError::Empty { path: path.to_owned() });
    }
    let mut found: Vec<Time> = updates.iter().map(|m| m.t_obs).collect();
    found.sort_unstable();
    found.dedup();
    if found.iter().any(|w| !windows.contains(w)) {
        return Err(ModelsFileError::Windows { path: path.to_owned(), found, expected: windows.to_vec() });
    }
    Ok(crate::records::Model::latest_per_window(updates))
}
