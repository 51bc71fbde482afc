//! What one group count measured, as one JSON object or as tables that say
//! what each figure is. The targets of issue 20 are printed beside the
//! figures they concern, for the reader: nothing here judges them.

use crate::create::Creation;
use crate::idle::{NodeSample, Quiet};
use crate::load::Load;
use crate::restart::Restart;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The cluster a report is about.
#[derive(Clone, Debug, Serialize)]
pub struct Setup {
    /// Groups asked for.
    pub groups: usize,
    /// `dike node` processes.
    pub nodes: usize,
    /// Replicas per group (and masters).
    pub replicas_per_group: usize,
    /// Seconds of the baseline's idle window.
    pub baseline_window_s: f64,
    /// Seconds of the idle window after creation.
    pub idle_window_s: f64,
}

/// One node's figures: at the baseline (no group) and idle (every group).
#[derive(Clone, Debug, Serialize)]
pub struct NodeFigures {
    /// The node's name.
    pub name: String,
    /// `VmRSS` at the baseline, in bytes.
    pub baseline_rss_bytes: Option<u64>,
    /// CPU over the baseline window, in % of one core.
    pub baseline_cpu_pct: Option<f64>,
    /// `dike_replicas_hosted` at the baseline (the master's replica).
    pub baseline_hosted: Option<u64>,
    /// CPU over the idle window, in % of one core.
    pub idle_cpu_pct: Option<f64>,
    /// `VmRSS` after the idle window, in bytes.
    pub rss_bytes: Option<u64>,
    /// `dike_replicas_hosted` after the idle window.
    pub hosted: Option<u64>,
    /// `dike_replicas_hibernating` after the idle window.
    pub hibernating: Option<u64>,
    /// `dike_replicas_leading` after the idle window.
    pub leading: Option<u64>,
    /// Replicas of the scale groups the routing table places on the node.
    pub placed: Option<u64>,
    /// (RSS − baseline RSS) / (hosted − baseline hosted): the memory each
    /// replica added since the baseline costs, in bytes.
    pub rss_per_replica_bytes: Option<f64>,
}

/// Every node's figures from the baseline and idle samples (in node
/// order) and the replicas the table places on each.
pub fn node_figures(
    baseline: &[NodeSample],
    idle: &[NodeSample],
    placed: &[Option<u64>],
) -> Vec<NodeFigures> {
    idle.iter()
        .enumerate()
        .map(|(i, now)| {
            let base = baseline.get(i);
            let baseline_rss_bytes = base.and_then(|b| b.rss_bytes);
            let baseline_hosted = base.and_then(|b| b.gauges).map(|g| g.hosted);
            let hosted = now.gauges.map(|g| g.hosted);
            let rss_per_replica_bytes = match (now.rss_bytes, baseline_rss_bytes, hosted) {
                (Some(rss), Some(base_rss), Some(h)) => {
                    let added = h.saturating_sub(baseline_hosted.unwrap_or(0));
                    (added > 0).then(|| (rss as f64 - base_rss as f64) / added as f64)
                }
                _ => None,
            };
            NodeFigures {
                name: now.name.clone(),
                baseline_rss_bytes,
                baseline_cpu_pct: base.and_then(|b| b.cpu_pct),
                baseline_hosted,
                idle_cpu_pct: now.cpu_pct,
                rss_bytes: now.rss_bytes,
                hosted,
                hibernating: now.gauges.map(|g| g.hibernating),
                leading: now.gauges.map(|g| g.leading),
                placed: placed.get(i).copied().flatten(),
                rss_per_replica_bytes,
            }
        })
        .collect()
}

/// Everything one group count measured.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The cluster.
    pub setup: Setup,
    /// Creating the groups.
    pub creation: Creation,
    /// The wait for a quiet cluster before the idle window.
    pub quiet: Quiet,
    /// Per node, baseline and idle.
    pub nodes: Vec<NodeFigures>,
    /// The highest idle CPU of a node, in % of one core.
    pub max_idle_cpu_pct: Option<f64>,
    /// The highest RSS per added replica of a node, in bytes.
    pub max_rss_per_replica_bytes: Option<f64>,
    /// The restart of one node.
    pub restart: Restart,
    /// The write loads.
    pub load: Load,
}

