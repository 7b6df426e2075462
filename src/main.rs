fn main() -> std::process::ExitCode {
    match hapwatch::parse_args(std::env::args_os()) {
        Ok(cli) => hapwatch::run(cli).into(),
        Err(exit) => exit.into(),
    }
}
