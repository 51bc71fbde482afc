//! Fault kinds and a seeded scheduler that picks the next fault from what
//! the cluster looks like now (who leads which group).
//!
//! Invariant: no fault takes more than [`MAX_DOWN`] nodes away at once —
//! killed, paused, or cut off from a majority (a node on the minority side
//! of a split, an isolated node, a node whose every outgoing link is cut).
//! Faults are injected one at a time and healed before the next one.

use crate::nft::Topology;
use dike_core::rng::Rng;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;
use std::time::Duration;

/// At most this many nodes of 5 are down, paused or cut off at once.
pub const MAX_DOWN: usize = 2;

/// A kind of fault, as selected on a command line (`kill,pause,…`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// kill -9 of one or two nodes (leaders preferred), restarted from
    /// their data dirs at the heal.
    Kill,
    /// SIGSTOP of a node (leaders preferred) for longer than the election
    /// timeout, then SIGCONT.
    Pause,
    /// A majority/minority split (2 | 3).
    Split,
    /// A leader (of a data group or of the master group) cut off from all.
    IsolateLeader,
    /// Two sides of two nodes that reach each other only through a bridge.
    Bridge,
    /// A leader's outgoing packets dropped (it still hears everyone).
    OneWay,
    /// Random packet loss between every pair of nodes.
    Loss,
    /// Membership churn: a node joins and groups move onto it; later that
    /// node is removed (killed for good) and its replicas are replaced.
    /// Not part of [`FaultKind::ALL`]: it changes the cluster's shape.
    Churn,
    /// Decommission: a node joins and groups move onto it; later the
    /// operator removes that node (`dike node remove`) while it runs: its
    /// replicas move away, it leaves the table, and its process is stopped.
    /// Not part of [`FaultKind::ALL`]: it changes the cluster's shape.
    Decommission,
    /// Drain: the operator drains a node (`dike node drain`): its replicas
    /// hand their leaderships to others; undrained at the heal.
    Drain,
    /// Transfer: the operator hands one data group's leadership to another
    /// voter (`dike leader transfer`).
    Transfer,
    /// Master replacement: a node joins; later the master group's leader
    /// is killed for good and the operator replaces it by that node (`dike
    /// master replace`): it catches up as a learner, then takes the dead
    /// master's place. Not part of [`FaultKind::ALL`]: it changes the
    /// cluster's shape.
    ReplaceMaster,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 9] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Split,
        FaultKind::IsolateLeader,
        FaultKind::Bridge,
        FaultKind::OneWay,
        FaultKind::Loss,
        FaultKind::Drain,
        FaultKind::Transfer,
    ];

    /// Whether injecting it needs nftables.
    pub fn needs_nft(self) -> bool {
        !matches!(
            self,
            FaultKind::Kill
                | FaultKind::Pause
                | FaultKind::Churn
                | FaultKind::Decommission
                | FaultKind::ReplaceMaster
                | FaultKind::Drain
                | FaultKind::Transfer
        )
    }

    /// The name used on command lines and in reports.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Split => "partition",
            FaultKind::IsolateLeader => "isolate-leader",
            FaultKind::Bridge => "bridge",
            FaultKind::OneWay => "one-way",
            FaultKind::Loss => "loss",
            FaultKind::Churn => "churn",
            FaultKind::Decommission => "decommission",
            FaultKind::Drain => "drain",
            FaultKind::Transfer => "transfer",
            FaultKind::ReplaceMaster => "replace-master",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A fault kind name that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown fault {0:?}; known: kill, pause, partition, isolate-leader, bridge, one-way, loss, drain, transfer, churn, decommission, replace-master, all (all but churn, decommission and replace-master)")]
pub struct UnknownFault(pub String);

impl FromStr for FaultKind {
    type Err = UnknownFault;

    fn from_str(s: &str) -> Result<Self, UnknownFault> {
        FaultKind::ALL
            .into_iter()
            .chain([
                FaultKind::Churn,
                FaultKind::Decommission,
                FaultKind::ReplaceMaster,
            ])
            .find(|k| k.name() == s)
            .ok_or_else(|| UnknownFault(s.to_owned()))
    }
}

/// Parses `kill,pause,…` (or `all`).
pub fn parse_kinds(list: &str) -> Result<Vec<FaultKind>, UnknownFault> {
    if list.trim() == "all" {
        return Ok(FaultKind::ALL.to_vec());
    }
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect()
}

/// What the scheduler knows about the cluster when it picks a fault.
#[derive(Clone, Debug, Default)]
pub struct View {
    /// Every node's address, by node index.
    pub addrs: Vec<Ipv4Addr>,
    /// The node index of each data group's leader (as far as known).
    pub data_leaders: Vec<usize>,
    /// The node index of the master group's leader, if known.
    pub master_leader: Option<usize>,
    /// Nodes that joined during the run and may be removed again.
    pub joined: Vec<usize>,
}

