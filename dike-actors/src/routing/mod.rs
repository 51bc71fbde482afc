//! Where a request goes: the dispatcher (every node's entry point, keeper of
//! the routing-table cache) and the router (believed leaders, the client
//! session, the retry loop of one request).

pub mod dispatcher;
pub mod request;
pub mod router;
