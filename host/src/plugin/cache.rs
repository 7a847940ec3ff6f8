//! The on-disk cache of compiled plugins, so that a restart (or a swap back
//! to a version seen before) does not compile again.
//!
//! A cached file is native code that the host will run, so the cache is
//! treated as the host's own private memory:
//!
//! - the directory must be owned by the host's user and writable by no one
//!   else (it is created `0700`, and one readable by others is made so); a
//!   directory, or an entry, that others could write is not used, with a
//!   warning;
//! - each entry carries the SHA-256 of its bytes in a file beside it, and an
//!   entry that does not match is compiled again, never loaded;
//! - entries are written to a temporary file and renamed into place, so a
//!   reader never sees half of one, even with several hosts sharing it;
//! - the directory is bounded: past `--cache-max` bytes, the entries used
//!   least recently are removed.

use std::hash::{Hash, Hasher};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where compiled plugins are kept, and how much of them.
#[derive(Debug, Clone)]
pub struct CompileCache {
    pub dir: PathBuf,
    pub max_bytes: u64,
}

/// Compiles `bytes`, or loads what an earlier compilation of the same bytes
/// by a compatible engine left in `cache`.
pub(super) fn compile(
    engine: &Engine,
    cache: Option<&CompileCache>,
    bytes: &[u8],
    digest: &str,
) -> anyhow::Result<Component> {
    let Some(cache) = cache.filter(|cache| is_private(&cache.dir)) else {
        return compile_now(engine, bytes);
    };
    let entry = cache_entry(engine, &cache.dir, digest);
    if let Some(component) = load(engine, &entry) {
        return Ok(component);
    }
    let component = compile_now(engine, bytes)?;
    match component.serialize() {
        Ok(compiled) => {
            if let Err(e) = store(&entry, &compiled) {
                tracing::warn!(entry = %entry.display(), error = %e, "cannot cache the compiled plugin");
            }
            prune(&cache.dir, cache.max_bytes);
        }
        Err(e) => tracing::warn!(error = %e, "cannot serialise the compiled plugin"),
    }
    Ok(component)
}

/// Compiles, saying so: from milliseconds to many seconds for big plugins,
/// and the log is where an operator sees why a swap has not happened yet.
fn compile_now(engine: &Engine, bytes: &[u8]) -> anyhow::Result<Component> {
    let started = std::time::Instant::now();
    tracing::info!(bytes = bytes.len(), "compiling the plugin");
    let component = Component::new(engine, bytes)?;
    tracing::info!(took = ?started.elapsed(), "compiled the plugin");
    Ok(component)
}

/// The entry, if it exists and checks out.
fn load(engine: &Engine, entry: &Path) -> Option<Component> {
    let meta = std::fs::metadata(entry).ok()?;
    if !owned_and_not_shared(&meta) {
        tracing::warn!(entry = %entry.display(), "cache entry writable by others; compiling again");
        return None;
    }
    let compiled = std::fs::read(entry).ok()?;
    let recorded = std::fs::read_to_string(checksum_path(entry)).unwrap_or_default();
    if recorded.trim() != hex(&Sha256::digest(&compiled)) {
        tracing::warn!(entry = %entry.display(), "cache entry does not match its checksum; compiling again");
        return None;
    }
    // SAFETY: `deserialize` trusts its input to be wasmtime's own output.
    // This one was written by this host's user (the directory is private to
    // it), matches the checksum written with it, and sits under a name made
    // of the hash of the source and of the engine's settings; wasmtime checks
    // its version and settings again while loading.
    match unsafe { Component::deserialize(engine, &compiled) } {
        Ok(component) => {
            // Used now: the last to be pruned.
            let _ = std::fs::File::options()
                .append(true)
                .open(entry)
                .and_then(|f| f.set_modified(SystemTime::now()));
            tracing::info!(entry = %entry.display(), "compiled plugin taken from the cache");
            Some(component)
        }
        Err(e) => {
            tracing::warn!(entry = %entry.display(), error = %e, "unusable cache entry; compiling again");
            None
        }
    }
}

/// Whether `dir` is fit to hold native code for this user: created private
/// if missing; else owned by us and writable by no one else (and made
/// private if others may read it).
fn is_private(dir: &Path) -> bool {
    if !dir.exists()
        && let Err(e) = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot create the compiled-plugin cache; not caching");
        return false;
    }
    let meta = match std::fs::metadata(dir) {
        Ok(meta) => meta,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot use the compiled-plugin cache");
            return false;
        }
    };
    if !owned_and_not_shared(&meta) {
        tracing::warn!(
            dir = %dir.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "the compiled-plugin cache must be owned by this user and writable by no one else; not caching"
        );
        return false;
    }
    if meta.permissions().mode() & 0o077 != 0 {
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    true
}

/// Owned by this process's user and writable by no one else.
fn owned_and_not_shared(meta: &std::fs::Metadata) -> bool {
    meta.uid() == nix::unistd::geteuid().as_raw() && meta.permissions().mode() & 0o022 == 0
}

/// `CACHE/SOURCE-ENGINE.cwasm`: a new wasmtime version or other compilation
/// settings get entries of their own.
fn cache_entry(engine: &Engine, cache: &Path, digest: &str) -> PathBuf {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    cache.join(format!("{digest}-{:016x}.cwasm", hasher.finish()))
}

fn checksum_path(entry: &Path) -> PathBuf {
    entry.with_extension("cwasm.sha256")
}

/// Writes the checksum, then the entry, each atomically: an entry is never
/// seen without the checksum it must match.
fn store(entry: &Path, compiled: &[u8]) -> std::io::Result<()> {
    write_atomically(
        &checksum_path(entry),
        hex(&Sha256::digest(compiled)).as_bytes(),
    )?;
    write_atomically(entry, compiled)
}

/// Writes a temporary file and renames it into place.
fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&temporary, contents)?;
    std::fs::rename(&temporary, path)
}

/// Removes the least recently used entries (and their checksums) until the
/// entries take at most `max_bytes`.
fn prune(dir: &Path, max_bytes: u64) {
    let Ok(listing) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<(SystemTime, u64, PathBuf)> = listing
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .filter_map(|p| {
            let meta = std::fs::metadata(&p).ok()?;
            Some((meta.modified().ok()?, meta.len(), p))
        })
        .collect();
    let mut total: u64 = entries.iter().map(|(_, len, _)| len).sum();
    entries.sort();
    for (_, len, path) in entries {
        if total <= max_bytes {
            break;
        }
        tracing::info!(entry = %path.display(), "compiled-plugin cache full; removing the least recently used entry");
        let _ = std::fs::remove_file(checksum_path(&path));
        if std::fs::remove_file(&path).is_ok() {
            total -= len;
        }
    }
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn pruning_removes_the_least_recently_used_entries_first() {
        let dir = std::env::temp_dir().join(format!("sparrow-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let base = SystemTime::now() - Duration::from_secs(100);
        for (n, name) in ["old", "mid", "new"].iter().enumerate() {
            let entry = dir.join(format!("{name}.cwasm"));
            store(&entry, &[0u8; 100]).unwrap();
            std::fs::File::options()
                .append(true)
                .open(&entry)
                .and_then(|f| f.set_modified(base + Duration::from_secs(n as u64)))
                .unwrap();
        }
        prune(&dir, 250);
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "mid.cwasm",
                "mid.cwasm.sha256",
                "new.cwasm",
                "new.cwasm.sha256"
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
