//! A cpio archive in the "newc" format, the one the kernel unpacks as an initramfs.
//! Written here rather than by cpio(1) so that the guest's tree is built from a list
//! (host files under guest paths) without copying it into a folder first.
//!
//! Uncompressed on purpose: under TCG the guest would spend seconds inflating it.

use std::io::{self, Write};

const TRAILER: &str = "TRAILER!!!";

pub struct Writer<W: Write> {
    out: W,
    inode: u32,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Self {
        Writer { out, inode: 0 }
    }

    pub fn dir(&mut self, path: &str) -> io::Result<()> {
        self.entry(path, 0o040_755, b"")
    }

    pub fn file(&mut self, path: &str, executable: bool, data: &[u8]) -> io::Result<()> {
        let mode = if executable { 0o100_755 } else { 0o100_644 };
        self.entry(path, mode, data)
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        self.entry(path, 0o120_777, target.as_bytes())
    }

    /// Ends the archive and hands back the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.entry(TRAILER, 0, b"")?;
        self.out.flush()?;
        Ok(self.out)
    }

    /// One header, the NUL-terminated name and the data, each padded to 4 bytes. Paths
    /// are relative (`usr/bin/ip`), as the kernel expects.
    fn entry(&mut self, path: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        let name = path.trim_start_matches('/');
        self.inode += 1;
        let fields = [
            self.inode,
            mode,
            0, // uid
            0, // gid
            if mode & 0o170_000 == 0o040_000 { 2 } else { 1 },
            0, // mtime: the same archive for the same files
            u32::try_from(data.len()).map_err(|_| io::Error::other("file over 4 GiB"))?,
            0,
            0,
            0,
            0,
            u32::try_from(name.len() + 1).expect("short name"),
            0, // check
        ];
        let mut header = String::from("070701");
        for f in fields {
            header.push_str(&format!("{f:08x}"));
        }
        self.out.write_all(header.as_bytes())?;
        self.out.write_all(name.as_bytes())?;
        self.out.write_all(&[0])?;
        self.pad(header.len() + name.len() + 1)?;
        self.out.write_all(data)?;
        self.pad(data.len())
    }

    fn pad(&mut self, len: usize) -> io::Result<()> {
        let zeros = [0u8; 3];
        self.out.write_all(&zeros[..(4 - len % 4) % 4])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_aligned_and_end_with_the_trailer() {
        let mut w = Writer::new(Vec::new());
        w.dir("/etc").unwrap();
        w.file("etc/hostname", false, b"vm\n").unwrap();
        w.symlink("bin", "usr/bin").unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len() % 4, 0);
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.starts_with("070701"));
        assert!(text.contains("etc/hostname\0"));
        assert!(text.contains("vm\n"));
        assert!(text.contains("TRAILER!!!\0"));
        // The file's size field (the 7th) is 3.
        let second = text.find("etc/hostname").unwrap() - 110;
        assert_eq!(&text[second + 6 + 6 * 8..second + 6 + 7 * 8], "00000003");
    }
}
