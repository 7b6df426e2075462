//! Row selection by type and by proxy/server name globs.

use crate::stats::{Row, TypeMask};
use wildmatch::WildMatch;

/// Which rows something applies to. Empty lists match everything.
#[derive(Debug, Clone)]
pub struct Scope {
    /// Row types to keep.
    pub types: TypeMask,
    /// `pxname` globs (`*`, `?`); empty = all.
    pub proxies: Vec<WildMatch>,
    /// `pxname` globs to drop.
    pub exclude_proxies: Vec<WildMatch>,
    /// `svname` globs; empty = all.
    pub servers: Vec<WildMatch>,
    /// `svname` globs to drop.
    pub exclude_servers: Vec<WildMatch>,
}

impl Default for Scope {
    /// Every row.
    fn default() -> Self {
        Scope {
            types: TypeMask::ALL,
            proxies: Vec::new(),
            exclude_proxies: Vec::new(),
            servers: Vec::new(),
            exclude_servers: Vec::new(),
        }
    }
}

impl Scope {
    /// Compiles glob patterns.
    pub fn globs<S: AsRef<str>>(patterns: &[S]) -> Vec<WildMatch> {
        patterns
            .iter()
            .map(|p| WildMatch::new(p.as_ref()))
            .collect()
    }

    /// True when `row` is selected. Names are only looked at when a glob needs them: this
    /// runs for every rule and every row.
    pub fn matches(&self, row: &Row<'_>) -> bool {
        fn any(globs: &[WildMatch], text: &str) -> bool {
            globs.iter().any(|g| g.matches(text))
        }
        if !self.types.contains(row.kind()) {
            return false;
        }
        if !self.proxies.is_empty() || !self.exclude_proxies.is_empty() {
            let proxy = row.proxy();
            if (!self.proxies.is_empty() && !any(&self.proxies, proxy))
                || any(&self.exclude_proxies, proxy)
            {
                return false;
            }
        }
        if !self.servers.is_empty() || !self.exclude_servers.is_empty() {
            let name = row.name();
            if (!self.servers.is_empty() && !any(&self.servers, name))
                || any(&self.exclude_servers, name)
            {
                return false;
            }
        }
        true
    }
}
