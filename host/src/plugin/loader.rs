//! From a file to a plugin that is ready to serve: read, check that it is a
//! component, compile (or take the compiled form from the on-disk cache),
//! link against the `sparrow:service` world, and ask it to describe itself
//! (in an instance slot, within the request timeout, like a request).
//! Every step names the file and what was wrong with it.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::bindings::{Description, ServicePre, WORLD};
use super::context::ServiceEnv;
use super::engine::PluginEngine;
use super::loaded::Plugin;
use super::pool::InstancePool;
use super::sandbox::{Failure, classify};

impl PluginEngine {
    /// Loads the component at `path`. `env` serves the plugin's imports while
    /// it describes itself.
    pub async fn load(&self, path: &Path, env: Arc<ServiceEnv>) -> anyhow::Result<Plugin> {
        let shown = path.display().to_string();
        let bytes = tokio::fs::read(path)
            .await
            .with_context(|| format!("cannot read plugin {shown}"))?;
        check_is_component(&bytes).with_context(|| format!("plugin {shown}"))?;
        let digest = hex(&Sha256::digest(&bytes));

        // Compiling takes from milliseconds to seconds: keep it off the
        // threads that serve requests.
        let engine = self.engine.clone();
        let cache = self.settings.compile_cache.clone();
        let key = digest.clone();
        let component =
            tokio::task::spawn_blocking(move || compile(&engine, cache.as_deref(), &bytes, &key))
                .await
                .context("compiler task failed")?
                .with_context(|| format!("plugin {shown} does not compile"))?;

        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(ServicePre::new)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("plugin {shown} is not a component of the {WORLD} world"))?;

        let pool = InstancePool::new(
            pre,
            self.settings.reuse,
            self.settings.max_instances as usize,
        );
        let description = self
            .describe(&pool, env)
            .await
            .with_context(|| format!("plugin {shown} failed to describe itself"))?;
        if description.name.trim().is_empty() {
            bail!("plugin {shown} describes itself with an empty name");
        }
        Ok(Plugin {
            pool,
            description,
            digest,
        })
    }

    /// Asks a freshly loaded plugin who it is, as bounded as a request.
    async fn describe(
        &self,
        pool: &InstancePool,
        env: Arc<ServiceEnv>,
    ) -> anyhow::Result<Description> {
        let deadline = tokio::time::Instant::now() + self.settings.request_timeout;
        let _slot = self.slot(deadline).await?;
        let mut instance = pool.take(self, env)?;
        instance.arm(deadline.into_std(), None);
        match tokio::time::timeout_at(deadline, pool.describe(&mut instance)).await {
            Ok(Ok(description)) => Ok(description),
            Ok(Err(error)) => Err(classify(error).into()),
            Err(_elapsed) => Err(Failure::Timeout.into()),
        }
    }
}

/// Compiles `bytes`, or loads what an earlier compilation of the same bytes
/// by a compatible engine left in `cache`.
fn compile(
    engine: &Engine,
    cache: Option<&Path>,
    bytes: &[u8],
    digest: &str,
) -> anyhow::Result<Component> {
    let Some(cache) = cache else {
        return Ok(Component::new(engine, bytes)?);
    };
    let entry = cache_entry(engine, cache, digest);
    if entry.exists() {
        // SAFETY: `deserialize_file` trusts its input to be wasmtime's own
        // output. Entries are written only below, atomically, under a name
        // made of the hash of the source and of the engine's compilation
        // settings (wasmtime's version among them), and wasmtime checks the
        // version and settings again while loading.
        match unsafe { Component::deserialize_file(engine, &entry) } {
            Ok(component) => {
                tracing::info!(entry = %entry.display(), "compiled plugin taken from the cache");
                return Ok(component);
            }
            Err(e) => tracing::warn!(entry = %entry.display(), error = %e, "unusable cache entry"),
        }
    }
    let component = Component::new(engine, bytes)?;
    match component.serialize() {
        Ok(compiled) => {
            if let Err(e) = write_atomically(&entry, &compiled) {
                tracing::warn!(entry = %entry.display(), error = %e, "cannot cache the compiled plugin");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot serialise the compiled plugin"),
    }
    Ok(component)
}

/// `CACHE/SOURCE-ENGINE.cwasm`: a new wasmtime version or other compilation
/// settings get entries of their own.
fn cache_entry(engine: &Engine, cache: &Path, digest: &str) -> PathBuf {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    cache.join(format!("{digest}-{:016x}.cwasm", hasher.finish()))
}

/// Writes a temporary file and renames it into place, so that a reader never
/// sees half an entry, even with several hosts sharing the cache.
fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&temporary, contents)?;
    std::fs::rename(&temporary, path)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A component starts like a core module but with another layer number; tell
/// the two apart so that a core module gets a message that helps.
fn check_is_component(bytes: &[u8]) -> anyhow::Result<()> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        bail!("is not a WebAssembly file");
    }
    match bytes[6..8] {
        [1, 0] => Ok(()),
        [0, 0] => bail!(
            "is a core WebAssembly module, not a component (build it for wasm32-wasip2, or wrap it with `wasm-tools component new`)"
        ),
        _ => bail!("is a WebAssembly binary of an unknown kind"),
    }
}

#[cfg(test)]
mod tests {
    use super::check_is_component;

    #[test]
    fn tells_modules_components_and_junk_apart() {
        assert!(check_is_component(b"\0asm\x0d\0\x01\0").is_ok());
        let module = check_is_component(b"\0asm\x01\0\0\0").unwrap_err();
        assert!(module.to_string().contains("core WebAssembly module"));
        let junk = check_is_component(b"hello world").unwrap_err();
        assert!(junk.to_string().contains("not a WebAssembly file"));
    }
}