/// What a fault does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// kill -9 these nodes; restart them at the heal.
    Kill(Vec<usize>),
    /// SIGSTOP these nodes; SIGCONT at the heal.
    Pause(Vec<usize>),
    /// Apply these cuts; flush them at the heal.
    Partition(Topology),
    /// Start one more node, which joins; groups move onto it.
    Join,
    /// Kill this node for good; the master replaces its replicas.
    Remove(usize),
    /// Kill master `old` for good and replace it by node `new` (`dike
    /// master replace`).
    ReplaceMaster {
        /// The master killed.
        old: usize,
        /// The node that takes its place.
        new: usize,
    },
    /// Remove this running node from the cluster (`dike node remove`).
    Decommission(usize),
    /// Drain this node; undrain it at the heal.
    Drain(usize),
    /// Hand a leadership this node holds to another voter of its group.
    Transfer(usize),
}

/// One planned fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Its kind.
    pub kind: FaultKind,
    /// What to do.
    pub action: Action,
    /// How long it lasts before the heal.
    pub hold: Duration,
    /// Why these targets (e.g. "leader of the master group").
    pub note: String,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match &self.action {
            Action::Kill(n) => format!("kill -9 nodes {n:?}"),
            Action::Pause(n) => format!("SIGSTOP nodes {n:?}"),
            Action::Partition(t) => t.to_string(),
            Action::Join => "a new node joins".to_owned(),
            Action::Remove(i) => format!("node {i} is removed for good"),
            Action::Decommission(i) => format!("node {i} is decommissioned"),
            Action::ReplaceMaster { old, new } => {
                format!("master {old} is killed for good and replaced by node {new}")
            }
            Action::Drain(i) => format!("node {i} is drained"),
            Action::Transfer(i) => format!("node {i} hands a leadership over"),
        };
        write!(
            f,
            "{}: {what} for {:.1}s ({})",
            self.kind,
            self.hold.as_secs_f64(),
            self.note
        )
    }
}

/// The seeded fault scheduler.
#[derive(Clone, Debug)]
pub struct Scheduler {
    rng: Rng,
    kinds: Vec<FaultKind>,
    /// Shortest and longest hold of a fault.
    pub hold: (Duration, Duration),
}

impl Scheduler {
    /// A scheduler choosing among `kinds` (all of them if empty).
    pub fn new(seed: u64, kinds: &[FaultKind]) -> Self {
        let kinds = if kinds.is_empty() {
            FaultKind::ALL.to_vec()
        } else {
            kinds.to_vec()
        };
        Scheduler {
            rng: Rng::new(seed),
            kinds,
            hold: (Duration::from_secs(2), Duration::from_secs(4)),
        }
    }

    fn hold(&mut self) -> Duration {
        let (lo, hi) = (
            self.hold.0.as_millis() as u64,
            self.hold.1.as_millis() as u64,
        );
        Duration::from_millis(self.rng.range(lo, hi.max(lo + 1)))
    }

    fn any(&mut self, n: usize) -> usize {
        self.rng.below(n as u64) as usize
    }

    /// A node to hit, preferring leaders: the master group's leader, a data
    /// group's leader, or any node. Says which.
    fn target(&mut self, view: &View) -> (usize, String) {
        let n = view.addrs.len();
        match self.rng.below(10) {
            0..=2 if view.master_leader.is_some() => (
                view.master_leader.unwrap_or(0),
                "leader of the master group".into(),
            ),
            0..=6 if !view.data_leaders.is_empty() => {
                let i = self.any(view.data_leaders.len());
                (view.data_leaders[i], "leader of a data group".into())
            }
            _ => (self.any(n), "a random node".into()),
        }
    }

    /// Up to `k` distinct nodes other than `first`, at random.
    fn others(&mut self, n: usize, first: usize, k: usize) -> Vec<usize> {
        let mut rest: Vec<usize> = (0..n).filter(|i| *i != first).collect();
        let mut out = Vec::new();
        while out.len() < k && !rest.is_empty() {
            let i = self.any(rest.len());
            out.push(rest.swap_remove(i));
        }
        out
    }

    /// The next fault for a cluster that looks like `view`.
    pub fn next(&mut self, view: &View) -> Fault {
        let i = self.any(self.kinds.len());
        let kind = self.kinds[i];
        self.next_of(kind, view)
    }

