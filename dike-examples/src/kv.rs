//! A key-value store spread over a hash ring of groups, as in the original
//! Dike's hash ring: keys hash onto `N` groups named `vnode-1..N`, each a
//! replicated [`KvServer`].
//!
//! Requests: `Get(key)` → the value or `None`; `Put(key, value)` → the
//! previous value; `Delete(key)` → the removed value; `Cas { key, expect,
//! new }` → `Ok(previous)` when the current value equals `expect` (`None`
//! meaning absent) and `new` was stored (`None` deletes), else
//! `Err(current)`. `Get` is also answered as a read-index query.

use dike_core::{GroupContext, Outcome, PaxosServer};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// A request to one vnode of the ring.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvRequest {
    /// Reads a key.
    Get(String),
    /// Writes a key.
    Put(String, String),
    /// Removes a key.
    Delete(String),
    /// Compare-and-set.
    Cas {
        /// The key.
        key: String,
        /// The value it must hold now (`None`: absent).
        expect: Option<String>,
        /// The value to store (`None`: delete).
        new: Option<String>,
    },
}

impl KvRequest {
    /// The key the request is about (decides its vnode).
    pub fn key(&self) -> &str {
        match self {
            KvRequest::Get(k) | KvRequest::Put(k, _) | KvRequest::Delete(k) => k,
            KvRequest::Cas { key, .. } => key,
        }
    }
}

/// A reply from a vnode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvReply {
    /// The value read, or the previous value of a write or delete.
    Value(Option<String>),
    /// A compare-and-set: `Ok(previous)` if it applied, `Err(current)` if not.
    Cas(Result<Option<String>, Option<String>>),
}

/// One vnode of the ring.
///
/// The keys live in a hash map: a write is one hash and a probe or two,
/// where an ordered map follows a pointer per comparison down the tree.
/// Its state travels sorted ([`PaxosServer::State`] is a `BTreeMap`), so
/// every replica exports the same bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvServer {
    data: HashMap<String, String>,
}

impl KvServer {
    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

impl PaxosServer for KvServer {
    const KIND: &'static str = "kv";
    type Request = KvRequest;
    type Reply = KvReply;
    type State = BTreeMap<String, String>;

    fn init(_ctx: &GroupContext) -> Self {
        KvServer::default()
    }

    fn restore(state: Self::State, _ctx: &GroupContext) -> Self {
        KvServer {
            data: state.into_iter().collect(),
        }
    }

