//! The registry's live page: `GET /` answers one self-contained HTML page
//! (compiled into the binary, no build step), whose script polls
//! `GET /overview` every second and redraws the table in place, without a
//! reload.
//!
//! `/overview` is `GET /services` plus what the page cannot know by itself:
//! the registry's clock (so that "last heartbeat 3 s ago" does not depend
//! on the browser's clock) and the heartbeat interval (to tell a late
//! heartbeat). `GET /services` keeps the original's shape for the tools that
//! read it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde::Serialize;

use crate::store::table::Table;
use protocol::body::json_response;

pub const PAGE_PATH: &str = "/";
pub const OVERVIEW_PATH: &str = "/overview";

/// The page: markup, style and script in one file.
const PAGE: &str = include_str!("page.html");

/// What the page polls.
#[derive(Serialize)]
struct Overview<T: Serialize> {
    now_unix_ms: u64,
    heartbeat_interval_ms: u64,
    services: T,
}

/// `GET /`.
pub fn page() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(PAGE.as_bytes())));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // The page loads nothing from elsewhere and runs only its own script.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
        ),
    );
    response
}

/// `GET /overview`.
pub fn overview(table: &Table, heartbeat_interval: Duration) -> Response<Full<Bytes>> {
    let now_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut response = json_response(
        StatusCode::OK,
        &Overview {
            now_unix_ms,
            heartbeat_interval_ms: u64::try_from(heartbeat_interval.as_millis())
                .unwrap_or(u64::MAX),
            services: table.view(),
        },
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
