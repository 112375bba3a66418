//! Shared by the model crate's tests and benches (the bench includes it with `#[path]`):
//! reading real cascades in the course layout. The crate itself has no reader by design
//! (it does no I/O); the engine's reader is `tweetoscope::io::files`.

use tweetoscope_model::hawkes::Event;

/// Every cascade of a course-layout dataset (`cascades-data.csv` + `cascades-index.csv` in
/// `dir`), events in file order.
pub fn read_course_dataset(dir: &str) -> Vec<Vec<Event>> {
    let data = std::fs::read_to_string(format!("{dir}/cascades-data.csv")).expect("cascades-data.csv");
    let rows: Vec<Event> = data
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (t, m) = l.split_once(',').expect("time,magnitude");
            Event { t: t.trim().parse().expect("time"), m: m.trim().parse().expect("magnitude") }
        })
        .collect();
    let index = std::fs::read_to_string(format!("{dir}/cascades-index.csv")).expect("cascades-index.csv");
    index
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (a, b) = l.split_once(',').expect("start_ind,end_ind");
            let (a, b): (usize, usize) = (a.trim().parse().expect("start_ind"), b.trim().parse().expect("end_ind"));
            rows[a - 1..b].to_vec()
        })
        .collect()
}
