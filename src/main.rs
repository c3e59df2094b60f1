use clap::Parser;

fn main() {
    // The shell asking for completions (`COMPLETE=bash crew -- …`): answer and exit.
    clap_complete::CompleteEnv::with_factory(<crew::cli::Cli as clap::CommandFactory>::command)
        .var(crew::cmd::completion::COMPLETE_VAR)
        .complete();
    let cli = crew::cli::Cli::parse();
    match crew::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("crew: {e:#}");
            std::process::exit(2);
        }
    }
}
