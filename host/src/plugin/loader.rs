//! From a file to a plugin that is ready to serve: read, check that it is a
//! component, compile, link against the `sparrow:service` world, and ask it
//! to describe itself. Every step names the file and what was wrong with it.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use wasmtime::component::Component;

use super::bindings::{Description, ServicePre, WORLD};
use super::context::{RequestCtx, ServiceEnv};
use super::engine::PluginEngine;

/// A compiled, linked plugin: instantiating it for a request is cheap.
pub struct Plugin {
    pub(super) pre: ServicePre<RequestCtx>,
    /// What the plugin said about itself when it was loaded.
    pub description: Description,
}

impl PluginEngine {
    /// Loads the component at `path`. `env` serves the plugin's imports while
    /// it describes itself.
    pub async fn load(&self, path: &Path, env: Arc<ServiceEnv>) -> anyhow::Result<Plugin> {
        let shown = path.display().to_string();
        let bytes = tokio::fs::read(path)
            .await
            .with_context(|| format!("cannot read plugin {shown}"))?;
        check_is_component(&bytes).with_context(|| format!("plugin {shown}"))?;

        // Compiling takes from milliseconds to seconds: keep it off the
        // threads that serve requests.
        let engine = self.engine.clone();
        let component = tokio::task::spawn_blocking(move || Component::new(&engine, &bytes))
            .await
            .context("compiler task failed")?
            .map_err(anyhow::Error::from)
            .with_context(|| format!("plugin {shown} does not compile"))?;

        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(ServicePre::new)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("plugin {shown} is not a component of the {WORLD} world"))?;

        let description = self
            .describe(&pre, env)
            .await
            .with_context(|| format!("plugin {shown} failed to describe itself"))?;
        if description.name.trim().is_empty() {
            bail!("plugin {shown} describes itself with an empty name");
        }
        Ok(Plugin { pre, description })
    }
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
