//! `files`: appends to the files of the service's granted directory, kept
//! open by the host across requests (`appends`).

use crate::appends::AppendError;
use crate::plugin::bindings::sparrow::service::files::Host;
use crate::plugin::context::RequestCtx;

impl Host for RequestCtx {
    /// Done in place: a local write to an open file, like the plugin's own
    /// WASI file operations (`allow_blocking_current_thread`).
    fn append(&mut self, name: String, data: Vec<u8>) -> Result<(), String> {
        let appended = match &self.env.appends {
            Some(appends) => appends.append(&name, &data),
            None => Err(AppendError::NoDirectory),
        };
        self.env.metrics.append(appended.is_ok());
        appended.map_err(|e| e.to_string())
    }
}
