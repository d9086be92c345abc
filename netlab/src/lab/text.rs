//! Short ASCII text formatted on the stack: the port specs and published-port lines
//! that every command writes by the ten thousand (`state.json` of a lab with 10,000
//! published ports). Through `core::fmt` and a `String` each, they were most of
//! `netlab unpublish`'s time.

use std::net::Ipv4Addr;

/// Up to `N` bytes of ASCII text.
pub struct Text<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Default for Text<N> {
    fn default() -> Self {
        Self {
            buf: [0; N],
            len: 0,
        }
    }
}

impl<const N: usize> Text<N> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `s`; the caller sizes `N` for the longest text it writes.
    pub fn push(&mut self, s: &[u8]) {
        self.buf[self.len..self.len + s.len()].copy_from_slice(s);
        self.len += s.len();
    }

    /// Appends `n` in decimal.
    pub fn num(&mut self, mut n: u32) {
        let mut digits = [0u8; 10];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }

    /// Appends `ip` in dotted decimal.
    pub fn ip(&mut self, ip: Ipv4Addr) {
        for (i, o) in ip.octets().into_iter().enumerate() {
            if i > 0 {
                self.push(b".");
            }
            self.num(o as u32);
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).expect("only ASCII is pushed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_addresses_as_std_writes_them() {
        let mut t = Text::<64>::new();
        for n in [0, 7, 10, 65535, u32::MAX] {
            t.num(n);
            t.push(b" ");
        }
        t.ip(Ipv4Addr::new(0, 10, 255, 1));
        assert_eq!(t.as_str(), "0 7 10 65535 4294967295 0.10.255.1");
    }
}
