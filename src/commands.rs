//! What each command does: load the config, run the stages, render, pick the exit code.

use crate::cli::{CheckArgs, ShowArgs, ShowFormat};
use crate::config::{Config, Endpoint, SourceConfig};
use crate::error::{Error, Exit};
use crate::report::{self, Named};
use crate::scope::Scope;
use crate::source::{self, Fetched};
use crate::stats::ProxyType;
use std::io::{BufWriter, Write};
use std::path::Path;

/// `hapwatch show`: fetch, filter, render. Exit 1 when any source failed.
pub fn show(config_path: &Path, args: &ShowArgs) -> Result<Exit, Error> {
    let config = Config::load(config_path)?;
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

/// `hapwatch check`: validate the config (and resolve its secrets); with `--connect`,
/// read every source and summarize it.
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
        "{}: OK ({} source{}: {})",
        config.path.display(),
        config.sources.len(),
        if config.sources.len() == 1 { "" } else { "s" },
        source_names(&config)
    )?;
    if args.connect {
        let fetched = source::fetch_all(&config.sources);
        trouble |= report_failures(&fetched);
        for f in &fetched {
            let Ok(snapshot) = &f.result else { continue };
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
    }
    Ok(if trouble {
        Exit::Trouble
    } else {
        Exit::Success
    })
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
