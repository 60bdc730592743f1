//! A network namespace joined to this one by a veth pair with private addresses, for a
//! process that must be reached at an address other than loopback, as a pod is in a cluster
//! (the end-to-end tests run the webhook in one, behind the chart's Service).
//!
//! Needs root (`ip netns add`); [`NetworkNamespace::create`] panics with the failing command
//! and its error otherwise: an end-to-end test never skips. Each namespace gets a name and a
//! `/30` of its own (from this process's id and a counter), so parallel tests never share one;
//! dropping the guard deletes the veth pair and the namespace.
//!
//! ```no_run
//! use provenance_gate_testkit::netns::NetworkNamespace;
//!
//! let netns = NetworkNamespace::create();
//! // Reaches the host at netns.host_ip(); the host reaches it at netns.inner_ip().
//! let mut command = netns.command("env");
//! # let _ = command.status();
//! ```

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Subnets are `/30`s taken from `10.128.0.0/14`: far from the API server's service range
/// (`10.0.0.0/24`) and from what a machine usually routes.
const SUBNET_BASE: u32 = u32::from_be_bytes([10, 128, 0, 0]);
const SUBNETS: u32 = 1 << 16;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A network namespace and the veth pair into it; both removed on drop.
#[derive(Debug)]
pub struct NetworkNamespace {
    name: String,
    host_interface: String,
    host_ip: Ipv4Addr,
    inner_ip: Ipv4Addr,
}

impl NetworkNamespace {
    /// Creates the namespace, the veth pair (host end `host_ip()/30`, inner end
    /// `inner_ip()/30`) and brings up both ends and the namespace's loopback.
    pub fn create() -> NetworkNamespace {
        let pid = std::process::id();
        let taken = assigned_addresses();
        let (counter, subnet) = loop {
            let counter = NEXT.fetch_add(1, Ordering::Relaxed);
            assert!(counter < 1000, "no free /30 for a test network namespace");
            let index = (pid.wrapping_mul(64).wrapping_add(counter)) % SUBNETS;
            let subnet = SUBNET_BASE + index * 4;
            if !taken.iter().any(|ip| u32::from(*ip) & !3 == subnet) {
                break (counter, subnet);
            }
        };
        // Interface names are at most 15 bytes.
        let host_interface = format!("pg{pid}x{counter}h");
        let inner_interface = format!("pg{pid}x{counter}n");
        let netns = NetworkNamespace {
            name: format!("provenance-gate-test-{pid}-{counter}"),
            host_interface,
            host_ip: Ipv4Addr::from(subnet + 1),
            inner_ip: Ipv4Addr::from(subnet + 2),
        };
        // A namespace of the same name left by a killed process of the same id.
        let _ = Command::new("ip")
            .args(["netns", "delete", &netns.name])
            .output();
        let name = netns.name.as_str();
        let host = netns.host_interface.as_str();
        let host_cidr = format!("{}/30", netns.host_ip);
        let inner_cidr = format!("{}/30", netns.inner_ip);
        ip(&["netns", "add", name]);
        let steps: [&[&str]; 8] = [
            &[
                "link",
                "add",
                host,
                "type",
                "veth",
                "peer",
                "name",
                &inner_interface,
            ],
            &["link", "set", &inner_interface, "netns", name],
            &["addr", "add", &host_cidr, "dev", host],
            &["link", "set", host, "up"],
            &[
                "-n",
                name,
                "addr",
                "add",
                &inner_cidr,
                "dev",
                &inner_interface,
            ],
            &["-n", name, "link", "set", &inner_interface, "up"],
            &["-n", name, "link", "set", "lo", "up"],
            &["-n", name, "link", "show", &inner_interface],
        ];
        for step in steps {
            ip(step);
        }
        netns
    }

    /// The namespace's name (`ip netns exec NAME ...`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This side's end of the veth pair: where a process in the namespace reaches the host.
    pub fn host_ip(&self) -> Ipv4Addr {
        self.host_ip
    }

    /// The namespace's end of the veth pair: where the host reaches a process inside.
    pub fn inner_ip(&self) -> Ipv4Addr {
        self.inner_ip
    }

    /// `program` run inside the namespace (`ip netns exec` execs it, so the child's id and
    /// signals are the program's own).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }
}

impl Drop for NetworkNamespace {
    fn drop(&mut self) {
        // Deleting one end of a veth pair deletes the other.
        let _ = Command::new("ip")
            .args(["link", "delete", &self.host_interface])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .output();
    }
}

/// Runs `ip ARGS`; panics with the command and its error when it fails.
fn ip(args: &[&str]) {
    let output = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "the end-to-end tests need `ip` (iproute2) to create a network namespace: {error}"
            )
        });
    assert!(
        output.status.success(),
        "`ip {}` failed ({}): {} (network namespaces need root, or CAP_NET_ADMIN and \
         CAP_SYS_ADMIN)",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
}

/// Every IPv4 address of this network namespace, so that a new subnet overlaps none.
fn assigned_addresses() -> Vec<Ipv4Addr> {
    let output = Command::new("ip")
        .args(["-4", "-o", "addr", "show"])
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
        .unwrap_or_default();
    output
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|word| *word == "inet")?;
            words.next()?.split('/').next()?.parse().ok()
        })
        .collect()
}