    /// A fault of `kind` for a cluster that looks like `view`.
    pub fn next_of(&mut self, kind: FaultKind, view: &View) -> Fault {
        let n = view.addrs.len();
        let addr = |i: usize| view.addrs[i];
        let hold = self.hold();
        let (first, why) = self.target(view);
        let (action, note) = match kind {
            FaultKind::Churn => match view.joined.first() {
                Some(i) => (Action::Remove(*i), "the node that joined".to_owned()),
                None => (Action::Join, "groups move onto it".to_owned()),
            },
            FaultKind::Decommission => match view.joined.first() {
                Some(i) => (Action::Decommission(*i), "the node that joined".to_owned()),
                None => (Action::Join, "groups move onto it".to_owned()),
            },
            FaultKind::ReplaceMaster => match (view.joined.first(), view.master_leader) {
                (Some(&new), Some(old)) => (
                    Action::ReplaceMaster { old, new },
                    "the master group's leader, by the node that joined".to_owned(),
                ),
                // The master leader is not known now: a harmless operator
                // action instead; a later fault replaces it.
                (Some(_), None) => (Action::Transfer(first), why + " (no master leader known)"),
                (None, _) => (Action::Join, "it will replace a master".to_owned()),
            },
            FaultKind::Drain => (Action::Drain(first), why),
            FaultKind::Transfer => (Action::Transfer(first), why),
            FaultKind::Kill | FaultKind::Pause => {
                let mut nodes = vec![first];
                let mut note = why;
                if n >= 5 && self.rng.chance(50) {
                    nodes.extend(self.others(n, first, MAX_DOWN - 1));
                    note += " and one more";
                }
                let action = if kind == FaultKind::Kill {
                    Action::Kill(nodes)
                } else {
                    Action::Pause(nodes)
                };
                (action, note)
            }
            FaultKind::Split => {
                let mut minority = vec![first];
                minority.extend(self.others(n, first, MAX_DOWN.min(n / 2) - 1));
                let majority = (0..n).filter(|i| !minority.contains(i)).map(addr).collect();
                (
                    Action::Partition(Topology::Split {
                        left: minority.into_iter().map(addr).collect(),
                        right: majority,
                    }),
                    format!("{why} in the minority"),
                )
            }
            FaultKind::IsolateLeader => (
                Action::Partition(Topology::isolate(addr(first), &view.addrs)),
                format!("{why} isolated"),
            ),
            FaultKind::Bridge => {
                // The leader is on one side; the bridge is another node.
                let mut rest = self.others(n, first, n - 1);
                let bridge = rest.pop().unwrap_or(first);
                let mut left = vec![first];
                left.extend(&rest[..rest.len() / 2]);
                let right: Vec<usize> = rest[rest.len() / 2..].to_vec();
                (
                    Action::Partition(Topology::Bridge {
                        left: left.into_iter().map(addr).collect(),
                        bridges: vec![addr(bridge)],
                        right: right.into_iter().map(addr).collect(),
                    }),
                    format!("{why} on one side of a bridge"),
                )
            }
            FaultKind::OneWay => {
                let others: Vec<Ipv4Addr> = (0..n).filter(|i| *i != first).map(addr).collect();
                // Either everything it sends is lost, or everything sent to it.
                let outgoing = self.rng.chance(50);
                let cuts = others
                    .iter()
                    .map(|o| {
                        if outgoing {
                            (addr(first), *o)
                        } else {
                            (*o, addr(first))
                        }
                    })
                    .collect::<Vec<_>>();
                (
                    Action::Partition(Topology::Directed(cuts)),
                    format!(
                        "{why}: {} dropped",
                        if outgoing {
                            "its outgoing packets"
                        } else {
                            "packets to it"
                        }
                    ),
                )
            }
            FaultKind::Loss => {
                let percent = self.rng.range(10, 31) as u8;
                (
                    Action::Partition(Topology::Loss {
                        nodes: view.addrs.clone(),
                        percent,
                    }),
                    format!("{percent}% loss between all nodes"),
                )
            }
        };
        Fault {
            kind,
            action,
            hold,
            note,
        }
    }
}

