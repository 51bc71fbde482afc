//! Placement of group replicas on nodes (pure functions).
