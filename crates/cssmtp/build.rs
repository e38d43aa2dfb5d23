//! Records the build's details for `cssmtp --version` (git commit and its date, build
//! date, rustc, target, features) as `VERGEN_*` variables, through vergen. Outside a git
//! checkout (a source tarball) the git fields read `VERGEN_IDEMPOTENT_OUTPUT`; the
//! build date follows `SOURCE_DATE_EPOCH` when set (reproducible builds).

use vergen_gitcl::{Build, Cargo, Emitter, Gitcl, Rustc};

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
    Ok(())
}