impl Report {
    /// The report of these measurements.
    pub fn new(
        setup: Setup,
        creation: Creation,
        quiet: Quiet,
        nodes: Vec<NodeFigures>,
        restart: Restart,
        load: Load,
    ) -> Report {
        let max = |f: fn(&NodeFigures) -> Option<f64>| nodes.iter().filter_map(f).reduce(f64::max);
        Report {
            max_idle_cpu_pct: max(|n| n.idle_cpu_pct),
            max_rss_per_replica_bytes: max(|n| n.rss_per_replica_bytes),
            setup,
            creation,
            quiet,
            nodes,
            restart,
            load,
        }
    }

    /// The report as text: a heading, then one part per phase.
    pub fn text(&self) -> String {
        let s = &self.setup;
        let mut out = format!(
            "## scale: {} groups × {} replicas on {} nodes (data dirs, --http)\n\n",
            s.groups, s.replicas_per_group, s.nodes
        );
        self.creation_text(&mut out);
        self.idle_text(&mut out);
        self.restart_text(&mut out);
        self.load_text(&mut out);
        out
    }

    fn creation_text(&self, out: &mut String) {
        let c = &self.creation;
        let rate = |n: usize, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
        let _ = writeln!(out, "create ({} creations in flight; times from the first creation sent; target: 10,000 in < 60 s)", c.concurrency);
        let _ = writeln!(
            out,
            "  creation acknowledged by the master : {} of {} groups in {:.2} s ({:.1} groups/s)",
            c.created,
            c.asked,
            c.acked_s,
            rate(c.created, c.acked_s)
        );
        let _ = writeln!(
            out,
            "  every group answers a query         : {} of {} groups in {:.2} s ({:.1} groups/s)",
            c.answering,
            c.created,
            c.answering_s,
            rate(c.answering, c.answering_s)
        );
        let _ = writeln!(
            out,
            "  failed: {}; retried creations: {}; retried queries: {}",
            c.failed,
            counts(&c.create_retries),
            counts(&c.query_retries)
        );
        for f in &c.failures {
            let _ = writeln!(out, "    {f}");
        }
        out.push('\n');
    }

