//! Unit tests of the Hawkes module.
use super::*;

fn cascade(k: usize) -> Vec<Event> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/seismic-tideh100");
    let data = std::fs::read_to_string(format!("{root}/cascades-data.csv")).unwrap();
    let rows: Vec<Event> = data.lines().skip(1).map(|l| { let (t, m) = l.split_once(',').unwrap(); Event { t: t.parse().unwrap(), m: m.parse().unwrap() } }).collect();
    let idx = std::fs::read_to_string(format!("{root}/cascades-index.csv")).unwrap();
    let (a, b) = idx.lines().nth(k).unwrap().split_once(',').unwrap();
    rows[a.parse::<usize>().unwrap() - 1..b.parse().unwrap()].to_vec()
}

#[test]
fn trace51() {
    let ev = cascade(51);
    let model = HawkesModel::new(HawkesSettings { prior: PriorKind::Flat, ..Default::default() }).unwrap();
    let evs = cascade::fittable(&ev, 300.0).unwrap();
    let mut prof = Profile::new(Kernel::new(evs, 300.0), model.terms, model.bounds);
    for k in 0..40 {
        let v = -13.0 + k as f64 * 0.02;
        let pt = prof.at(v.exp(), v, f64::NAN);
        eprintln!("{v:.3} f={:.12} df={:e} d2f={:e} p={:e} {:?}", pt.f, pt.df, pt.d2f, pt.p, pt.p_bound);
    }
    let best = prof.maximise_with(12);
    eprintln!("{best:?}");
}

#[test]
#[ignore]
fn time_prep() {
    let ev = cascade(1);
    let ev = &ev[..1000];
    let t = ev[999].t;
    for _ in 0..3 {
        let start = std::time::Instant::now();
        for _ in 0..10000 { std::hint::black_box(cascade::fittable(std::hint::black_box(ev), t).unwrap()); }
        let a = start.elapsed() / 10000;
        let start = std::time::Instant::now();
        for _ in 0..10000 { std::hint::black_box(Kernel::new(std::hint::black_box(ev), t)); }
        let b = start.elapsed() / 10000;
        let mut k = Kernel::new(ev, t);
        let start = std::time::Instant::now();
        for _ in 0..10000 { std::hint::black_box(k.sums(std::hint::black_box(2e-4))); }
        let c = start.elapsed() / 10000;
        eprintln!("fittable {a:?} new {b:?} sweep {c:?}");
    }
}