/// The nodes a fault takes away (for the [`MAX_DOWN`] bound).
pub fn nodes_down(fault: &Fault, addrs: &[Ipv4Addr]) -> usize {
    match &fault.action {
        Action::Kill(n) | Action::Pause(n) => n.len(),
        Action::Partition(t) => t.cut_off(addrs).len(),
        // A decommissioned node gives its replicas up only once each has
        // a caught-up replacement: no group has a voter less meanwhile.
        Action::Join | Action::Decommission(_) => 0,
        // Leaderships move; every replica keeps running.
        Action::Drain(_) | Action::Transfer(_) => 0,
        Action::Remove(_) | Action::ReplaceMaster { .. } => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> View {
        View {
            addrs: (1..=5).map(|i| Ipv4Addr::new(127, 0, 3, i)).collect(),
            data_leaders: vec![2, 2, 4],
            master_leader: Some(0),
            joined: Vec::new(),
        }
    }

    #[test]
    fn kinds_parse_from_their_names_and_all() {
        assert_eq!(
            parse_kinds("kill, pause,loss").expect("valid"),
            vec![FaultKind::Kill, FaultKind::Pause, FaultKind::Loss]
        );
        assert_eq!(parse_kinds("all").expect("valid").len(), 9);
        assert!(parse_kinds("kill,flood").is_err());
        assert_eq!(parse_kinds("churn").expect("valid"), vec![FaultKind::Churn]);
        for k in FaultKind::ALL
            .into_iter()
            .chain([FaultKind::Churn, FaultKind::Decommission])
        {
            assert_eq!(k.name().parse::<FaultKind>(), Ok(k));
        }
    }

    #[test]
    fn no_fault_takes_more_than_two_of_five_nodes_away() {
        let v = view();
        let mut s = Scheduler::new(9, &[]);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..2000 {
            let f = s.next(&v);
            seen.insert(f.kind);
            let down = nodes_down(&f, &v.addrs);
            assert!(down <= MAX_DOWN, "{f}: {down} down");
            assert!(f.hold >= s.hold.0 && f.hold < s.hold.1, "{f}");
            if let Action::Kill(n) | Action::Pause(n) = &f.action {
                let distinct: std::collections::BTreeSet<_> = n.iter().collect();
                assert_eq!(distinct.len(), n.len(), "{f}");
            }
        }
        assert_eq!(seen.len(), 9);
    }

    #[test]
    fn leaders_are_hit_more_often_than_chance() {
        let v = view();
        let mut s = Scheduler::new(3, &[FaultKind::Kill]);
        let (mut leaders, total) = (0, 1000);
        for _ in 0..total {
            if let Action::Kill(n) = s.next(&v).action {
                if [0, 2, 4].contains(&n[0]) {
                    leaders += 1;
                }
            }
        }
        // 3 of 5 nodes lead something: chance alone would give 60%.
        assert!(leaders > total * 8 / 10, "{leaders} of {total}");
    }

    #[test]
    fn partitions_have_the_promised_shapes() {
        let v = view();
        let mut s = Scheduler::new(5, &[]);
        let split = s.next_of(FaultKind::Split, &v);
        let Action::Partition(Topology::Split { left, right }) = &split.action else {
            panic!("{split}")
        };
        assert!(left.len() <= 2 && left.len() + right.len() == 5, "{split}");
        let bridge = s.next_of(FaultKind::Bridge, &v);
        let Action::Partition(Topology::Bridge {
            left,
            bridges,
            right,
        }) = &bridge.action
        else {
            panic!("{bridge}")
        };
        assert_eq!(
            (left.len(), bridges.len(), right.len()),
            (2, 1, 2),
            "{bridge}"
        );
        let one_way = s.next_of(FaultKind::OneWay, &v);
        let Action::Partition(t) = &one_way.action else {
            panic!("{one_way}")
        };
        assert_eq!(t.cuts().len(), 4, "{one_way}");
        let iso = s.next_of(FaultKind::IsolateLeader, &v);
        let Action::Partition(t) = &iso.action else {
            panic!("{iso}")
        };
        assert_eq!(t.cut_off(&v.addrs).len(), 1, "{iso}");
    }

    #[test]
    fn decommission_joins_a_node_then_decommissions_the_node_that_joined() {
        let mut v = view();
        let mut s = Scheduler::new(1, &[FaultKind::Decommission]);
        assert_eq!(s.next(&v).action, Action::Join);
        v.joined = vec![5];
        assert_eq!(s.next(&v).action, Action::Decommission(5));
    }

    #[test]
    fn replace_master_joins_a_node_then_replaces_the_master_leader_by_it() {
        let mut v = view();
        let mut s = Scheduler::new(1, &[FaultKind::ReplaceMaster]);
        assert_eq!(s.next(&v).action, Action::Join);
        v.joined = vec![5];
        v.master_leader = Some(2);
        let replace = s.next(&v).action;
        assert_eq!(replace, Action::ReplaceMaster { old: 2, new: 5 });
    }

    #[test]
    fn churn_joins_a_node_then_removes_the_node_that_joined() {
        let mut v = view();
        let mut s = Scheduler::new(1, &[FaultKind::Churn]);
        assert_eq!(s.next(&v).action, Action::Join);
        v.joined = vec![5];
        assert_eq!(s.next(&v).action, Action::Remove(5));
    }

    #[test]
    fn the_same_seed_plans_the_same_faults() {
        let v = view();
        let plan = |seed| {
            let mut s = Scheduler::new(seed, &[]);
            (0..20).map(|_| s.next(&v)).collect::<Vec<_>>()
        };
        assert_eq!(plan(4), plan(4));
        assert_ne!(plan(4), plan(5));
    }
}
