//! The `shadowdiff` binary: parse the command line, run the library, map errors to exit
//! codes (0 pass, 1 fail, 2 bad usage or input, 3 target unusable, 4 internal failure).

use std::process::ExitCode;

// Replay and the tap allocate small, short-lived buffers per request on several threads at
// once; mimalloc's per-thread free lists serve them faster than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = shadowdiff::cli::Cli::parse_worded();
    match shadowdiff::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("shadowdiff: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
