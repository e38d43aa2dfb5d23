//! `cssmtp --version`: the version and the build's details, recorded by `build.rs`
//! (vergen); `-V` gives the version alone.

use std::sync::LazyLock;

/// The git commit the binary was built from (short), or `unknown` outside a checkout.
pub const COMMIT: &str = env!("VERGEN_GIT_SHA");

static LONG: LazyLock<String> = LazyLock::new(|| {
    let features = env!("VERGEN_CARGO_FEATURES");
    let commit = if COMMIT == "VERGEN_IDEMPOTENT_OUTPUT" {
        "unknown (not built from a git checkout)".to_owned()
    } else {
        let modified = if env!("VERGEN_GIT_DIRTY") == "true" {
            ", with uncommitted changes"
        } else {
            ""
        };
        format!("{COMMIT} of {}{modified}", env!("VERGEN_GIT_COMMIT_DATE"))
    };
    format!(
        "{}\ncommit:   {commit}\nbuilt:    {} for {} with rustc {}\nfeatures: {}",
        env!("CARGO_PKG_VERSION"),
        env!("VERGEN_BUILD_DATE"),
        env!("VERGEN_CARGO_TARGET_TRIPLE"),
        env!("VERGEN_RUSTC_SEMVER"),
        if features.is_empty() {
            "(none)"
        } else {
            features
        },
    )
});

/// The text of `cssmtp --version`.
pub fn long() -> &'static str {
    LONG.as_str()
}
