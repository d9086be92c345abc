//! `netlab conntrack [--json] [--flush]`: the eBPF datapath's flows.

use crate::{
    datapath::{self, Flow},
    error::Result,
    ops::Session,
};

#[derive(clap::Args)]
pub struct Args {
    /// Print JSON (the format is stable; see the README).
    #[arg(long)]
    pub json: bool,
    /// Delete every entry instead of listing them.
    #[arg(long)]
    pub flush: bool,
}

pub fn run(lab: &str, args: Args) -> Result<()> {
    let s = Session::open(lab)?;
    let dp = s.datapath();
    // Where the kernel's table is: the lab host's namespace (a sandbox's own).
    let why = match s.state.sandbox {
        true => format!(
            "its conntrack is the kernel's, in the lab host's namespace: `netlab exec --lab {} host -- conntrack -L` (or `-F`)",
            s.state.name
        ),
        false => "its conntrack is the kernel's: `conntrack -L` (or `-F`) in this namespace".into(),
    };
    let dp = datapath::inspection(&*dp, &s.state, &why)?;
    if args.flush {
        let n = dp.flush(&s.state)?;
        if args.json {
            println!("{}", serde_json::json!({ "flushed": n }));
        } else {
            println!("flushed {n} flows");
        }
        return Ok(());
    }
    let flows = dp.flows(&s.state)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&flows).expect("json"));
        return Ok(());
    }
    let rows: Vec<[String; 9]> = flows
        .iter()
        .map(|f| {
            [
                f.proto.to_string(),
                f.state.to_string(),
                at(f.original.src, f.original.sport),
                at(f.original.dst, f.original.dport),
                translated(f),
                format!("{}s", f.age_secs),
                format!("{}s", f.expires_secs),
                format!("{}/{}", f.packets, f.reply_packets),
                format!("{}/{}", f.bytes, f.reply_bytes),
            ]
        })
        .collect();
    let header = [
        "PROTO",
        "STATE",
        "SOURCE",
        "DESTINATION",
        "TRANSLATED",
        "AGE",
        "EXPIRES",
        "PKTS OUT/IN",
        "BYTES OUT/IN",
    ];
    // Each column as wide as its widest cell (a hairpin's TRANSLATED is two addresses).
    let mut widths = [5, 11, 22, 22, 22, 6, 7, 14, 14];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: [&str; 9]| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i > 0 {
                out.push(' ');
            }
            // Text to the left, figures to the right.
            if i < 5 {
                out.push_str(&format!("{cell:<w$}"));
            } else {
                out.push_str(&format!("{cell:>w$}"));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header);
    for row in &rows {
        line(std::array::from_fn(|i| row[i].as_str()));
    }
    Ok(())
}

/// `ADDR:PORT`, an IPv6 address in brackets.
fn at(addr: std::net::IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(addr, port).to_string()
}

/// What the translation changed: the source (`ADDR:PORT`), the destination
/// (`-> ADDR:PORT`), or both (hairpin). For ICMP echo both "ports" are the echo
/// identifier, which a masquerade changes for both: its destination changed only if its
/// address did.
fn translated(f: &Flow) -> String {
    let (o, t) = (&f.original, &f.translated);
    let src = (t.src, t.sport) != (o.src, o.sport);
    let dst = if f.proto.starts_with("icmp") {
        t.dst != o.dst
    } else {
        (t.dst, t.dport) != (o.dst, o.dport)
    };
    match (src, dst) {
        (true, true) => format!("{} -> {}", at(t.src, t.sport), at(t.dst, t.dport)),
        (true, false) => at(t.src, t.sport),
        (false, true) => format!("-> {}", at(t.dst, t.dport)),
        (false, false) => "-".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::inspect::Endpoint;

    fn flow(proto: &'static str, o: (&str, u16, &str, u16), t: (&str, u16, &str, u16)) -> Flow {
        let at = |(src, sport, dst, dport): (&str, u16, &str, u16)| Endpoint {
            src: src.parse().unwrap(),
            sport,
            dst: dst.parse().unwrap(),
            dport,
        };
        Flow {
            proto,
            table: "pending",
            state: "-",
            original: at(o),
            translated: at(t),
            age_secs: 0,
            idle_secs: 0,
            expires_secs: 30,
            packets: 1,
            bytes: 98,
            reply_packets: 1,
            reply_bytes: 98,
        }
    }

    #[test]
    fn the_translation_shows_what_changed() {
        let ping = flow(
            "icmp",
            ("172.18.0.2", 7, "203.0.113.1", 7),
            ("198.51.100.2", 20001, "203.0.113.1", 20001),
        );
        assert_eq!(translated(&ping), "198.51.100.2:20001");
        let hairpin = flow(
            "tcp",
            ("172.18.0.2", 40000, "198.51.100.2", 8080),
            ("172.18.0.1", 20002, "172.18.0.3", 80),
        );
        assert_eq!(translated(&hairpin), "172.18.0.1:20002 -> 172.18.0.3:80");
        let published = flow(
            "udp",
            ("203.0.113.1", 5000, "198.51.100.2", 5353),
            ("203.0.113.1", 5000, "172.18.0.3", 53),
        );
        assert_eq!(translated(&published), "-> 172.18.0.3:53");
    }
}