    fn export_state(&self) -> Self::State {
        self.data
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn handle_call(&mut self, req: KvRequest) -> Outcome<KvReply> {
        let reply = match req {
            KvRequest::Get(k) => KvReply::Value(self.data.get(&k).cloned()),
            KvRequest::Put(k, v) => KvReply::Value(self.data.insert(k, v)),
            KvRequest::Delete(k) => KvReply::Value(self.data.remove(&k)),
            KvRequest::Cas { key, expect, new } => {
                let current = self.data.get(&key).cloned();
                if current == expect {
                    match new {
                        Some(v) => self.data.insert(key, v),
                        None => self.data.remove(&key),
                    };
                    KvReply::Cas(Ok(current))
                } else {
                    KvReply::Cas(Err(current))
                }
            }
        };
        Outcome::reply(reply)
    }

    fn handle_query(&self, req: &KvRequest) -> Option<KvReply> {
        match req {
            KvRequest::Get(k) => Some(KvReply::Value(self.data.get(k).cloned())),
            _ => None,
        }
    }
}

/// The name of the vnode (group) that owns `key` on a ring of `vnodes`
/// groups: `vnode-1` … `vnode-N`, by a stable hash (FNV-1a, so every node
/// and every version agrees).
pub fn vnode_for(key: &str, vnodes: u32) -> String {
    let h = dike_core::hash::fnv1a(key.as_bytes());
    format!("vnode-{}", h % u64::from(vnodes.max(1)) + 1)
}

/// The size of the key-value ring the routing table holds: its groups
/// `vnode-1` … `vnode-N` of kind kv. A ring with a gap, or a `vnode-*`
/// group of another kind, is refused: a key would go to the wrong group.
pub fn ring_size(table: &dike_core::routing::RoutingTable) -> Result<u32, String> {
    let mut found = std::collections::BTreeSet::new();
    for g in table.groups.values() {
        let Some(n) = g
            .name
            .strip_prefix("vnode-")
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if g.kind != KvServer::KIND {
            return Err(format!(
                "group {:?} is of kind {}, not kv: it cannot be part of the key-value ring",
                g.name, g.kind
            ));
        }
        found.insert(n);
    }
    let Some(&max) = found.last() else {
        return Err(
            "there is no key-value ring: no groups vnode-1 … vnode-N of kind kv; create them with \
             `dike add-group vnode-1 kv` …"
                .to_owned(),
        );
    };
    if let Some(missing) = (1..=max).find(|n| !found.contains(n)) {
        return Err(format!(
            "the key-value ring is incomplete: vnode-{max} exists but vnode-{missing} does not; \
             add it with `dike add-group vnode-{missing} kv`"
        ));
    }
    Ok(max)
}

/// The names of all vnodes of a ring.
pub fn vnodes(n: u32) -> impl Iterator<Item = String> {
    (1..=n.max(1)).map(|i| format!("vnode-{i}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(groups: &[(&str, &str)]) -> dike_core::routing::RoutingTable {
        use dike_core::{Incarnation, NodeId};
        let mut t = dike_core::routing::RoutingTable::new();
        t.add_node(NodeId(1), "n1", "h:1", Incarnation(1))
            .expect("fresh");
        for (name, kind) in groups {
            t.add_group(*name, *kind, 1).expect("placed");
        }
        t
    }

    #[test]
    fn the_ring_size_comes_from_the_tables_kv_vnodes() {
        let two = ring(&[("vnode-1", "kv"), ("vnode-2", "kv"), ("calc", "arithmetic")]);
        assert_eq!(ring_size(&two), Ok(2));
        let gap = ring(&[("vnode-1", "kv"), ("vnode-3", "kv")]);
        assert!(ring_size(&gap).is_err_and(|e| e.contains("vnode-2 does not")));
        let none = ring(&[("calc", "arithmetic")]);
        assert!(ring_size(&none).is_err_and(|e| e.contains("no key-value ring")));
        let odd = ring(&[("vnode-1", "kv"), ("vnode-2", "set")]);
        assert!(ring_size(&odd).is_err_and(|e| e.contains("not kv")));
    }

    fn server() -> KvServer {
        KvServer::init(&GroupContext {
            group: "vnode-1".into(),
            kind: "kv".into(),
            member: dike_core::MemberId::new(1, 1),
        })
    }

    #[test]
    fn put_get_delete_round_trip() {
        let mut s = server();
        assert_eq!(
            s.handle_call(KvRequest::Put("a".into(), "1".into())).reply,
            KvReply::Value(None)
        );
        assert_eq!(
            s.handle_call(KvRequest::Put("a".into(), "2".into())).reply,
            KvReply::Value(Some("1".into()))
        );
        assert_eq!(
            s.handle_query(&KvRequest::Get("a".into())),
            Some(KvReply::Value(Some("2".into())))
        );
        assert_eq!(
            s.handle_call(KvRequest::Delete("a".into())).reply,
            KvReply::Value(Some("2".into()))
        );
        assert!(s.is_empty());
    }

    #[test]
    fn compare_and_set_applies_only_on_the_expected_value() {
        let mut s = server();
        let cas = |expect: Option<&str>, new: Option<&str>| KvRequest::Cas {
            key: "k".into(),
            expect: expect.map(Into::into),
            new: new.map(Into::into),
        };
        assert_eq!(
            s.handle_call(cas(None, Some("x"))).reply,
            KvReply::Cas(Ok(None))
        );
        assert_eq!(
            s.handle_call(cas(None, Some("y"))).reply,
            KvReply::Cas(Err(Some("x".into())))
        );
        assert_eq!(
            s.handle_call(cas(Some("x"), None)).reply,
            KvReply::Cas(Ok(Some("x".into())))
        );
        assert!(s.is_empty());
    }

    #[test]
    fn keys_spread_over_every_vnode_and_always_land_on_the_same_one() {
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..1000 {
            let key = format!("key-{i}");
            assert_eq!(vnode_for(&key, 16), vnode_for(&key, 16));
            seen.insert(vnode_for(&key, 16));
        }
        assert_eq!(seen.len(), 16);
        assert_eq!(
            vnodes(3).collect::<Vec<_>>(),
            vec!["vnode-1", "vnode-2", "vnode-3"]
        );
    }
}
