//! What each command does: load the config, run the stages, render, pick the exit code.

use crate::cli::{CheckArgs, EvalArgs, EvalFormat, ShowArgs, ShowFormat};
use crate::config::{Config, Endpoint, SourceConfig};
use crate::error::{Error, Exit};
use crate::report::{self, Named};
use crate::rules::Input;
use crate::scope::Scope;
use crate::source::{self, Fetched};
use crate::stats::ProxyType;
use std::io::{BufWriter, Write};
use std::path::Path;

/// `hapwatch show`: fetch, filter, render. Exit 1 when any source failed.
pub fn show(config_path: &Path, args: &ShowArgs) -> Result<Exit, Error> {
    let config = Config::load(config_path)?;
    config.require_sources()?;
    let selected = select_sources(&config, args.source.as_deref())?;
    if args.format == ShowFormat::Csv && selected.len() > 1 {
        return Err(Error::Usage(format!(
            "--format csv prints one source's dump; pick one with --source ({})",
            source_names(&config)
        )));
    }
    let scope = Scope {
        types: args.types.iter().map(|&t| ProxyType::from(t)).collect(),
        proxies: Scope::globs(&args.proxy),
        ..Scope::default()
    };
    let fetched = source::fetch_all(selected);
    let failed = report_failures(&fetched);

    let mut out = BufWriter::new(std::io::stdout().lock());
    match args.format {
        ShowFormat::Table => {
            let named: Vec<Named<'_>> = succeeded(&fetched).collect();
            if !named.is_empty() {
                report::table(&mut out, &named, &scope)?;
            }
        }
        ShowFormat::Json => {
            let all: Vec<_> = fetched
                .iter()
                .map(|f| match &f.result {
                    Ok(snapshot) => Ok(Named {
                        name: &f.name,
                        snapshot,
                    }),
                    Err(e) => Err((f.name.as_str(), e.to_string())),
                })
                .collect();
            report::json(&mut out, &all, &scope)?;
        }
        ShowFormat::Csv => {
            if let Some(named) = succeeded(&fetched).next() {
                report::csv(&mut out, named.snapshot, &scope)?;
            }
        }
    }
    out.flush()?;
    Ok(if failed { Exit::Trouble } else { Exit::Success })
}

/// `hapwatch check`: validate the config (rules compile, secrets resolve); with
/// `--connect`, read every source and summarize it. Captured `file` sources are always
/// read, to warn about rules that use columns a source does not report.
pub fn check(config_path: &Path, args: &CheckArgs) -> Result<Exit, Error> {
    let config = Config::load(config_path)?;
    let mut trouble = false;
    for src in &config.sources {
        if let Endpoint::Http(http) = &src.endpoint {
            if let Some(Err(e)) = http.password.as_ref().map(|p| p.resolve()) {
                eprintln!("hapwatch: source {}: {e}", src.name);
                trouble = true;
            }
        }
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{}: OK ({}, {})",
        config.path.display(),
        plural(config.sources.len(), "source"),
        plural(config.rules.rules.len(), "rule"),
    )?;
    let to_read: Vec<&SourceConfig> = config
        .sources
        .iter()
        .filter(|s| args.connect || matches!(s.endpoint, Endpoint::File(_)))
        .collect();
    let fetched = source::fetch_all(to_read);
    if args.connect {
        trouble |= report_failures(&fetched);
    }
    for f in &fetched {
        let Ok(snapshot) = &f.result else { continue };
        for (rule, column) in config.rules.missing_columns(snapshot) {
            eprintln!(
                "hapwatch: warning: rule {rule} reads `{column}`, which source {} does not report; the rule cannot match there",
                f.name
            );
        }
        if !args.connect {
            continue;
        }
        let count = |t: ProxyType| snapshot.stats.rows().filter(|r| r.kind() == t).count();
        let version = snapshot
            .info
            .as_ref()
            .and_then(|i| i.version())
            .map_or("version unknown (no show info)".to_string(), |v| {
                format!("HAProxy {v}")
            });
        writeln!(
            out,
            "source {}: {version}, {} rows ({} frontends, {} backends, {} servers, {} listeners) in {:.1} ms",
            f.name,
            snapshot.stats.len(),
            count(ProxyType::Frontend),
            count(ProxyType::Backend),
            count(ProxyType::Server),
            count(ProxyType::Listener),
            f.elapsed.as_secs_f64() * 1000.0
        )?;
    }
    Ok(if trouble {
        Exit::Trouble
    } else {
        Exit::Success
    })
}

/// `hapwatch eval`: the config's rules over a captured dump (and an earlier one for
/// `delta()` / `rate()`), printed as alerts.
pub fn eval(config_path: &Path, args: &EvalArgs) -> Result<Exit, Error> {
    let config = Config::load(config_path)?;
    if let Some(rule) = &args.rule {
        if !config.rules.rules.iter().any(|r| &r.name == rule) {
            let names: Vec<&str> = config.rules.rules.iter().map(|r| r.name.as_str()).collect();
            return Err(Error::Usage(format!(
                "no rule named {rule:?} in {} (rules: {})",
                config.path.display(),
                names.join(", ")
            )));
        }
    }
    let read = |path: &Path| {
        let endpoint = if path == Path::new("-") {
            Endpoint::Stdin
        } else {
            Endpoint::File(path.to_path_buf())
        };
        source::fetch(&SourceConfig {
            name: args.source.clone(),
            endpoint,
            timeout: crate::config::DEFAULT_TIMEOUT,
            line: 0,
        })
        .map_err(|e| Error::Input(format!("{}: {e}", path.display())))
    };
    let snapshot = read(&args.snapshot)?;
    let now = unix_now();
    let previous = match &args.previous {
        Some(path) => Some(
            config
                .rules
                .sample(&read(path)?, now - args.interval.as_secs_f64()),
        ),
        None => None,
    };
    let alerts = config.rules.evaluate(
        &Input {
            source: &args.source,
            snapshot: &snapshot,
            previous: previous.as_ref(),
            now,
        },
        args.rule.as_deref(),
    );
    let mut out = BufWriter::new(std::io::stdout().lock());
    match args.format {
        EvalFormat::Table => report::alerts_table(&mut out, &alerts)?,
        EvalFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &alerts).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
    }
    out.flush()?;
    Ok(Exit::Success)
}

/// Seconds since the Unix epoch, as a float (the clock rates are computed with).
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

fn select_sources<'c>(
    config: &'c Config,
    name: Option<&str>,
) -> Result<Vec<&'c SourceConfig>, Error> {
    match name {
        None => Ok(config.sources.iter().collect()),
        Some(name) => config.source(name).map(|s| vec![s]).ok_or_else(|| {
            Error::Usage(format!(
                "no source named {name:?} in {} (sources: {})",
                config.path.display(),
                source_names(config)
            ))
        }),
    }
}

fn source_names(config: &Config) -> String {
    config
        .sources
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prints one line per failed source on stderr; true if any failed.
fn report_failures(fetched: &[Fetched]) -> bool {
    let mut failed = false;
    for f in fetched {
        if let Err(e) = &f.result {
            eprintln!("hapwatch: source {}: {e}", f.name);
            failed = true;
        }
    }
    failed
}

fn succeeded(fetched: &[Fetched]) -> impl Iterator<Item = Named<'_>> {
    fetched.iter().filter_map(|f| {
        f.result.as_ref().ok().map(|snapshot| Named {
            name: &f.name,
            snapshot,
        })
    })
}
