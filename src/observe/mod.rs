//! What people and monitoring systems see of a run: the per-window summary, the live page's
//! state and the HTTP server that serves it with the metrics, per-cascade Alertmanager
//! alerts, and the backtest report.

pub mod alertmanager;
pub mod http;
pub mod live;
pub mod report;
pub mod summary;
