//! CNI error objects: `{"cniVersion", "code", "msg", "details"}` on stdout, with the
//! specification's well-known codes, and netlab's own from 100 up.

use serde_json::json;

use crate::error::Error;

/// The specification's well-known codes (SPEC.md, "Error codes"), and netlab's.
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENVIRONMENT: u32 = 4;
    pub const IO_FAILURE: u32 = 5;
    pub const DECODING_FAILURE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// STATUS: the plugin cannot take ADDs now.
    pub const NOT_AVAILABLE: u32 = 50;
    /// netlab could not do what was asked (the message says why).
    pub const FAILED: u32 = 100;
    /// netlab refused: a port, an address or the attachment is taken already.
    pub const CONFLICT: u32 = 101;
    /// CHECK found the attachment different from what ADD made.
    pub const CHECK_FAILED: u32 = 102;
}

#[derive(Debug)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: Option<String>,
}

pub type CniResult<T> = std::result::Result<T, CniError>;

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: None,
        }
    }

    /// The error object, as the runtime reads it.
    pub fn to_json(&self, version: &str) -> String {
        let mut v = json!({"cniVersion": version, "code": self.code, "msg": self.msg});
        if let Some(d) = &self.details {
            v["details"] = json!(d);
        }
        v.to_string()
    }
}

/// A failure of netlab's operations: 101 for a conflict with what exists, 11 for a
/// system call that said to try again, 100 otherwise; the message is netlab's line.
impl From<Error> for CniError {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::Conflict(_) => code::CONFLICT,
            Error::Io { source, .. }
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::ResourceBusy
                ) =>
            {
                code::TRY_AGAIN_LATER
            }
            _ => code::FAILED,
        };
        Self::new(code, e.to_string())
    }
}
