//! Multi-process tests and benchmark harness (grows with the runtime issues).
