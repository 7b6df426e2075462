//! The routing tree (`[[route]]`): which notifiers get an alert, grouped how, repeated
//! how often, with Alertmanager's semantics where they fit. The implicit root is the
//! behaviour without routes: a rule's `notify`, else the `[routes]` severity table, with
//! `[alerting]`'s `group_by`, `repeat_interval` and `send_resolved`.

use crate::alert::Labels;
use crate::silence::Matcher;
use crate::timeinterval::TimeInterval;
use std::time::Duration;

/// One `[[route]]`, its unset settings inherited from its parent.
#[derive(Debug, Clone)]
pub struct Route {
    /// Its place in the tree: `1`, `1.2` (the second child of the first route), or its
    /// `name`. The state remembers per route when it last announced an alert.
    pub id: String,
    /// All must match (`=`, `!=`, `=~`, `!~`, as in silences).
    pub matchers: Vec<Matcher>,
    /// Notifier names; empty: the root's (a rule's `notify`, else `[routes]`).
    pub notify: Vec<String>,
    /// After this route matched, its later siblings are tried too.
    pub continue_matching: bool,
    /// Labels that group its alerts into one notification.
    pub group_by: Vec<String>,
    /// How long after its last announcement a firing alert is announced again.
    pub repeat_interval: Duration,
    /// Announce recoveries (a rule's `send_resolved` overrides it); `None`: the
    /// notifiers' own setting.
    pub send_resolved: Option<bool>,
    /// While the time is in one of these, the route sends nothing (not inherited, as
    /// in Alertmanager).
    pub mute_time_intervals: Vec<TimeInterval>,
    /// When set, the route sends only while the time is in one of these (not inherited).
    pub active_time_intervals: Vec<TimeInterval>,
    /// Child routes, tried in order.
    pub routes: Vec<Route>,
    /// Line of the `[[route]]` entry, for messages.
    pub line: usize,
}

impl Route {
    fn matches(&self, labels: &Labels) -> bool {
        self.matchers.iter().all(|m| m.matches(labels))
    }

    /// Why the route sends nothing at Unix time `now`, or `None` when it sends.
    pub fn muted(&self, now: f64) -> Option<String> {
        muted(&self.mute_time_intervals, &self.active_time_intervals, now)
    }

    /// The matchers as written: `team=payments, proxy=~pay-*`.
    pub fn describe_matchers(&self) -> String {
        self.matchers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The routes below the implicit root.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    /// Top-level routes, tried in order.
    pub routes: Vec<Route>,
    /// `[alerting] mute_time_intervals`: the root's (alerts that reach no route).
    pub root_mute_time_intervals: Vec<TimeInterval>,
    /// `[alerting] active_time_intervals`: the root's.
    pub root_active_time_intervals: Vec<TimeInterval>,
}

/// Why a route with these intervals sends nothing at `now`: the first mute interval the
/// time is in, or that it is in none of its active intervals.
fn muted(mute: &[TimeInterval], active: &[TimeInterval], now: f64) -> Option<String> {
    if let Some(t) = mute.iter().find(|t| t.contains(now)) {
        return Some(format!("muted by time interval {}", t.name));
    }
    if !active.is_empty() && !active.iter().any(|t| t.contains(now)) {
        let names: Vec<&str> = active.iter().map(|t| t.name.as_str()).collect();
        return Some(format!(
            "muted: outside its active time intervals ({})",
            names.join(", ")
        ));
    }
    None
}

impl Tree {
    /// The routes an alert with `labels` reaches, as Alertmanager's `Route.Match`: in
    /// each level, the matching routes in order until one without `continue`; a route
    /// none of whose children match is itself reached. Empty: the root.
    pub fn matches(&self, labels: &Labels) -> Vec<&Route> {
        let mut out = Vec::new();
        walk(&self.routes, labels, &mut out);
        out
    }

    /// Why `route` (`None`: the root) sends nothing at Unix time `now`, or `None`.
    pub fn muted(&self, route: Option<&Route>, now: f64) -> Option<String> {
        match route {
            Some(r) => r.muted(now),
            None => muted(
                &self.root_mute_time_intervals,
                &self.root_active_time_intervals,
                now,
            ),
        }
    }

    /// True when there is no `[[route]]`.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

fn walk<'a>(routes: &'a [Route], labels: &Labels, out: &mut Vec<&'a Route>) {
    for route in routes {
        if !route.matches(labels) {
            continue;
        }
        let before = out.len();
        walk(&route.routes, labels, out);
        if out.len() == before {
            out.push(route);
        }
        if !route.continue_matching {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(id: &str, matchers: &[&str], continue_matching: bool, routes: Vec<Route>) -> Route {
        Route {
            id: id.into(),
            matchers: matchers
                .iter()
                .map(|m| Matcher::parse(m).unwrap())
                .collect(),
            notify: Vec::new(),
            continue_matching,
            group_by: Vec::new(),
            repeat_interval: Duration::from_secs(3600),
            send_resolved: None,
            mute_time_intervals: Vec::new(),
            active_time_intervals: Vec::new(),
            routes,
            line: 0,
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn ids(tree: &Tree, l: &Labels) -> Vec<String> {
        tree.matches(l).iter().map(|r| r.id.clone()).collect()
    }

    #[test]
    fn first_match_wins_unless_continue_and_children_refine() {
        let tree = Tree {
            routes: vec![
                route("1", &["team=payments"], true, Vec::new()),
                route(
                    "2",
                    &["proxy=~pay-*"],
                    false,
                    vec![route("2.1", &["severity=critical"], false, Vec::new())],
                ),
                route("3", &["dc=fra1"], false, Vec::new()),
            ],
            ..Tree::default()
        };
        let pay = labels(&[("team", "payments"), ("proxy", "pay-api"), ("dc", "fra1")]);
        assert_eq!(ids(&tree, &pay), ["1", "2"], "continue, then 2 stops");
        let critical = labels(&[("proxy", "pay-api"), ("severity", "critical")]);
        assert_eq!(
            ids(&tree, &critical),
            ["2.1"],
            "a matching child replaces its parent"
        );
        assert_eq!(ids(&tree, &labels(&[("dc", "fra1")])), ["3"]);
        assert!(
            ids(&tree, &labels(&[("dc", "ams1")])).is_empty(),
            "the root"
        );
        // `!=` matches a missing label (as empty), `!~` too.
        let tree = Tree {
            routes: vec![route("1", &["env!=prod", "dc!~fra*"], false, Vec::new())],
            ..Tree::default()
        };
        assert_eq!(ids(&tree, &labels(&[])), ["1"]);
        assert!(ids(&tree, &labels(&[("env", "prod")])).is_empty());
    }
}
