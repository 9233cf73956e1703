//! The precompiled cache: compiled plugins on disk, named by content hash and the engine's
//! compatibility hash, so a restart does not compile again. It holds native code loaded without
//! verification, so both `unsafe` blocks of the runtime live here, beside the check that only
//! hookhost's user can write to the folder.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use wasmtime::component::Component;
use wasmtime::Engine;

/// The precompiled component at `cached`, if there is a usable one.
pub fn load_cached(engine: &Engine, cached: &Path) -> Option<Component> {
    if !cached.exists() {
        return None;
    }
    // SAFETY: the file is in hookhost's own cache directory, written by `compile_and_cache`
    // with this engine's configuration (the compatibility hash is in its name); wasmtime also
    // checks the header. A corrupt or foreign file fails to load and is recompiled.
    match unsafe { Component::deserialize_file(engine, cached) } {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(path = %cached.display(), "ignoring unusable precompiled plugin: {e:#}");
            None
        }
    }
}

/// Compiles `bytes` (read from `source`) and caches the result at `cached` (a failure to cache
/// is logged: the next start compiles again).
pub fn compile_and_cache(
    engine: &Engine,
    bytes: &[u8],
    cached: &Path,
    source: &Path,
) -> Result<Component> {
    let artifact = not_a_component(bytes)
        .map_or_else(
            || {
                engine
                    .precompile_component(bytes)
                    .map_err(|e| anyhow!("{e:#}"))
            },
            |why| Err(anyhow!(why)),
        )
        .with_context(|| {
            format!(
                "plugin {} is not a valid WebAssembly component",
                source.display()
            )
        })?;
    if let Err(e) = write_atomically(cached, &artifact) {
        tracing::warn!(path = %cached.display(), "cannot cache the precompiled plugin (it will be compiled again next start): {e:#}");
    }
    // SAFETY: `artifact` was produced just now by this engine's `precompile_component`.
    unsafe { Component::deserialize(engine, &artifact) }.map_err(|e| anyhow!("{e:#}"))
}

/// Why `bytes` cannot be a component, said for people, when its header already shows it
/// (wasmtime's own message prints the magic bytes as multi-line arrays).
pub fn not_a_component(bytes: &[u8]) -> Option<String> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() < 8 {
        return Some(format!(
            "the file is {} bytes long: too short to be WebAssembly",
            bytes.len()
        ));
    }
    if &bytes[..4] != MAGIC {
        let hex: Vec<String> = bytes[..8].iter().map(|b| format!("{b:02x}")).collect();
        let text: String = bytes[..8]
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        return Some(format!(
            "the file is not WebAssembly: it starts with {} ({text:?}), not with 00 61 73 6d (\"\\0asm\")",
            hex.join(" ")
        ));
    }
    match &bytes[4..8] {
        [1, 0, 0, 0] => Some(
            "the file is a core WebAssembly module, not a component: build it for \
             wasm32-wasip2 (`cargo build --target wasm32-wasip2`) or wrap it with \
             `wasm-tools component new`"
                .to_string(),
        ),
        [_, _, 1, 0] => None,
        other => Some(format!(
            "the file is WebAssembly of an unknown version or layer ({other:02x?}): this host \
             runs components (layer 1)"
        )),
    }
}

/// The precompiled cache holds native code that is loaded without verification (`unsafe`
/// deserialization): whoever can write to it can run code in hookhost. So the folder must belong
/// to hookhost's user and be writable by nobody else; a folder that is missing is created so
/// (mode 0700).
pub fn check_cache_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create the plugin cache {}", dir.display()))?;
    }
    let meta = std::fs::metadata(dir)
        .with_context(|| format!("cannot read the plugin cache {}", dir.display()))?;
    if !meta.is_dir() {
        bail!("cache_dir {} is not a folder", dir.display());
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        bail!(
            "cache_dir {} belongs to user {}, not to hookhost's user {me}: precompiled plugins are native code loaded without verification, so only hookhost may write there (chown it, or point cache_dir elsewhere)",
            dir.display(),
            meta.uid()
        );
    }
    let mode = meta.permissions().mode();
    if mode & 0o022 != 0 {
        bail!(
            "cache_dir {} is writable by its group or by everyone (mode {:o}): precompiled plugins are native code loaded without verification, so only hookhost may write there (chmod go-w it)",
            dir.display(),
            mode & 0o777
        );
    }
    Ok(())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("cache path has no folder")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} into place", tmp.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_others_can_write_to_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        check_cache_dir(&cache).unwrap();
        let mode = std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "created for hookhost alone");
        for loose in [0o777, 0o775, 0o757] {
            std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(loose)).unwrap();
            let err = check_cache_dir(&cache).unwrap_err().to_string();
            assert!(
                err.contains("writable by its group or by everyone"),
                "{loose:o}: {err}"
            );
        }
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o755)).unwrap();
        check_cache_dir(&cache).unwrap();
        if rustix::process::geteuid().is_root() {
            // Another user's folder, even with a strict mode.
            std::os::unix::fs::chown(&cache, Some(65534), None).unwrap();
            let err = check_cache_dir(&cache).unwrap_err().to_string();
            assert!(err.contains("belongs to user 65534"), "{err}");
        }
    }
}

#[cfg(test)]
mod header_tests {
    use super::not_a_component;

    #[test]
    fn a_file_that_is_not_a_component_is_explained_on_one_line() {
        let json = not_a_component(br#"{"orderId": 1}"#).unwrap();
        assert_eq!(
            json,
            r#"the file is not WebAssembly: it starts with 7b 22 6f 72 64 65 72 49 ("{\"orderI"), not with 00 61 73 6d ("\0asm")"#
        );
        assert!(not_a_component(b"\0asm").unwrap().contains("4 bytes long"));
        let core = not_a_component(b"\0asm\x01\0\0\0rest").unwrap();
        assert!(
            core.contains("core WebAssembly module, not a component"),
            "{core}"
        );
        assert_eq!(not_a_component(b"\0asm\x0d\0\x01\0rest"), None);
        for message in [json, core] {
            assert!(
                !message.contains('\n') && !message.contains('['),
                "{message}"
            );
        }
    }
}
