//! The processes the benchmark starts, as it starts them: Sparrow's
//! binaries from `--bin-dir` on free loopback ports (the harness does the
//! starting), and the open-file limit the registry case needs.

use std::path::Path;

use harness::{Launch, Proc, ServiceSpec};

use crate::Settings;

/// A registry on a free port; `extra` arguments are appended.
pub fn registry(settings: &Settings, extra: &[&str]) -> anyhow::Result<Proc> {
    Launch::registry(settings.artifacts.binary("registry")?, "127.0.0.1:0")
        .args(extra)
        .start()
}

/// A host for `plugin` on a free port, registered with `registry`; `extra`
/// arguments are appended.
pub fn host(
    settings: &Settings,
    plugin: &Path,
    registry: &Proc,
    extra: &[&str],
) -> anyhow::Result<Proc> {
    let program = settings.artifacts.binary("host")?;
    Launch::host(program, plugin, "127.0.0.1:0", &registry.url(""))
        .args(extra)
        .start()
}

/// One host process running `services` from a config file written to
/// `config`, registered with `registry`; `extra` arguments are appended.
/// Started once it listens on the first service's address.
pub fn multi_host(
    settings: &Settings,
    config: &Path,
    services: &[ServiceSpec],
    registry: &Proc,
    extra: &[&str],
) -> anyhow::Result<Proc> {
    std::fs::write(config, harness::config_text(services))?;
    Launch::new("multi-host", settings.artifacts.binary("host")?)
        .arg("--config")
        .arg(config)
        .args(["--registry", &registry.url("")])
        .args(extra)
        .start()
}

/// The plain hyper server the host is compared with (`bench
/// serve-baseline`), as a process of its own.
pub fn baseline(settings: &Settings) -> anyhow::Result<Proc> {
    Launch::new("baseline", &settings.self_exe)
        .args(["serve-baseline", "--addr", "127.0.0.1:0"])
        .start()
}

/// Three plain hyper processes in a row, two proxies in front of an echo
/// (see `baseline`): what a chain of three HTTP services costs here without
/// Sparrow. The front one comes first.
pub fn baseline_chain(settings: &Settings) -> anyhow::Result<[Proc; 3]> {
    let proxy = |next: &Proc| {
        Launch::new("baseline-proxy", &settings.self_exe)
            .args(["serve-baseline", "--addr", "127.0.0.1:0"])
            .args(["--next", &next.addr().to_string()])
            .start()
    };
    let leaf = baseline(settings)?;
    let middle = proxy(&leaf)?;
    let front = proxy(&middle)?;
    Ok([front, middle, leaf])
}

/// Raises the soft open-file limit to the hard one: the registry case keeps
/// one listener per fake instance. Children inherit the raised limit.
pub fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// The soft open-file limit now in force.
pub fn fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: as above.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}
