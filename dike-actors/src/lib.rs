//! The dike-rs runtime.

pub mod storage;
