//! The routing tree (`[[route]]`): which notifiers get an alert, grouped how, repeated
//! how often, with Alertmanager's semantics where they fit. The implicit root is the
//! behaviour without routes: a rule's `notify`, else the `[routes]` severity table, with
//! `[alerting]`'s `group_by`, `repeat_interval` and `send_resolved`.

use crate::alert::Labels;
use crate::silence::Matcher;
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
    /// Child routes, tried in order.
    pub routes: Vec<Route>,
    /// Line of the `[[route]]` entry, for messages.
    pub line: usize,
}

impl Route {
    fn matches(&self, labels: &Labels) -> bool {
        self.matchers.iter().all(|m| m.matches(labels))
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
        };
        assert_eq!(ids(&tree, &labels(&[])), ["1"]);
        assert!(ids(&tree, &labels(&[("env", "prod")])).is_empty());
    }
}
