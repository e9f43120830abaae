//! `flashgate completion bash|zsh|fish|…`: prints a shell completion script, e.g.
//! `source <(flashgate completion bash)`.

use clap::Args;

#[derive(Args)]
pub struct CompletionArgs {
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

/// Writes the script for `command` (the whole `flashgate` command line) to stdout.
pub fn run(args: CompletionArgs, mut command: clap::Command) {
    clap_complete::generate(
        args.shell,
        &mut command,
        "flashgate",
        &mut std::io::stdout(),
    );
}
