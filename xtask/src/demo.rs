//! `cargo xtask demo`: the seed's walkthrough on a sandbox lab, narrated.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread::sleep,
    time::Duration,
};

use anyhow::{Result, bail};

const LAB: &str = "demo";

struct Demo<'a> {
    bin: &'a Path,
    /// A directory of the demo's own for the servers' logs (made new, mode 0700, so
    /// that no one can have root write through a link planted at a known name).
    logs: PathBuf,
}

impl Demo<'_> {
    fn netlab(&self, args: &[&str]) -> Command {
        let mut c = Command::new(self.bin);
        c.arg("--lab").arg(LAB).args(args);
        c
    }

    /// Shows a command the way a user would type it, then runs it.
    fn step(&self, args: &[&str]) -> Result<()> {
        println!("\n$ netlab {}", args.join(" "));
        let status = self.netlab(args).status()?;
        if !status.success() {
            bail!("`netlab {}` failed with {status}", args.join(" "));
        }
        Ok(())
    }

    fn background(&self, args: &[&str], log: &Path) -> Result<Child> {
        println!("\n$ netlab {} &", args.join(" "));
        let out = std::fs::File::create(log)?;
        Ok(self
            .netlab(args)
            .stdout(out.try_clone()?)
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()?)
    }
}

fn say(text: &str) {
    println!("\n# {text}");
}

pub fn run(bin: &Path) -> Result<()> {
    let logs = crate::tmp::private_dir("demo")?;
    let demo = Demo { bin, logs };
    let result = demo_lab(&demo);
    let _ = std::fs::remove_dir_all(&demo.logs);
    result
}

fn demo_lab(demo: &Demo) -> Result<()> {
    // A lab of this name is never taken down here: it may be the user's (a lab on the
    // machine's own network, a runtime's network), not one an interrupted demo left;
    // one half made or unreadable, whose `status` fails, exists too (its state).
    if std::path::Path::new("/run/netlab").join(LAB).exists() {
        bail!(
            "a lab named {LAB} exists already (yours, or one an interrupted demo left): see `netlab --lab {LAB} status`, and take it down with `netlab --lab {LAB} down` if it is the demo's"
        );
    }
    say("A sandbox lab: its own host and wan namespaces, a bridge, and the eBPF datapath.");
    // Only a lab this `up` made is taken down (a failed `up` takes back what it made).
    demo.step(&["up", "--sandbox"])?;
    let result = walkthrough(demo);
    say("Tear everything down: namespaces, links, pins and state.");
    let down = demo.step(&["down"]);
    result.and(down)
}

fn walkthrough(demo: &Demo) -> Result<()> {
    say("Two containers on the bridge (the seed's 'Interconnecting containers' section).");
    demo.step(&["run", "a"])?;
    demo.step(&["run", "b"])?;
    demo.step(&["status"])?;
    say("a reaches b across the bridge.");
    demo.step(&["exec", "a", "--", "ping", "-c", "2", "172.18.0.3"])?;

    say("A web server in 'the internet' (the wan namespace, 203.0.113.1).");
    let log = demo.logs.join("http.log");
    let mut server = demo.background(
        &[
            "exec",
            "wan",
            "--",
            "python3",
            "-u",
            "-m",
            "http.server",
            "80",
            "--bind",
            "203.0.113.1",
        ],
        &log,
    )?;
    sleep(Duration::from_millis(800));
    say("Container a fetches a page through the eBPF masquerade (no iptables rule anywhere).");
    let fetched = demo.step(&[
        "exec",
        "a",
        "--",
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "HTTP %{http_code}\\n",
        "http://203.0.113.1/",
    ]);
    sleep(Duration::from_millis(300));
    let _ = server.kill();
    let _ = server.wait();
    fetched?;
    say("What the server saw: the uplink address, not the container's.");
    for line in std::fs::read_to_string(&log)?
        .lines()
        .filter(|l| l.contains("GET"))
    {
        println!("{line}");
    }
    say("The flows in the datapath's conntrack, and its counters.");
    demo.step(&["conntrack"])?;
    demo.step(&["stats"])?;
    publishing(demo)?;
    say("The lab host's netfilter is empty: all the NAT above was eBPF.");
    demo.step(&["exec", "host", "--", "iptables", "-t", "nat", "-S"])?;
    demo.step(&["exec", "host", "--", "nft", "list", "ruleset"])?;
    Ok(())
}

/// The seed's "Letting the outside world reach out to containers", on a running container.
fn publishing(demo: &Demo) -> Result<()> {
    say("A web server in container b, not published yet.");
    let log = demo.logs.join("web.log");
    let mut server = demo.background(
        &[
            "exec",
            "b",
            "--",
            "python3",
            "-u",
            "-m",
            "http.server",
            "8000",
        ],
        &log,
    )?;
    sleep(Duration::from_millis(800));
    let result = (|| -> Result<()> {
        say("Publish b's port 8000 as the host's 8080, while b runs (Docker cannot).");
        demo.step(&["publish", "b", "8080:8000"])?;
        let get = |from: &str, url: &str| -> Result<()> {
            demo.step(&[
                "exec",
                from,
                "--",
                "curl",
                "-s",
                "-m",
                "3",
                "-o",
                "/dev/null",
                "-w",
                "HTTP %{http_code}\\n",
                url,
            ])
        };
        say("From the outside world (wan):");
        get("wan", "http://198.51.100.2:8080/")?;
        say("From the lab's host itself, by its address and by localhost:");
        get("host", "http://198.51.100.2:8080/")?;
        get("host", "http://127.0.0.1:8080/")?;
        say("From another container, through the host's address (hairpin):");
        get("a", "http://198.51.100.2:8080/")?;
        say("The mapping, with its counters:");
        demo.step(&["ports"])?;
        say("Unpublish it: the port closes at once (curl gets no answer, HTTP 000).");
        demo.step(&["unpublish", "b", "8080:8000"])?;
        let closed = demo
            .netlab(&[
                "exec",
                "wan",
                "--",
                "curl",
                "-s",
                "-m",
                "2",
                "-o",
                "/dev/null",
                "-w",
                "HTTP %{http_code}\\n",
                "http://198.51.100.2:8080/",
            ])
            .status()?;
        println!("(curl exited with {closed})");
        if closed.success() {
            bail!("port 8080 still answered after `netlab unpublish`");
        }
        Ok(())
    })();
    let _ = server.kill();
    let _ = server.wait();
    say(
        "What b's server logged: the outside client's real address, then the host and hairpin requests.",
    );
    for line in std::fs::read_to_string(&log)?
        .lines()
        .filter(|l| l.contains("GET"))
    {
        println!("{line}");
    }
    result
}
