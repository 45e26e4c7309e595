//! An on-disk cache of compiled components, keyed by the component's content and the engine's
//! configuration, so that a job's second start does not compile again (~60 ms to seconds per
//! component, versus ~0.2 ms to load).

use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use wasmtime::Engine;
use wasmtime::component::Component;
use xxhash_rust::xxh3::{Xxh3, xxh3_128};

pub(super) struct ComponentCache {
    dir: Option<PathBuf>,
}

impl ComponentCache {
    /// `$WEIR_CACHE_DIR`, else `$XDG_CACHE_HOME/weir`, else `$HOME/.cache/weir`; none if unset.
    pub(super) fn from_env() -> Self {
        let dir = std::env::var_os("WEIR_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("weir")))
            .or_else(|| {
                std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache").join("weir"))
            })
            .map(|d| d.join("components"));
        ComponentCache { dir }
    }

    fn file(&self, engine: &Engine, bytes: &[u8]) -> Option<PathBuf> {
        let mut h = Xxh3::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let engine_hash = h.finish();
        let content = xxh3_128(bytes);
        Some(
            self.dir
                .as_ref()?
                .join(format!("{content:032x}-{engine_hash:016x}.cwasm")),
        )
    }

    pub(super) fn get(&self, engine: &Engine, bytes: &[u8]) -> Option<Component> {
        let file = self.file(engine, bytes)?;
        if !file.is_file() {
            return None;
        }
        // SAFETY: files in the cache directory are written only by `put` below, from
        // `Component::serialize` of this engine configuration (the file name carries both the
        // content hash and the engine's compatibility hash). A file that fails to load is
        // recompiled and rewritten.
        match unsafe { Component::deserialize_file(engine, &file) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "ignoring a stale component cache entry");
                None
            }
        }
    }

    pub(super) fn put(&self, engine: &Engine, bytes: &[u8], component: &Component) {
        let Some(file) = self.file(engine, bytes) else {
            return;
        };
        let write = || -> std::io::Result<()> {
            let dir = file.parent().expect("cache files live in a directory");
            std::fs::create_dir_all(dir)?;
            let data = component.serialize().map_err(std::io::Error::other)?;
            // Write then rename, so a concurrent reader never sees half a file.
            let tmp = dir.join(format!(
                ".{}.{}",
                std::process::id(),
                file.file_name().and_then(|n| n.to_str()).unwrap_or("tmp")
            ));
            std::fs::write(&tmp, data)?;
            std::fs::rename(&tmp, &file)
        };
        if let Err(e) = write() {
            tracing::warn!(file = %file.display(), error = %e, "cannot write the component cache; compiling each time");
        }
    }
}
