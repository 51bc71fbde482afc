//! Between nodes: the transport that carries groups' messages coalesced per
//! peer node, the wire format of what it carries, and the node-to-node
//! liveness bookkeeping.

pub mod liveness;
pub mod outbox;
pub mod transport;
pub mod undecodable;
pub mod wire;
