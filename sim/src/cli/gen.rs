//! `completions` and `man`: generated from the same clap command as the parser, so they can
//! never describe flags the binary does not have.

use std::io::Write as _;

use clap::CommandFactory;

use super::*;

/// `faultline completions SHELL`: the completion script on stdout.
pub(super) fn completions(shell: clap_complete::Shell) -> Result<i32, UsageError> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "faultline", &mut out);
    std::io::stdout().write_all(&out)?;
    Ok(EXIT_PASS)
}

/// `faultline man`: the man page (roff) on stdout, or with `--out DIR` one page per command
/// (`faultline.1`, `faultline-run.1`, ...) written there.
pub(super) fn man(out: Option<&Path>) -> Result<i32, UsageError> {
    let cmd = Cli::command();
    match out {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut page)?;
            std::io::stdout().write_all(&page)?;
        }
        Some(dir) => {
            check_out_dir(dir)?;
            // Built, the subcommands carry display names `faultline-run`, ...: their pages'
            // titles and file names.
            let mut cmd = cmd.disable_help_subcommand(true);
            cmd.build();
            let subs: Vec<clap::Command> = cmd.get_subcommands().cloned().collect();
            for page_cmd in std::iter::once(cmd).chain(subs) {
                let man = clap_mangen::Man::new(page_cmd);
                let mut page = Vec::new();
                man.render(&mut page)?;
                let file = dir.join(man.get_filename());
                write_file(&file, &page)?;
                println!("wrote {}", file.display());
            }
        }
    }
    Ok(EXIT_PASS)
}
