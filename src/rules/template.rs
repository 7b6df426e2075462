//! `summary` / `description` templates (minijinja), compiled once per config.
//!
//! The environment has no loader, so a template can read no file and run no command, and
//! each render has a fuel budget so that a runaway loop cannot stall a run.
//!
//! Fuel alone does not bound a render: minijinja repeats a list lazily (`[1] * 100000000`
//! costs nothing until it is used) and charges the text of a printed value only after the
//! whole value was written, so printing such a list took 9 s and 300 MB before the render
//! "ran out of fuel". Every printed value is therefore written through a writer that fails
//! as soon as it passes [`MAX_OUTPUT`] bytes, and so is the whole render.

use minijinja::value::ValueKind;
use minijinja::{Environment, Error, ErrorKind, Output, State, UndefinedBehavior, Value};
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

/// Instructions one render may execute.
const FUEL: u64 = 50_000;

/// Bytes one render may write, and one printed value (`{{ … }}`, also inside `{% set %}`
/// blocks and macros) may take: far more than a summary, a mail body or a webhook payload
/// needs.
pub const MAX_OUTPUT: usize = 1024 * 1024;

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
        env.set_formatter(print_value);
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

    /// The variables template `name` reads, with the attributes read from them
    /// (`backend.status`), as minijinja reports them.
    pub fn nested_variables(&self, name: &str) -> HashSet<String> {
        self.env
            .get_template(name)
            .map(|t| t.undeclared_variables(true))
            .unwrap_or_default()
    }

    /// Renders template `name` with `vars`. A failure renders as a readable note instead of
    /// failing the run: an alert with an odd summary beats no alert.
    pub fn render(&self, name: &str, vars: BTreeMap<String, Value>) -> String {
        let mut out = Capped::default();
        match self
            .env
            .get_template(name)
            .and_then(|t| t.render_captured_to(Value::from(vars), &mut out))
        {
            Ok(_) => String::from_utf8_lossy(&out.bytes).into_owned(),
            Err(e) => format!("(template {name} failed: {})", describe(&e)),
        }
    }
}

/// The render's output, refusing to grow past [`MAX_OUTPUT`] bytes.
#[derive(Default)]
struct Capped {
    bytes: Vec<u8>,
}

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > MAX_OUTPUT {
            return Err(std::io::Error::other(format!(
                "the output is longer than {MAX_OUTPUT} bytes"
            )));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Prints one `{{ … }}` value like minijinja's own formatter (no escaping), but stops
/// after [`MAX_OUTPUT`] bytes instead of writing the whole value first.
fn print_value(out: &mut Output<'_>, _: &mut State<'_, '_>, value: &Value) -> Result<(), Error> {
    // A custom formatter replaces minijinja's strict-undefined check when printing.
    if value.is_undefined() {
        return Err(Error::new(ErrorKind::UndefinedError, "undefined value"));
    }
    // Printing a list walks all of it even after the writer failed: refuse, without
    // printing, a value with more items than could fit.
    let too_long = || {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("a printed value is longer than {MAX_OUTPUT} bytes"),
        )
    };
    if !fits(value, &mut { MAX_OUTPUT }, 0) {
        return Err(too_long());
    }
    let mut limited = Limited {
        out,
        left: MAX_OUTPUT,
    };
    write!(limited, "{value}").map_err(|_| {
        if limited.left == usize::MAX {
            too_long()
        } else {
            Error::new(ErrorKind::WriteFailure, "cannot write the output")
        }
    })
}

/// Whether `value` holds at most `items` list items and map entries, all nested levels
/// together (each prints as at least one byte). Visits at most `items` of them, and never
/// iterates a container whose length says it is too long. Nesting deeper than 64 levels
/// does not fit either (minijinja would print it recursively).
fn fits(value: &Value, items: &mut usize, depth: usize) -> bool {
    if value.as_object().is_none() {
        return true;
    }
    if depth > 64 {
        return false;
    }
    let map = match value.kind() {
        ValueKind::Seq | ValueKind::Iterable => false,
        ValueKind::Map => true,
        _ => return true,
    };
    // Without a length minijinja prints a placeholder instead of iterating.
    let Some(len) = value.len() else {
        return true;
    };
    if len > *items {
        return false;
    }
    let Ok(iter) = value.try_iter() else {
        return true;
    };
    for item in iter {
        if *items == 0 {
            return false;
        }
        *items -= 1;
        let entry = if map {
            value.get_item(&item).unwrap_or_default()
        } else {
            Value::UNDEFINED
        };
        if !fits(&item, items, depth + 1) || !fits(&entry, items, depth + 1) {
            return false;
        }
    }
    true
}

/// A writer into the render's output that fails once more than `left` bytes were written
/// (and then sets `left` to `usize::MAX` to say why it failed).
struct Limited<'a, 'b> {
    out: &'a mut Output<'b>,
    left: usize,
}

impl std::fmt::Write for Limited<'_, '_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if s.len() > self.left {
            self.left = usize::MAX;
            return Err(std::fmt::Error);
        }
        self.left -= s.len();
        self.out.write_str(s)
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
