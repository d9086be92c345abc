//! The specification versions netlab-cni speaks, and the VERSION verb.

use serde_json::json;

use super::error::{CniError, CniResult, code};

/// Oldest first. 0.4.0 results differ only in `ips[].version`.
pub const SUPPORTED: [&str; 3] = ["0.4.0", "1.0.0", "1.1.0"];

/// The newest version, for answers to requests that name none netlab speaks.
pub const LATEST: &str = "1.1.0";

pub fn check(version: &str) -> CniResult<()> {
    if SUPPORTED.contains(&version) {
        return Ok(());
    }
    Err(CniError::new(
        code::INCOMPATIBLE_VERSION,
        format!(
            "CNI version {version:?} is not supported: netlab-cni speaks {}",
            SUPPORTED.join(", ")
        ),
    ))
}

/// Refuses STATUS and GC (`verb`) for a configuration older than 1.1.0, the version
/// that brought them, as the reference plugins' library does (code 1): a runtime sends
/// them only for a 1.1.0 configuration.
pub fn allows_status_and_gc(version: &str, verb: &str) -> CniResult<()> {
    if version == "1.1.0" {
        return Ok(());
    }
    Err(CniError::new(
        code::INCOMPATIBLE_VERSION,
        format!("config version {version} does not allow {verb}: it came with CNI 1.1.0"),
    ))
}

/// The version a request asks for, if netlab-cni speaks it: answers (errors included)
/// are in it, others in the newest.
pub fn answer_in(stdin: &str) -> String {
    serde_json::from_str::<serde_json::Value>(stdin)
        .ok()
        .and_then(|v| v["cniVersion"].as_str().map(str::to_string))
        .filter(|v| SUPPORTED.contains(&v.as_str()))
        .unwrap_or_else(|| LATEST.to_string())
}

/// VERSION: the supported versions, whatever the request's (discovery must not fail).
pub fn run(stdin: &str) -> String {
    json!({
        "cniVersion": answer_in(stdin),
        "supportedVersions": SUPPORTED,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert!(check("1.0.0").is_ok());
        assert_eq!(check("0.3.1").unwrap_err().code, code::INCOMPATIBLE_VERSION);
        assert!(allows_status_and_gc("1.1.0", "GC").is_ok());
        let e = allows_status_and_gc("1.0.0", "STATUS").unwrap_err();
        assert_eq!(e.code, code::INCOMPATIBLE_VERSION);
        let v: serde_json::Value = serde_json::from_str(&run(r#"{"cniVersion":"1.0.0"}"#)).unwrap();
        assert_eq!(v["cniVersion"], "1.0.0");
        assert_eq!(v["supportedVersions"], json!(["0.4.0", "1.0.0", "1.1.0"]));
        let v: serde_json::Value = serde_json::from_str(&run("")).unwrap();
        assert_eq!(v["cniVersion"], LATEST);
    }
}
