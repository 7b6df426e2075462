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
pub mod http;
pub mod init;
pub mod log;
pub mod message;
pub mod notify;
pub mod report;
pub mod rules;
pub mod ruletest;
pub mod scope;
pub mod secret;
pub mod silence;
pub mod source;
pub mod state;
pub mod stats;
pub mod tls;

use cli::{Cli, Command};
use error::{Error, Exit};

/// Runs one command and reports its failure, if any, as one line on stderr.
pub fn run(cli: Cli) -> Exit {
    log::init(cli.verbose, cli.quiet, cli.log_format);
    let state = cli.state.as_deref();
    let result = match &cli.command {
        Command::Run(args) => commands::run(&cli.config, state, args),
        Command::Silence(cmd) => commands::silence(&cli.config, state, cmd),
        Command::State(cmd) => commands::state(&cli.config, state, cmd),
        Command::NotifyTest { name } => commands::notify_test(&cli.config, name),
        Command::Test { files } => commands::test(files),
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
        Command::Check(args) => commands::check(&cli.config, args),
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
            println!("HAPWATCH UNKNOWN - {}", message::one_line(&e.to_string()));
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
