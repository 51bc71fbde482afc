//! The status page (`GET /` on a node's HTTP address): one self-contained
//! HTML page, rendered on the node from a [`ClusterStatus`], that reloads
//! itself every few seconds.
//!
//! It shows the nodes (up or down, master or not, address, version,
//! uptime), a placement picture (a grid of nodes × groups, one small cell
//! per replica, coloured by role, wrapped in blocks of [`GRID_COLUMNS`]
//! groups so a thousand groups fit on a screen) and a table of groups
//! (kind, epoch, leader, every replica's applied slot, lag and state, and
//! what needs a look), with a filter box.
//!
//! Invariants: the page loads nothing from elsewhere (no external scripts,
//! styles or fonts: the machines it runs on may have no internet); every
//! name that comes from users or the cluster (groups, kinds, nodes,
//! addresses, errors) is HTML-escaped; the page reads the same without
//! JavaScript (the script only adds the filter). Rows and cells carry
//! `data-` attributes naming their group, node and role, so tests (and
//! scripts) read the page without parsing its text.

use crate::node::status::{node_state, ClusterStatus, GroupSummary, ReplicaSummary};
use std::fmt::Write;

/// Groups per block of the placement grid.
pub const GRID_COLUMNS: usize = 100;

/// The default seconds between reloads (`?refresh=0` turns them off).
pub const DEFAULT_REFRESH: u32 = 5;

/// `text` with the characters HTML gives a meaning escaped, for element
/// content and quoted attribute values alike.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The role of one replica as the page colours it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// It leads its group.
    Leader,
    /// A voter that answered and does not lead.
    Follower,
    /// A learner (catching up, not yet voting) that answered.
    Learner,
    /// It did not answer.
    Unreachable,
}

impl Role {
    /// The role of replica `r` of group `g`.
    pub fn of(g: &GroupSummary, r: &ReplicaSummary) -> Role {
        if !r.reachable {
            Role::Unreachable
        } else if g.leader.as_deref() == Some(r.node.as_str()) && !r.learner {
            Role::Leader
        } else if r.learner {
            Role::Learner
        } else {
            Role::Follower
        }
    }

    /// Its name: the CSS class and the `data-role` value.
    pub fn name(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Learner => "learner",
            Role::Unreachable => "unreachable",
        }
    }
}

