//! Builds the example plugins (`plugins/*`) for `wasm32-unknown-unknown` and copies each
//! core module to `$OUT_DIR/plugins/<name>.wasm`, where `src/examples.rs` embeds it.
//!
//! Why a nested cargo: the plugins need a different target (and profile) than the host,
//! and a build script cannot ask the outer cargo for that. Running `$CARGO` again with
//! its own `--target-dir` (`target/wasm-plugins`) keeps it off the outer build's lock,
//! and scrubbing the variables cargo sets for build scripts keeps the outer build's
//! flags, wrappers (clippy) and target from leaking into the Wasm build.

use std::env;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `(file name in OUT_DIR/plugins, cargo package)` for every plugin.
const PLUGINS: &[(&str, &str)] = &[
    ("kv", "flotilla-plugin-kv"),
    ("counter", "flotilla-plugin-counter"),
    ("bank", "flotilla-plugin-bank"),
    ("registry", "flotilla-plugin-registry"),
    ("hostile", "flotilla-plugin-hostile"),
];
const TARGET: &str = "wasm32-unknown-unknown";
/// The workspace profile for plugins (see the root `Cargo.toml`).
const PROFILE: &str = "wasm-plugins";

/// Variables that configure the outer build and must not reach the nested one.
const SCRUB: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "RUSTDOCFLAGS",
    "CARGO_ENCODED_RUSTDOCFLAGS",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_RUSTC_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
    "RUSTC_LINKER",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_CRATE_NAME",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_MANIFEST_LINKS",
    "PROFILE",
    "TARGET",
    "HOST",
    "OUT_DIR",
    "OPT_LEVEL",
    "DEBUG",
    "NUM_JOBS",
];
const SCRUB_PREFIXES: &[&str] = &["CARGO_CFG_", "CARGO_FEATURE_", "CARGO_PKG_", "DEP_"];

/// Entry point, called from `build.rs`.
pub fn run() {
    let host_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR"));
    let workspace = host_dir
        .parent()
        .expect("host/ has a parent: the workspace root")
        .to_path_buf();
    let out_dir = PathBuf::from(env_var("OUT_DIR")).join("plugins");

    for watched in ["guest-sdk", "plugins", "Cargo.toml", "Cargo.lock"] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    println!(
        "cargo:rerun-if-changed={}",
        host_dir.join("build_plugins.rs").display()
    );

    let target_dir = workspace.join("target").join("wasm-plugins");
    ensure_target();
    build(&workspace, &target_dir);

    fs::create_dir_all(&out_dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", out_dir.display()));
    let built = target_dir.join(TARGET).join(PROFILE);
    for (name, package) in PLUGINS {
        let from = built.join(format!("{}.wasm", package.replace('-', "_")));
        let to = out_dir.join(format!("{name}.wasm"));
        fs::copy(&from, &to)
            .unwrap_or_else(|e| panic!("cannot copy {} to {}: {e}", from.display(), to.display()));
    }
}

/// Installs the Wasm target with rustup when the compiler lacks it. `rust-toolchain.toml`
/// lists it, but rustup adds a toolchain file's targets only when it installs that
/// toolchain: on a machine that already had `stable`, the README's first command failed
/// with "can't find crate for `core`".
fn ensure_target() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| OsString::from("rustc"));
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let Some(sysroot) = sysroot else {
        return; // The nested build will say what is wrong.
    };
    let installed = || sysroot.join("lib").join("rustlib").join(TARGET).is_dir();
    if installed() {
        return;
    }
    println!("cargo:warning=the {TARGET} target is missing: running `rustup target add {TARGET}`");
    let added = Command::new("rustup")
        .args(["target", "add", TARGET])
        .output();
    match added {
        Ok(o) if o.status.success() => {
            if !installed() {
                panic!(
                    "`rustup target add {TARGET}` succeeded, but the compiler in use ({}) \
                     still lacks the target: install it for that toolchain",
                    sysroot.display()
                );
            }
        }
        Ok(o) => panic!(
            "the {TARGET} target (for the example plugins) is not installed, and \
             `rustup target add {TARGET}` failed ({}):\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!(
            "the {TARGET} target (for the example plugins) is not installed in {}, and \
             rustup cannot be run ({e}): install the target for this compiler",
            sysroot.display()
        ),
    }
}

/// Runs the nested `cargo build` for all plugins, panicking with its output on failure.
fn build(workspace: &Path, target_dir: &Path) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .args(["--target", TARGET, "--profile", PROFILE]);
    for (_, package) in PLUGINS {
        cmd.args(["-p", package]);
    }
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if SCRUB.contains(&key) || SCRUB_PREFIXES.iter().any(|p| key.starts_with(p)) {
            cmd.env_remove(key);
        }
    }

    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run the nested cargo ({cmd:?}): {e}"));
    if !output.status.success() {
        panic!(
            "building the example plugins for {TARGET} failed ({}).\ncommand: {cmd:?}\n\
             --- nested cargo stderr ---\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

fn env_var(key: &str) -> OsString {
    env::var_os(key).unwrap_or_else(|| panic!("cargo sets {key} for build scripts"))
}
