//! `summary` / `description` templates (minijinja), compiled once per config.
//!
//! The environment has no loader, so a template can read no file and run no command, and
//! each render has a fuel budget so that a runaway loop cannot stall a run.

use minijinja::{Environment, UndefinedBehavior, Value};
use std::collections::{BTreeMap, HashSet};

/// Instructions one render may execute.
const FUEL: u64 = 50_000;

/// The compiled templates of a config.
pub struct Templates {
    env: Environment<'static>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Templates")
    }
}

impl Default for Templates {
    fn default() -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(FUEL));
        // Plain text (mail bodies, chat messages): no HTML escaping.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        Templates { env }
    }
}

impl Templates {
    /// Compiles `source` under `name`; returns the variables it reads.
    pub fn add(&mut self, name: &str, source: &str) -> Result<HashSet<String>, String> {
        self.env
            .add_template_owned(name.to_string(), source.to_string())
            .map_err(|e| describe(&e))?;
        let template = self.env.get_template(name).map_err(|e| describe(&e))?;
        Ok(template.undeclared_variables(false))
    }

    /// Renders template `name` with `vars`. A failure renders as a readable note instead of
    /// failing the run: an alert with an odd summary beats no alert.
    pub fn render(&self, name: &str, vars: BTreeMap<String, Value>) -> String {
        match self
            .env
            .get_template(name)
            .and_then(|t| t.render(Value::from(vars)))
        {
            Ok(text) => text,
            Err(e) => format!("(template {name} failed: {})", describe(&e)),
        }
    }
}

fn describe(err: &minijinja::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        text.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    text
}
