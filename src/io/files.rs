//! Readers for the two recorded-cascade layouts of SPEC §2.1.
//!
//! - Course layout: a data CSV (`time,magnitude[,info]` rows after a header) and an index
//!   CSV (`start_ind,end_ind`, 1-based inclusive ranges over the data rows).
//! - SEISMIC raw layout: one file per cascade, a `<retweets> <post time in days>` header,
//!   then `<seconds> <followers>` lines, the original tweet first at time 0.
//!
//! Every error names the file and the 1-based line, so that a user can fix the input.

use std::path::{Path, PathBuf};

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
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A line is malformed.
    #[error("{path}:{line}: {message}")]
    Malformed { path: PathBuf, line: usize, message: String },
    /// The input as a whole makes no sense (e.g. a data CSV without its index).
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
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
    if x > 1e12 {
        return Err(format!("time {field:?} is out of range"));
    }
    Ok(x.round() as Time)
}

/// Parses a magnitude (follower count): finite and ≥ 0.
fn parse_magnitude(field: &str) -> Result<f64, String> {
    let x: f64 = field.trim().parse().map_err(|_| format!("magnitude {field:?} is not a number"))?;
    if !x.is_finite() || x < 0.0 {
        return Err(format!("magnitude {field:?} must be a finite number ≥ 0"));
    }
    Ok(x)
}

/// Reads either layout: a folder (or a single `.txt` file) is SEISMIC raw; a data CSV needs
/// its index.
pub fn read_dataset(path: &Path, index: Option<&Path>) -> Result<Dataset, InputError> {
    let meta = std::fs::metadata(path).map_err(io_err(path))?;
    match index {
        Some(index) => read_course(path, index),
        None if meta.is_dir() => read_seismic_folder(path),
        None => {
            let text = std::fs::read_to_string(path).map_err(io_err(path))?;
            if text.lines().next().is_some_and(|l| l.contains(',')) {
                return Err(InputError::Invalid {
                    path: path.to_owned(),
                    message: "a course-layout data CSV needs its index file (--index)".into(),
                });
            }
            Ok(Dataset { cascades: vec![parse_seismic(path, &text, 1)?] })
        }
    }
}

/// Reads the course layout (data CSV + index CSV).
pub fn read_course(data: &Path, index: &Path) -> Result<Dataset, InputError> {
    let data_text = std::fs::read_to_string(data).map_err(io_err(data))?;
    let index_text = std::fs::read_to_string(index).map_err(io_err(index))?;
    let mut rows: Vec<(Time, f64)> = Vec::new();
    for (i, line) in data_text.lines().enumerate().skip(1) {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let mut fields = line.split(',');
        let (Some(t), Some(m)) = (fields.next(), fields.next()) else {
            return Err(malformed(data, line_no, "expected `time,magnitude[,info]`"));
        };
        let t = parse_time(t).map_err(|e| malformed(data, line_no, e))?;
        let m = parse_magnitude(m).map_err(|e| malformed(data, line_no, e))?;
        rows.push((t, m));
    }
    let mut cascades = Vec::new();
    for (i, line) in index_text.lines().enumerate().skip(1) {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let parse = |f: Option<&str>| f.and_then(|s| s.trim().parse::<usize>().ok());
        let mut fields = line.split(',');
        let (Some(start), Some(end)) = (parse(fields.next()), parse(fields.next())) else {
            return Err(malformed(index, line_no, "expected `start_ind,end_ind` (1-based row numbers)"));
        };
        if start == 0 || end < start || end > rows.len() {
            return Err(malformed(
                index,
                line_no,
                format!("range {start}..={end} is outside the {} data rows", rows.len()),
            ));
        }
        let events = rows[start - 1..end].to_vec();
        check_cascade(&events).map_err(|e| malformed(index, line_no, e))?;
        cascades.push(RecordedCascade { id: cascades.len() as u64 + 1, post_time: None, events });
    }
    Ok(Dataset { cascades })
}

/// The original tweet comes first at time 0 and times never decrease.
fn check_cascade(events: &[(Time, f64)]) -> Result<(), String> {
    match events.first() {
        Some((0, _)) => {}
        Some((t, _)) => return Err(format!("the original tweet must be at time 0, not {t}")),
        None => return Err("empty cascade".into()),
    }
    if let Some(w) = events.windows(2).position(|w| w[1].0 < w[0].0) {
        return Err(format!("event {} goes back in time", w + 2));
    }
    Ok(())
}

/// Reads a SEISMIC raw folder: every regular file in it, in natural order of names
/// (RT2 before RT10), cascade ids 1, 2, … in that order.
pub fn read_seismic_folder(folder: &Path) -> Result<Dataset, InputError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .map_err(io_err(folder))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    files.sort_by_key(|p| natural_key(p));
    if files.is_empty() {
        return Err(InputError::Invalid { path: folder.to_owned(), message: "no cascade files in this folder".into() });
    }
    let mut cascades = Vec::with_capacity(files.len());
    for (i, file) in files.iter().enumerate() {
        let text = std::fs::read_to_string(file).map_err(io_err(file))?;
        cascades.push(parse_seismic(file, &text, i as u64 + 1)?);
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

/// Parses one SEISMIC raw file.
pub fn parse_seismic(path: &Path, text: &str, id: u64) -> Result<RecordedCascade, InputError> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
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
    let mut events = Vec::with_capacity(retweets + 1);
    for (i, line) in lines {
        let mut fields = line.split_whitespace();
        let (Some(t), Some(m), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(malformed(path, i + 1, "expected `<seconds> <followers>`"));
        };
        let t = parse_time(t).map_err(|e| malformed(path, i + 1, e))?;
        let m = parse_magnitude(m).map_err(|e| malformed(path, i + 1, e))?;
        events.push((t, m));
    }
    if events.len() != retweets + 1 {
        return Err(malformed(
            path,
            h + 1,
            format!("the header announces {retweets} retweets but the file has {} events", events.len()),
        ));
    }
    check_cascade(&events).map_err(|e| malformed(path, h + 1, e))?;
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
        let d = write(dir.path(), "d.csv", "time,magnitude\n0,10\n");
        assert!(read_dataset(&d, None).unwrap_err().to_string().contains("--index"));
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