/// `seconds` as an operator reads an uptime: `42s`, `5m 3s`, `2h 5m`,
/// `3d 4h`.
pub fn uptime(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds / 3_600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

const STYLE: &str = "\
body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 1.5em 2em;color:#1d2430;background:#fafbfc}
h1{font-size:1.4em;margin:.8em 0 .2em}h2{font-size:1.1em;margin:1.4em 0 .4em}
.summary{color:#4a5568;margin:0}.summary b{color:#1d2430}
table{border-collapse:collapse;background:#fff}
th,td{border:1px solid #dde2ea;padding:.2em .6em;text-align:left;vertical-align:top}
th{background:#eef1f5;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.up{color:#1c7c3a;font-weight:600}.down{color:#c53030;font-weight:600}
tr.trouble td:first-child{border-left:4px solid #c53030}
.problems{color:#c53030}
.r{display:inline-block;margin:0 .4em .2em 0;padding:0 .35em;border-radius:3px;white-space:nowrap;font-size:.92em}
.r.leader{background:#2b6cb0;color:#fff}.r.follower{background:#bee3f8}
.r.learner{background:#fefcbf}.r.unreachable{background:#fed7d7;color:#9b2c2c}
.legend i{display:inline-block;width:12px;height:12px;margin:0 .3em 0 1em;vertical-align:-2px;border-radius:2px}
.grid{display:grid;gap:1px;margin:0 0 .8em;align-items:center}
.grid i{display:block;width:9px;height:12px;border-radius:1px;background:#edf0f4}
.grid .n{font-size:.8em;color:#4a5568;padding-right:.6em;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.grid .g{font-size:.75em;color:#718096}
i.leader{background:#2b6cb0!important}i.follower{background:#90cdf4!important}
i.learner{background:#ecc94b!important}i.unreachable{background:#e53e3e!important}
#filter{margin:0 0 .5em;padding:.25em .5em;width:18em}
footer{margin-top:2em;color:#718096;font-size:.85em}
";

const SCRIPT: &str = "\
var f=document.getElementById('filter');var rows=document.querySelectorAll('#groups tr[data-group]');
var k='dike-filter';try{f.value=sessionStorage.getItem(k)||'';}catch(e){}
function apply(){var q=f.value.trim().toLowerCase();var shown=0;
rows.forEach(function(r){var hit=!q||r.textContent.toLowerCase().indexOf(q)>=0;r.style.display=hit?'':'none';if(hit)shown++;});
document.getElementById('shown').textContent=q?(shown+' shown'):'';try{sessionStorage.setItem(k,f.value);}catch(e){}}
f.addEventListener('input',apply);apply();
document.body.setAttribute('data-script','ran');
";

/// The status page of `status`, as seen from node `from`, reloading every
/// `refresh` seconds (0: never).
pub fn render(status: &ClusterStatus, from: &str, refresh: u32) -> String {
    let mut out = String::with_capacity(4096 + status.groups.len() * 600);
    let up = status.nodes.iter().filter(|n| n.up).count();
    let troubled = status.troubled_groups().count();
    out.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">");
    if refresh > 0 {
        let _ = write!(out, "<meta http-equiv=\"refresh\" content=\"{refresh}\">");
    }
    let _ = write!(
        out,
        "<title>dike-rs · {}</title><style>{STYLE}</style></head><body>",
        escape(from)
    );
    let _ = write!(
        out,
        "<h1>dike-rs cluster</h1><p class=\"summary\" id=\"summary\">seen from node <b>{}</b> · \
         routing table version <b>{}</b> · <b>{up}</b> of <b>{}</b> nodes up · <b>{}</b> groups \
         (the master group included) · <b data-troubled=\"{troubled}\">{troubled}</b> {} a look",
        escape(from),
        status.table_version,
        status.nodes.len(),
        status.groups.len(),
        if troubled == 1 { "needs" } else { "need" },
    );
    if refresh > 0 {
        let _ = write!(out, " · reloads every {refresh} s");
    }
    out.push_str("</p>");
    nodes(&mut out, status);
    placement(&mut out, status);
    groups(&mut out, status);
    let _ = write!(
        out,
        "<footer>dike-rs {} · the same data as JSON: <a href=\"/status.json\">/status.json</a> · \
         <a href=\"/metrics\">/metrics</a> · <a href=\"/ready\">/ready</a></footer>",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(out, "<script>{SCRIPT}</script></body></html>");
    out
}

fn nodes(out: &mut String, status: &ClusterStatus) {
    out.push_str(
        "<h2>Nodes</h2><table id=\"nodes\"><tr><th>node</th><th>address</th><th>status</th>\
         <th>master</th><th>version</th><th>uptime</th></tr>",
    );
    for n in &status.nodes {
        let class = if n.up { "up" } else { "down" };
        let word = node_state(n.up, n.draining, n.removing);
        let _ = write!(
            out,
            "<tr data-node=\"{name}\" data-up=\"{up}\" data-draining=\"{draining}\"><td>{name}</td><td>{addr}</td>\
             <td class=\"{class}\">{word}</td><td>{master}</td><td>{version}</td>\
             <td class=\"num\">{uptime}</td></tr>",
            name = escape(&n.name),
            up = n.up,
            draining = n.draining,
            addr = escape(&n.address),
            master = if n.master { "master" } else { "" },
            version = n.version.as_deref().map_or_else(|| "–".into(), escape),
            uptime = n.uptime_seconds.map_or_else(|| "–".into(), uptime),
        );
    }
    out.push_str("</table>");
}

fn placement(out: &mut String, status: &ClusterStatus) {
    out.push_str(
        "<h2>Placement</h2><p class=\"legend\">one column per group, one row per node:\
         <i class=\"leader\"></i>leader<i class=\"follower\"></i>follower\
         <i class=\"learner\"></i>learner<i class=\"unreachable\"></i>not answering\
         <i></i>no replica</p><div id=\"placement\">",
    );
    for (block, groups) in status.groups.chunks(GRID_COLUMNS).enumerate() {
        let first = block * GRID_COLUMNS + 1;
        let _ = write!(
            out,
            "<div class=\"grid\" style=\"grid-template-columns:9em repeat({},9px)\">\
             <span class=\"g\">groups {first}–{}</span>",
            groups.len(),
            first + groups.len() - 1
        );
        for _ in groups {
            out.push_str("<span></span>");
        }
        for n in &status.nodes {
            let _ = write!(out, "<span class=\"n\">{}</span>", escape(&n.name));
            for g in groups {
                match g.replicas.iter().find(|r| r.node == n.name) {
                    Some(r) => {
                        let role = Role::of(g, r).name();
                        let _ = write!(
                            out,
                            "<i class=\"{role}\" data-group=\"{gname}\" data-node=\"{node}\" \
                             title=\"{gname}: {role} on {node}\"></i>",
                            gname = escape(&g.name),
                            node = escape(&n.name),
                        );
                    }
                    None => out.push_str("<i></i>"),
                }
            }
        }
        out.push_str("</div>");
    }
    out.push_str("</div>");
}

fn groups(out: &mut String, status: &ClusterStatus) {
    out.push_str(
        "<h2>Groups</h2><input id=\"filter\" type=\"search\" \
         placeholder=\"filter: group, kind, node or problem\"> <span id=\"shown\"></span>\
         <table id=\"groups\"><tr><th>group</th><th>kind</th><th>epoch</th><th>leader</th>\
         <th>replicas (applied slot, lag)</th><th>needs a look</th></tr>",
    );
    for g in &status.groups {
        let trouble = if g.has_problems() {
            " class=\"trouble\""
        } else {
            ""
        };
        let leader = g.leader.as_deref().map(escape);
        let _ = write!(
            out,
            "<tr data-group=\"{name}\" data-leader=\"{leader_attr}\"{trouble}><td>{name}</td>\
             <td>{kind}</td><td class=\"num\">{epoch}</td><td class=\"leader\">{leader}</td><td>",
            name = escape(&g.name),
            leader_attr = leader.as_deref().unwrap_or(""),
            kind = escape(&g.kind),
            epoch = g.epoch,
            leader = leader.as_deref().unwrap_or("none"),
        );
        for r in &g.replicas {
            let role = Role::of(g, r);
            let node = escape(&r.node);
            let what = match (r.applied, r.lag, &r.error) {
                (Some(a), Some(0), _) => format!("{a}"),
                (Some(a), Some(l), _) => format!("{a}, lag {l}"),
                (Some(a), None, _) => format!("{a}"),
                (None, _, Some(e)) => escape(e),
                (None, _, None) => "–".into(),
            };
            let zz = if r.hibernating == Some(true) {
                " · idle"
            } else {
                ""
            };
            let _ = write!(
                out,
                "<span class=\"r {role}\" data-node=\"{node}\" data-role=\"{role}\" \
                 title=\"{role}\">{node} · {what}{zz}</span>",
                role = role.name(),
            );
        }
        out.push_str("</td><td class=\"problems\">");
        let problems: Vec<String> = g.problems.iter().map(|p| escape(p)).collect();
        out.push_str(&problems.join("; "));
        out.push_str("</td></tr>");
    }
    out.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::status::NodeSummary;

    fn replica(node: &str, applied: Option<u64>, learner: bool) -> ReplicaSummary {
        ReplicaSummary {
            node: node.into(),
            member: format!("{node}.1"),
            learner,
            reachable: applied.is_some(),
            applied,
            lag: applied.map(|a| 10 - a),
            hibernating: Some(false),
            error: applied.is_none().then(|| "did not answer".into()),
        }
    }

    fn status() -> ClusterStatus {
        let node = |name: &str, up| NodeSummary {
            name: name.into(),
            address: format!("{name}.example:7000"),
            up,
            draining: name == "b",
            master: name == "a",
            removing: false,
            version: up.then(|| "0.1.0".into()),
            uptime_seconds: up.then_some(3_725),
        };
        ClusterStatus {
            table_version: 9,
            nodes: vec![node("a", true), node("b", true), node("c", false)],
            groups: vec![
                GroupSummary {
                    name: "calc".into(),
                    kind: "arithmetic".into(),
                    epoch: 2,
                    leader: Some("b".into()),
                    replicas: vec![
                        replica("a", Some(10), false),
                        replica("b", Some(10), false),
                        replica("c", None, false),
                    ],
                    problems: vec!["c unreachable".into()],
                },
                GroupSummary {
                    name: "<script>alert(1)</script>".into(),
                    kind: "kv".into(),
                    epoch: 1,
                    leader: None,
                    replicas: vec![replica("a", Some(7), true)],
                    problems: vec!["no leader".into()],
                },
            ],
        }
    }

    #[test]
    fn every_group_row_names_its_leader_and_every_replica_its_role() {
        let page = render(&status(), "a", 5);
        assert!(
            page.contains("<tr data-group=\"calc\" data-leader=\"b\" class=\"trouble\">"),
            "{page}"
        );
        assert!(page.contains("<td class=\"leader\">b</td>"), "{page}");
        assert!(
            page.contains("data-node=\"b\" data-role=\"leader\""),
            "{page}"
        );
        assert!(
            page.contains("data-node=\"c\" data-role=\"unreachable\""),
            "{page}"
        );
        assert!(page.contains("a · 7, lag 3"), "{page}");
        assert!(page.contains("<td class=\"leader\">none</td>"), "{page}");
    }

    #[test]
    fn names_from_users_are_escaped() {
        let page = render(&status(), "a", 5);
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert_eq!(escape(r#"a"b'c&<>"#), "a&quot;b&#39;c&amp;&lt;&gt;");
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        let page = render(&status(), "a", 5);
        for attr in ["src=", "href=\"http", "@import", "url("] {
            assert!(!page.contains(attr), "{attr} in the page");
        }
    }

    #[test]
    fn the_page_reloads_unless_told_not_to() {
        assert!(render(&status(), "a", 5).contains("<meta http-equiv=\"refresh\" content=\"5\">"));
        assert!(!render(&status(), "a", 0).contains("http-equiv=\"refresh\""));
    }

    #[test]
    fn the_placement_grid_has_one_cell_per_node_and_group_in_blocks() {
        let mut s = status();
        let template = s.groups[0].clone();
        s.groups = (0..GRID_COLUMNS + 5)
            .map(|i| GroupSummary {
                name: format!("g{i}"),
                ..template.clone()
            })
            .collect();
        let page = render(&s, "a", 5);
        assert_eq!(page.matches("<div class=\"grid\"").count(), 2);
        let cells = page.matches("<i class=\"").count() - 4; // the legend's
        assert_eq!(cells, (GRID_COLUMNS + 5) * 3);
        assert_eq!(
            page.matches("<i class=\"leader\" data-group").count(),
            GRID_COLUMNS + 5
        );
        assert!(page.contains("groups 101–105"), "{page}");
    }

    #[test]
    fn nodes_show_version_and_uptime_or_a_dash_when_down() {
        let page = render(&status(), "a", 5);
        assert!(page.contains("<td class=\"num\">1h 2m</td>"), "{page}");
        assert!(page.contains("data-node=\"c\" data-up=\"false\""), "{page}");
        assert!(
            page.contains("data-draining=\"true\"><td>b</td>") && page.contains(">up, draining<"),
            "a draining node says so: {page}"
        );
        assert_eq!(uptime(42), "42s");
        assert_eq!(uptime(303), "5m 3s");
        assert_eq!(uptime(3 * 86_400 + 4 * 3_600 + 5), "3d 4h");
    }
}
