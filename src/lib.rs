//! hapwatch: a one-shot HAProxy alerting monitor.
//!
//! One run is a pipeline of plain stages: [`config`] → [`source`] (raw bytes) →
//! [`stats`] (typed snapshot) → [`report`]. Only `source` does I/O on the network.

pub mod alert;
pub mod cli;
pub mod commands;
pub mod config;
pub mod duration;
pub mod engine;
pub mod error;
pub mod ha;
pub mod heartbeat;
pub mod history;
pub mod http;
pub mod inhibit;
pub mod init;
pub mod log;
pub mod message;
pub mod notify;
pub mod recap;
pub mod report;
pub mod route;
pub mod rules;
pub mod ruletest;
pub mod run;
pub mod scope;
pub mod sdnotify;
pub mod secret;
pub mod silence;
pub mod source;
pub mod state;
pub mod stats;
pub mod text;
pub mod timeinterval;
pub mod tls;
pub mod vocab;
pub mod watch;

use cli::{Cli, Command};
use error::{Error, Exit};

/// Parses the command line. `--help` and `--version` print as usual (`Err(Exit::Success)`);
/// a usage error is one stderr line like every other error (cron mails stay short), with
/// the usage of the command it concerns, and exit code 2.
pub fn parse_args<I, T>(args: I) -> Result<Cli, Exit>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::error::ErrorKind;
    use clap::Parser;
    match Cli::try_parse_from(args) {
        Ok(cli) => Ok(cli),
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            let _ = e.print();
            Err(
                if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    Exit::Usage
                } else {
                    Exit::Success
                },
            )
        }
        Err(e) => {
            eprintln!("hapwatch: {}", usage_line(&e.render().to_string()));
            Err(Exit::Usage)
        }
    }
}

/// clap's several-line usage error as one line: `unexpected argument 'x' found (usage:
/// hapwatch silence add [OPTIONS] --match <MATCHER> --for <DURATION>; see --help)`.
fn usage_line(rendered: &str) -> String {
    let mut what = Vec::new();
    let mut usage = None;
    for line in rendered.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(u) = line.strip_prefix("Usage: ") {
            usage = Some(u);
        } else if line.starts_with("For more information") {
            continue;
        } else {
            what.push(line.strip_prefix("error: ").unwrap_or(line));
        }
    }
    let what = what.join("; ");
    match usage {
        Some(usage) => format!("{what} (usage: {usage}; see --help)"),
        None => what,
    }
}

/// Runs one command and reports its failure, if any, as one line on stderr.
pub fn run(cli: Cli) -> Exit {
    log::init(cli.verbose, cli.quiet, cli.log_format);
    let state = cli.state.as_deref();
    let result = match &cli.command {
        Command::Run(args) => commands::run(&cli.config, state, cli.adopt_state, args),
        Command::Watch(args) => commands::watch(&cli.config, state, cli.adopt_state, args),
        Command::Silence(cmd) => commands::silence(&cli.config, state, cli.adopt_state, cmd),
        Command::State(cmd) => commands::state(&cli.config, state, cli.adopt_state, cmd),
        Command::History(args) => commands::history(&cli.config, state, args),
        Command::Report(args) => commands::report(&cli.config, state, args),
        Command::NotifyTest { name } => commands::notify_test(&cli.config, name),
        Command::Test { files } => commands::test(files),
        Command::Route { labels, at } => commands::route(&cli.config, labels, at.as_deref()),
        Command::Init(args) => commands::init(&cli.config, args),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "hapwatch",
                &mut std::io::stdout(),
            );
            Ok(Exit::Success)
        }
        Command::Man => {
            use clap::CommandFactory;
            clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .map(|()| Exit::Success)
                .map_err(Error::Output)
        }
        Command::Show(args) => commands::show(&cli.config, args),
        Command::Check(args) => commands::check(&cli.config, state, args),
        Command::Eval(args) => commands::eval(&cli.config, args),
    };
    let nagios = match &cli.command {
        Command::Run(args) => args.nagios,
        Command::Check(args) => args.nagios,
        _ => false,
    };
    match result {
        Ok(exit) => exit,
        // A plugin reports every failure on its status line, as UNKNOWN.
        Err(e) if nagios => {
            println!(
                "HAPWATCH UNKNOWN - {}",
                text::one_line(&secret::redact(&e.to_string()))
            );
            Exit::Nagios(error::Nagios::Unknown)
        }
        // `hapwatch show | head` closing the pipe early is not an error.
        Err(Error::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Exit::Success,
        Err(e) => {
            log::error(&e);
            e.exit()
        }
    }
}
