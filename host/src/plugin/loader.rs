//! From a file to a plugin that is ready to serve: read, check that it is a
//! component, compile (or take the compiled form from the on-disk cache),
//! tell its world from its exports, link against that world, and ask a
//! `sparrow:service` plugin to describe itself (in an instance slot, within
//! the request timeout, like a request; a standard `wasi:http/proxy`
//! component cannot, the command line names it). Every step names the file
//! and what was wrong with it.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use sha2::{Digest, Sha256};

use wasmtime::Engine;
use wasmtime::component::Component;

use super::bindings::{Description, ServicePre, WORLD};
use super::cache::{compile, hex};
use super::context::RequestCtx;
use super::context::ServiceEnv;
use super::engine::PluginEngine;
use super::loaded::{Kind, Plugin};
use super::pool::InstancePool;
use super::proxy::{self, ProxyPlugin};
use super::sandbox::{Failure, classify};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

impl PluginEngine {
    /// Loads the component at `path`. `env` serves the plugin's imports while
    /// it describes itself.
    pub async fn load(&self, path: &Path, env: Arc<ServiceEnv>) -> anyhow::Result<Plugin> {
        let shown = path.display().to_string();
        let (component, digest) = self.compile_file(path).await?;
        match world_of(self.engine(), &component) {
            World::Service => {}
            World::Proxy => {
                let pre = self
                    .link_proxy(&component)
                    .with_context(|| format!("plugin {shown}"))?;
                return Ok(Plugin {
                    kind: Kind::Proxy(ProxyPlugin { pre }),
                    description: Description {
                        name: String::new(),
                        requires: Vec::new(),
                    },
                    digest,
                });
            }
            World::Neither(exports) => bail!(
                "plugin {shown} is not a component of the {WORLD} world (which \
                 exports describe and handle-request) nor of the {} world (which \
                 exports wasi:http/incoming-handler); it exports {}",
                proxy::WORLD,
                if exports.is_empty() {
                    "nothing".to_owned()
                } else {
                    exports.join(", ")
                }
            ),
        }
        let pre = self
            .link(&component)
            .with_context(|| format!("plugin {shown}"))?;
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
            kind: Kind::Service(pool),
            description,
            digest,
        })
    }

    /// Reads, checks and compiles the file (or takes it from the compiled
    /// cache); answers the component and the file's SHA-256. Used by `host
    /// compile` too, which fills the cache ahead of a swap.
    pub async fn compile_file(&self, path: &Path) -> anyhow::Result<(Component, String)> {
        let shown = path.display().to_string();
        let bytes = tokio::fs::read(path)
            .await
            .with_context(|| format!("cannot read plugin {shown}"))?;
        check_is_component(&bytes).with_context(|| format!("plugin {shown}"))?;
        let digest = hex(&Sha256::digest(&bytes));

        // Compiling takes from milliseconds to seconds: keep it off the
        // threads that serve requests.
        let engine = self.engine().clone();
        let cache = self.settings.compile_cache.clone();
        let key = digest.clone();
        let component =
            tokio::task::spawn_blocking(move || compile(&engine, cache.as_ref(), &bytes, &key))
                .await
                .context("compiler task failed")?
                .with_context(|| format!("plugin {shown} does not compile"))?;
        Ok((component, digest))
    }

    /// Links the component against the host's world; when it imports what
    /// the host does not provide, says what, and how to leave it out.
    pub fn link(&self, component: &Component) -> anyhow::Result<ServicePre<RequestCtx>> {
        let linked = self
            .linker()
            .instantiate_pre(component)
            .and_then(ServicePre::new)
            .map_err(anyhow::Error::from);
        linked.map_err(|e| {
            let foreign = foreign_imports(self.engine(), component);
            if foreign.is_empty() {
                e.context(format!("is not a component of the {WORLD} world"))
            } else {
                anyhow::anyhow!(
                    "is not a component of the {WORLD} world: it imports {}, which this host does not provide{}",
                    foreign.join(", "),
                    hint(&foreign)
                )
            }
        })
    }

    /// Links the component for the world it exports, as `load` would:
    /// what `host compile` checks.
    pub fn check_link(&self, component: &Component) -> anyhow::Result<()> {
        match world_of(self.engine(), component) {
            World::Proxy => self.link_proxy(component).map(drop),
            _ => self.link(component).map(drop),
        }
    }

    /// Links a standard component against WASI and `wasi:http`.
    pub fn link_proxy(&self, component: &Component) -> anyhow::Result<ProxyPre<RequestCtx>> {
        self.proxy_linker()
            .instantiate_pre(component)
            .and_then(ProxyPre::new)
            .map_err(|e| {
                anyhow::Error::from(e).context(format!(
                    "is a {} component this host cannot link",
                    proxy::WORLD
                ))
            })
    }

    /// Asks a freshly loaded plugin who it is, as bounded as a request.
    async fn describe(
        &self,
        pool: &InstancePool,
        env: Arc<ServiceEnv>,
    ) -> anyhow::Result<Description> {
        let _slot = self.slot().await?;
        let deadline = tokio::time::Instant::now() + self.settings.request_timeout;
        let mut instance = pool.take(self, env)?;
        instance.arm(deadline.into_std(), None);
        match tokio::time::timeout_at(deadline, pool.describe(&mut instance)).await {
            Ok(Ok(description)) => Ok(description),
            Ok(Err(error)) => Err(classify(error).into()),
            Err(_elapsed) => Err(Failure::Timeout.into()),
        }
    }
}

/// Which world a component was built for, told by what it exports.
pub(super) enum World {
    Service,
    Proxy,
    /// Neither: its exports, for the message.
    Neither(Vec<String>),
}

/// A `wasi:http/incoming-handler` export makes a standard component; else
/// the host takes it for a `sparrow:service` one when it exports
/// `handle-request` (linking then says what else is wrong with it).
pub(super) fn world_of(engine: &Engine, component: &Component) -> World {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    if exports.iter().any(|e| e.starts_with(proxy::HANDLER_EXPORT)) {
        World::Proxy
    } else if exports.iter().any(|e| e == "handle-request") {
        World::Service
    } else {
        World::Neither(exports)
    }
}

/// The interfaces a plugin of the `sparrow:service` world may import: its
/// own and WASI's command-line set.
const PROVIDED: [&str; 7] = [
    "sparrow:service/",
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:filesystem/",
    "wasi:io/",
    "wasi:random/",
    "wasi:sockets/",
];

/// The component's imports outside [`PROVIDED`].
fn foreign_imports(engine: &Engine, component: &Component) -> Vec<String> {
    component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_owned())
        .filter(|name| !PROVIDED.iter().any(|p| name.starts_with(p)))
        .collect()
}

/// How to build without the known extra imports.
fn hint(foreign: &[String]) -> &'static str {
    if foreign.iter().any(|name| name.starts_with("wasi:http/")) {
        concat!(
            " (a sparrow:service plugin reaches other services with call-service, not wasi:http;",
            " a JavaScript plugin built with jco: add `--disable http --disable fetch-event` to `jco componentize`;",
            " a standard HTTP component exports wasi:http/incoming-handler, and then runs as one)"
        )
    } else {
        ""
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
