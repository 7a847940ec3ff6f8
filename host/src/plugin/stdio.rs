//! The plugin's stdout and stderr, turned into lines of the host's log tagged
//! with the service name, so that a plugin's `println!` or a panic message
//! shows up next to the request it belongs to: stdout at INFO, stderr (where
//! panics and errors go) at WARN.
//!
//! Rust's panic hook inside a plugin always adds "run with
//! `RUST_BACKTRACE=1`", which the plugin cannot act on (it sees no
//! environment): that line is dropped. The trap itself is logged by the
//! server with the plugin's own frames.
//!
//! The WASI stream is ours ([`StdoutStream::p2_stream`]) and takes each
//! write at once, in the guest's call: wasmtime's default adapter hands
//! writes to a task of its own, which would log them outside the request's
//! span, without its trace id, and after the request's other lines.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// What one write may hand over (the guest asks with `check-write`); as
/// wasmtime's own streams allow.
const WRITE_PERMIT: usize = 64 * 1024;

/// A line longer than this is logged in pieces rather than buffered without
/// bound.
const MAX_LINE: usize = 8 * 1024;

/// How the hint of Rust's panic hook starts.
const PANIC_HOOK_HINT: &str = "note: run with `RUST_BACKTRACE=1`";

/// One of the plugin's output streams.
#[derive(Clone)]
pub struct PluginOutput {
    service: Arc<str>,
    stream: &'static str,
    is_stderr: bool,
}

impl PluginOutput {
    pub fn stdout(service: Arc<str>) -> Self {
        PluginOutput {
            service,
            stream: "stdout",
            is_stderr: false,
        }
    }

    pub fn stderr(service: Arc<str>) -> Self {
        PluginOutput {
            service,
            stream: "stderr",
            is_stderr: true,
        }
    }
}

impl IsTerminal for PluginOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for PluginOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.writer())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.writer())
    }
}

impl PluginOutput {
    fn writer(&self) -> LineWriter {
        LineWriter {
            output: self.clone(),
            pending: Vec::new(),
        }
    }
}

/// Collects bytes into lines and logs each complete one.
struct LineWriter {
    output: PluginOutput,
    pending: Vec<u8>,
}

impl LineWriter {
    /// Logs every complete line of `bytes`, keeping the rest for later.
    fn take(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            self.emit(&line[..end]);
        }
        if self.pending.len() >= MAX_LINE {
            let line = std::mem::take(&mut self.pending);
            self.emit(&line);
        }
    }

    fn emit(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches('\r');
        let (service, stream) = (&*self.output.service, self.output.stream);
        if self.output.is_stderr {
            if line.starts_with(PANIC_HOOK_HINT) {
                return;
            }
            tracing::warn!(target: "plugin", service, stream, "{line}");
        } else {
            tracing::info!(target: "plugin", service, stream, "{line}");
        }
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.take(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl OutputStream for LineWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.take(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LineWriter {
    /// Always ready: a write is logged at once.
    async fn ready(&mut self) {}
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            self.emit(&self.pending);
        }
    }
}
