//! Who a node is by name: the node id of a name (`node_id_of`) and a
//! master as configured (`MasterSpec`). Below the configuration, the
//! masters, the data dir and storage, which all name nodes; it imports no
//! other module of the runtime but the errors.

use crate::error::StartError;
use dike_core::{MemberId, NodeId};
use std::fmt;
use std::str::FromStr;

/// The node id of the node named `name`: FNV-1a of the name, never 0
/// (node 0 is the owner of `Ballot::ZERO`).
pub fn node_id_of(name: &str) -> NodeId {
    NodeId(dike_core::hash::fnv1a(name.as_bytes()).max(1))
}

/// A master node as configured: `NAME@HOST:PORT`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MasterSpec {
    /// The node's name.
    pub name: String,
    /// Its cluster listener, `HOST:PORT`.
    pub address: String,
}

impl MasterSpec {
    /// The member of the master group on this node.
    pub fn member(&self) -> MemberId {
        MemberId {
            node: node_id_of(&self.name),
            incarnation: dike_core::Incarnation(0),
        }
    }
}

impl FromStr for MasterSpec {
    type Err = StartError;

    fn from_str(s: &str) -> Result<Self, StartError> {
        let bad = || StartError::Config(format!("master {s:?} is not NAME@HOST:PORT"));
        let (name, address) = s.split_once('@').ok_or_else(bad)?;
        let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
        if name.is_empty() || host.is_empty() || port.parse::<u16>().is_err() {
            return Err(bad());
        }
        Ok(MasterSpec {
            name: name.to_owned(),
            address: address.to_owned(),
        })
    }
}

impl fmt::Display for MasterSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.address)
    }
}
