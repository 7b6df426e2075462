use clap::Parser;

fn main() -> std::process::ExitCode {
    hapwatch::run(hapwatch::cli::Cli::parse()).into()
}
