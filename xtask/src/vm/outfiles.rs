//! Files out of a guest: the guest has no shared folder (the 6.12 cloud kernel has no
//! 9p), so its init prints what the command left in `/root/out` on the console —
//! `netlab-vm-file NONCE SIZE NAME`, the file in base64, `netlab-vm-file-end NONCE` —
//! and the runner takes those lines off the console and writes the files
//! (`cargo xtask vm --out DIR`). A file whose decoded size is not the one announced (a
//! kernel message in the middle of it) is reported, not written.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// Collects the files from the console lines, with the boot's nonce (no output of
/// the command can pose as a file).
pub struct Collector {
    start: String,
    end: String,
    /// The file being read: its name, announced size and base64 so far.
    open: Option<(String, usize, String)>,
    pub files: Vec<(String, Vec<u8>)>,
    pub broken: Vec<String>,
}

impl Collector {
    pub fn new(nonce: &str) -> Collector {
        Collector {
            start: format!("netlab-vm-file {nonce} "),
            end: format!("netlab-vm-file-end {nonce}"),
            open: None,
            files: Vec::new(),
            broken: Vec::new(),
        }
    }

    /// Whether `line` was part of a file (and so not the command's output).
    pub fn take(&mut self, line: &str) -> bool {
        if let Some(rest) = line.strip_prefix(&self.start) {
            let mut it = rest.trim().splitn(2, ' ');
            let size = it.next().and_then(|s| s.parse().ok());
            match (size, it.next()) {
                (Some(size), Some(name)) => {
                    self.open = Some((name.to_string(), size, String::new()))
                }
                _ => self.broken.push(format!("a bad file header: {rest}")),
            }
            return true;
        }
        if line.trim_end() == self.end {
            if let Some((name, size, text)) = self.open.take() {
                match decode(&text) {
                    Some(bytes) if bytes.len() == size => self.files.push((name, bytes)),
                    Some(bytes) => self.broken.push(format!(
                        "{name}: {} bytes came out of {size} (a console message in it?)",
                        bytes.len()
                    )),
                    None => self
                        .broken
                        .push(format!("{name}: not base64 (a console message in it?)")),
                }
            }
            return true;
        }
        match &mut self.open {
            Some((_, _, text)) => {
                text.push_str(line.trim());
                true
            }
            None => false,
        }
    }

    /// Writes the files into `dir` (made if missing); fails if any came out broken or
    /// cut off (the guest gone before its end line).
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        for (name, bytes) in &self.files {
            // A name is the guest's basename: no directory parts.
            let name = Path::new(name)
                .file_name()
                .context("a file without a name")?;
            let path = dir.join(name);
            std::fs::write(&path, bytes).with_context(|| format!("write {}", path.display()))?;
            println!("    copied out of the guest: {}", path.display());
        }
        let mut broken = self.broken.clone();
        if let Some((name, ..)) = &self.open {
            broken.push(format!(
                "{name}: cut off (the guest stopped before its end)"
            ));
        }
        if !broken.is_empty() {
            bail!("files out of the guest: {}", broken.join("; "));
        }
        Ok(())
    }
}

/// Standard base64 (with padding, whitespace already gone); `None` if it is not.
fn decode(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (i, quad) in bytes.chunks(4).enumerate() {
        let last = i == bytes.len() / 4 - 1;
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &quad[..4 - pad] {
            n = (n << 6) | value(c)?;
        }
        n <<= 6 * pad as u32;
        out.extend_from_slice(&n.to_be_bytes()[1..4 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes() {
        assert_eq!(decode("").unwrap(), b"");
        assert_eq!(decode("aGk=").unwrap(), b"hi");
        assert_eq!(decode("aGkh").unwrap(), b"hi!");
        assert_eq!(decode("aA==").unwrap(), b"h");
        assert_eq!(
            decode("eyJhIjogWzEsIDJdfQo=").unwrap(),
            b"{\"a\": [1, 2]}\n"
        );
        for bad in ["aGk", "a===", "aA==aGkh", "[  1.2"] {
            assert!(decode(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn files_are_taken_off_the_console() {
        let mut c = Collector::new("n0");
        let console = [
            "the command's own line",
            "netlab-vm-file n0 3 bench.json",
            "aGkh",
            "netlab-vm-file-end n0",
            "netlab-vm-file other 2 forged.json",
            "netlab-vm-file n0 5 short.json",
            "aGkh",
            "netlab-vm-file-end n0",
        ];
        let shown: Vec<&str> = console.into_iter().filter(|l| !c.take(l)).collect();
        assert_eq!(
            shown,
            [
                "the command's own line",
                "netlab-vm-file other 2 forged.json"
            ]
        );
        assert_eq!(c.files, [("bench.json".to_string(), b"hi!".to_vec())]);
        assert_eq!(c.broken.len(), 1, "{:?}", c.broken);
        assert!(c.broken[0].contains("short.json: 3 bytes came out of 5"));
    }

    #[test]
    fn a_file_cut_off_is_not_written() {
        let mut c = Collector::new("n0");
        for l in ["netlab-vm-file n0 3 cut.json", "aGkh"] {
            assert!(c.take(l));
        }
        let dir = crate::tmp::private_dir("outfiles").unwrap();
        let e = c.write(&dir).unwrap_err().to_string();
        assert!(e.contains("cut.json: cut off"), "{e}");
        assert!(!dir.join("cut.json").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
