//! The dike-rs runtime.
