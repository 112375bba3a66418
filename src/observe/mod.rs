//! What people and monitoring systems see of a run: the per-window summary, the live page's
//! state and the HTTP server that serves it with the metrics, per-cascade Alertmanager
//! alerts, the backtest report, and the accuracy evaluation against baselines.

pub mod alertmanager;
pub mod eval;
pub mod http;
pub mod live;
pub mod report;
pub mod summary;
