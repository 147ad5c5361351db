//! Paths of the project's binaries, as built by `cargo build --workspace --bins` into the same
//! target directory as the test executable.

use std::path::PathBuf;

/// `target/<profile>/<name>`. Panics with the build command when the binary is missing.
pub fn path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    // Test executables live in target/<profile>/deps/; binaries one level up.
    let dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps layout");
    let bin = dir.join(name);
    assert!(
        bin.is_file(),
        "{} not found; build the binaries first with `cargo build --workspace --bins` \
         (the README test command does this)",
        bin.display()
    );
    bin
}
