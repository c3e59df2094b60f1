use clap::Parser;

fn main() {
    let cli = crew::cli::Cli::parse();
    match crew::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("crew: {e:#}");
            std::process::exit(2);
        }
    }
}
