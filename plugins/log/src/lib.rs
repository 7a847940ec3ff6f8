//! The log service: `POST /log` appends one line to `services.log` in the
//! directory the host grants (`host --dir`).
//!
//! Each line is `TIMESTAMP SOURCE: MESSAGE`, where SOURCE is the calling
//! service as the host names it in `x-log-source`. Line breaks inside the
//! message are escaped so that one request is always one line.
//!
//! A line is written whole or not at all, with one append through the host
//! (`files.append`), which keeps the file open across requests and writes
//! each append at once: lines of concurrent requests never interleave. A
//! log line is at most 64 KiB; a longer one is refused (413) before
//! anything is written.

// Lean: no standard library, so its component imports one WASI interface,
// the wall clock, instead of fourteen (docs/plugins.md, "Lean Rust
// plugins").
#![no_std]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use sparrow_plugin::{Description, Guest, Request, Response, files};

/// The one WASI interface the log needs, declared here: the SDK's world is
/// Sparrow's contract only. The host's WASI provides it (with more than
/// `now`, which a component may import a part of).
mod clock {
    wit_bindgen::generate!({
        inline: "
            package sparrow:log;

            world clock {
                import wasi:clocks/wall-clock@0.2.0;
            }

            package wasi:clocks@0.2.0 {
                interface wall-clock {
                    record datetime {
                        seconds: u64,
                        nanoseconds: u32,
                    }
                    now: func() -> datetime;
                }
            }
        ",
        world: "sparrow:log/clock",
        generate_all,
    });
}

const LOG_FILE: &str = "services.log";

/// The longest line written, newline included.
const MAX_LINE: usize = 64 * 1024;

struct Log;

impl Guest for Log {
    fn describe() -> Description {
        Description {
            name: "log".into(),
            requires: Vec::new(),
        }
    }

    fn handle_request(request: Request) -> Response {
        if request.path_only() != "/log" {
            return Response::text(404, "not found: the log service answers POST /log");
        }
        if request.method != "POST" {
            return Response::text(405, "method not allowed: use POST /log");
        }
        if request.body.is_empty() {
            return Response::text(400, "empty body: nothing to log");
        }
        let source = request.header("x-log-source").unwrap_or("-");
        let line = format!(
            "{} {}: {}\n",
            timestamp(),
            escape(source),
            escape(&String::from_utf8_lossy(&request.body))
        );
        if line.len() > MAX_LINE {
            return Response::text(
                413,
                format!(
                    "line too long: {} bytes, at most {MAX_LINE} with timestamp and source",
                    line.len()
                ),
            );
        }
        match files::append(LOG_FILE, line.as_bytes()) {
            Ok(()) => Response::empty(200),
            Err(e) => Response::text(500, format!("cannot write {LOG_FILE}: {e}")),
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

/// UTC time as `YYYY-MM-DDTHH:MM:SS.mmmZ`, without a date crate.
fn timestamp() -> String {
    let now = clock::wasi::clocks::wall_clock::now();
    let secs = now.seconds;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.nanoseconds / 1_000_000
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// well-known algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

sparrow_plugin::export!(Log);