    fn idle_text(&self, out: &mut String) {
        let (s, q) = (&self.setup, &self.quiet);
        let quiet = if q.reached {
            format!("quiet after {:.1} s", q.waited_s)
        } else {
            format!(
                "NOT quiet after {:.1} s ({}), measured anyway",
                q.waited_s,
                q.last.as_deref().unwrap_or("")
            )
        };
        let _ = writeln!(
            out,
            "idle ({quiet}: {} of {} group replicas hibernating; then {:.0} s measured with no client connected)",
            q.hibernating, q.group_replicas, s.idle_window_s
        );
        let _ = writeln!(out, "| node | baseline RSS MiB | baseline CPU % of a core ({:.0} s, no group) | idle CPU % of a core | RSS MiB | replicas hosted (metric) | placed (table) | hibernating | leading | RSS per added replica KiB |", s.baseline_window_s);
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
        for n in &self.nodes {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                n.name,
                opt(n.baseline_rss_bytes, |b| format!("{:.1}", mib(b))),
                opt(n.baseline_cpu_pct, |p| format!("{p:.2}")),
                opt(n.idle_cpu_pct, |p| format!("{p:.2}")),
                opt(n.rss_bytes, |b| format!("{:.1}", mib(b))),
                opt(n.hosted, |h| h.to_string()),
                opt(n.placed, |p| p.to_string()),
                opt(n.hibernating, |h| h.to_string()),
                opt(n.leading, |l| l.to_string()),
                opt(n.rss_per_replica_bytes, |b| format!("{:.1}", b / 1024.0)),
            );
        }
        let _ = writeln!(
            out,
            "  max idle CPU of a node: {} % of a core (target < 5 %); max RSS per added replica: {} KiB (target < 20 KiB)",
            opt(self.max_idle_cpu_pct, |p| format!("{p:.2}")),
            opt(self.max_rss_per_replica_bytes, |b| format!("{:.1}", b / 1024.0)),
        );
        let _ = writeln!(out, "  RSS per added replica = (RSS − baseline RSS) / (replicas hosted − replicas hosted at the baseline)\n");
    }

    fn restart_text(&self, out: &mut String) {
        let r = &self.restart;
        let secs = |s: Option<f64>| opt(s, |s| format!("{s:.2} s"));
        let _ = writeln!(
            out,
            "restart (kill -9 of {}, master leader {}; started again on its data dir; times from the spawn; target: ready to serve in < 5 s)",
            r.node,
            r.master_leader.as_deref().unwrap_or("unknown")
        );
        let _ = writeln!(
            out,
            "  /ready answers 200                                  : {}",
            secs(r.ready_s)
        );
        let _ = writeln!(
            out,
            "  replicas hosted back to {:<8}                    : {}",
            opt(r.hosted_before, |h| h.to_string()),
            secs(r.hosted_s)
        );
        let _ = writeln!(
            out,
            "  a write acknowledged on each of {:>4} sampled groups : {}",
            r.sampled,
            secs(r.writes_acked_s)
        );
        let _ = writeln!(
            out,
            "  ... and applied by the restarted node's replica     : {}",
            secs(r.writes_applied_s)
        );
        let _ = writeln!(
            out,
            "  sampled groups that missed a step: {}; retried writes: {}",
            r.failed,
            counts(&r.write_retries)
        );
        for f in &r.failures {
            let _ = writeln!(out, "    {f}");
        }
        out.push('\n');
    }

    fn load_text(&self, out: &mut String) {
        let l = &self.load;
        let Some(first) = l.runs.first() else {
            let _ = writeln!(out, "load: no group to load");
            return;
        };
        let _ = writeln!(
            out,
            "load ({} clients, closed loop, Add(1) to a group of the set picked per write; {:.0} s measured per run after a warm-up)",
            first.load.clients, first.load.seconds
        );
        let _ = writeln!(
            out,
            "| groups | round | writes/s | p50 ms | p99 ms | server CPU µs/write | batches sent/write | bytes sent/write | log fsyncs/write | errors |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
        for r in &l.runs {
            let t = |f: fn(&crate::load::Traffic) -> f64, digits: usize| {
                opt(r.traffic.as_ref().map(f), |v| format!("{v:.digits$}"))
            };
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {:.2} | {:.2} | {:.0} | {} | {} | {} | {} |",
                r.groups,
                r.round,
                r.load.throughput,
                r.load.p50_us as f64 / 1000.0,
                r.load.p99_us as f64 / 1000.0,
                r.server_cpu_us_per_write,
                t(|t| t.batches, 2),
                t(|t| t.bytes, 0),
                t(|t| t.fsyncs, 3),
                counts(&r.load.errors)
            );
        }
        let means: Vec<String> = l
            .mean
            .iter()
            .map(|(k, w)| format!("{k} groups {w:.0}"))
            .collect();
        let _ = writeln!(out, "  mean writes/s: {}", means.join(", "));
        let many = l.mean.last().map_or(0, |(k, _)| *k);
        let _ = writeln!(
            out,
            "  ratio writes/s over {many} groups ÷ over 16 groups: {} (target ≥ 0.7 with 1,000 groups)",
            opt(l.ratio, |r| format!("{r:.2}"))
        );
    }
}

/// `v` formatted by `f`, or `?` if there is none.
fn opt<T>(v: Option<T>, f: impl FnOnce(T) -> String) -> String {
    v.map_or_else(|| "?".to_owned(), f)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// `kind: n, …`, or `none`.
fn counts(by_kind: &BTreeMap<String, u64>) -> String {
    if by_kind.is_empty() {
        return "none".into();
    }
    let parts: Vec<String> = by_kind.iter().map(|(k, n)| format!("{k}: {n}")).collect();
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Gauges;

    fn sample(rss_mib: u64, hosted: u64) -> NodeSample {
        NodeSample {
            name: "n0".into(),
            cpu_pct: Some(1.0),
            rss_bytes: Some(rss_mib << 20),
            gauges: Some(Gauges {
                hosted,
                hibernating: 0,
                leading: 0,
            }),
        }
    }

    #[test]
    fn rss_per_replica_counts_only_the_replicas_added_since_the_baseline() {
        let n = node_figures(&[sample(10, 1)], &[sample(20, 1025)], &[Some(1024)]);
        // 10 MiB more for 1024 more replicas: 10 KiB each.
        assert_eq!(n[0].rss_per_replica_bytes, Some(10.0 * 1024.0));
        assert_eq!(n[0].placed, Some(1024));
    }

    #[test]
    fn no_replica_added_gives_no_rss_per_replica() {
        let n = node_figures(&[sample(10, 1)], &[sample(11, 1)], &[None]);
        assert_eq!(n[0].rss_per_replica_bytes, None);
    }
}
