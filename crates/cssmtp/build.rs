//! Records the build's details for `cssmtp --version` (git commit and its date, build
//! date, rustc, target, features) as `VERGEN_*` variables, through vergen. Outside a git
//! checkout (a source tarball) the git fields read `VERGEN_IDEMPOTENT_OUTPUT`; the
//! build date follows `SOURCE_DATE_EPOCH` when set (reproducible builds).

use std::path::Path;
use std::process::Command;

use vergen_gitcl::{Build, Cargo, Emitter, Gitcl, Rustc};

/// Reruns the build script when a commit moves the branch: vergen watches `HEAD`,
/// which does not change on a commit in a branch (nor in a git worktree); the branch's
/// ref file (and `packed-refs`, when there is one) does.
fn watch_branch() {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let mut refs = vec!["packed-refs".to_owned()];
    if let Some(branch) = git(&["rev-parse", "--symbolic-full-name", "HEAD"]) {
        refs.push(branch);
    }
    for name in refs {
        if let Some(path) = git(&["rev-parse", "--path-format=absolute", "--git-path", &name])
            && Path::new(&path).exists()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let build = Build::builder().build_date(true).build();
    let cargo = Cargo::builder().features(true).target_triple(true).build();
    let git = Gitcl::builder()
        .sha(true)
        .commit_date(true)
        .dirty(false)
        .build();
    let rustc = Rustc::builder().semver(true).build();
    Emitter::default()
        .add_instructions(&build)?
        .add_instructions(&cargo)?
        .add_instructions(&git)?
        .add_instructions(&rustc)?
        .emit()?;
    watch_branch();
    Ok(())
}
