//! The routing table: nodes and groups, as plain data.
