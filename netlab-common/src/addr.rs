//! Addresses as the datapath keeps them, shared by every table that holds one.

/// An IPv6 address as the datapath keeps it: the four 32-bit words of `in6_addr`, each
/// in network byte order (as read from the packet).
pub type Addr6 = [u32; 4];
