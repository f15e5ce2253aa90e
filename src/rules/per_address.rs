//! The per-address connection limit (`Config::max_per_address`), server-wide: how many
//! connections each client address holds, IPv6 addresses grouped by a prefix (/64 by
//! default), and the admission counters that say why clients were turned away.
//!
//! One table for all workers of both models, behind one lock taken twice per counted
//! connection (admit, close): never per message. An address leaves the table with its
//! last connection, and the table gives memory back as it empties, so a scan from many
//! addresses does not leave its size behind. This module must not touch a socket.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::listen::proxy_header::mask;
use crate::{Config, PeerAddr};

/// Connections per client address, and the counters of admission outcomes.
#[derive(Debug, Default)]
pub(crate) struct Admission {
    /// Open counted connections by address group.
    table: Mutex<HashMap<IpAddr, u32>>,
    /// Clients refused because their address held `max_per_address` connections.
    refused_per_address: AtomicU64,
    /// Clients from trusted sources closed for a bad, late or missing PROXY header.
    header_failed: AtomicU64,
    /// Clients admitted with a PROXY header.
    proxied: AtomicU64,
}

/// The group a client's address counts in, or `None` when it is not counted (no limit, or
/// not a TCP client).
pub(crate) fn group(config: &Config, peer: PeerAddr) -> Option<IpAddr> {
    config.max_per_address?;
    let ip = peer.as_tcp()?.ip().to_canonical();
    Some(match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(_) => mask(ip, config.per_address_v6_prefix),
    })
}

impl Admission {
    /// Count a connection from `group` if it holds fewer than `max`; false (counting
    /// nothing but the refusal) when it is full.
    pub(crate) fn try_take(&self, group: IpAddr, max: usize) -> bool {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let count = table.entry(group).or_insert(0);
        if (*count as usize) < max {
            *count += 1;
            return true;
        }
        drop(table);
        self.refused_per_address.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// A connection counted by `try_take` for `group` has closed.
    pub(crate) fn release(&self, group: IpAddr) {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = table.get_mut(&group) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                table.remove(&group);
                let (len, capacity) = (table.len(), table.capacity());
                if capacity > 64 && len < capacity / 4 {
                    table.shrink_to(len * 2);
                }
            }
        }
    }

    /// Count a client admitted with a PROXY header.
    pub(crate) fn count_proxied(&self) {
        self.proxied.fetch_add(1, Ordering::Relaxed);
    }

    /// Count a client closed for its PROXY header.
    pub(crate) fn count_header_failed(&self) {
        self.header_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Copy the counters into `stats`.
    pub(crate) fn fill(&self, stats: &mut crate::Stats) {
        stats.refused_per_address = self.refused_per_address.load(Ordering::Relaxed);
        stats.proxy_header_failed = self.header_failed.load(Ordering::Relaxed);
        stats.proxied = self.proxied.load(Ordering::Relaxed);
    }

    #[cfg(test)]
    /// Address groups in the table, and the bytes its allocation takes (an estimate from
    /// the capacity: one slot and one control byte each).
    pub(crate) fn footprint(&self) -> (usize, usize) {
        let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let slot = std::mem::size_of::<(IpAddr, u32)>() + 1;
        (table.len(), table.capacity() * slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_address_refuses_and_others_are_unaffected() {
        let admission = Admission::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(admission.try_take(a, 2));
        assert!(admission.try_take(a, 2));
        assert!(!admission.try_take(a, 2));
        assert!(admission.try_take(b, 2));
        admission.release(a);
        assert!(admission.try_take(a, 2));
        let mut stats = crate::Stats::default();
        admission.fill(&mut stats);
        assert_eq!(stats.refused_per_address, 1);
    }

    #[test]
    fn ipv6_clients_of_one_prefix_share_a_count() {
        let config = Config::default().with_max_per_address(Some(1));
        let one = PeerAddr::Tcp("[2001:db8:1:2::10]:5".parse().unwrap());
        let two = PeerAddr::Tcp("[2001:db8:1:2:ffff::1]:6".parse().unwrap());
        let other = PeerAddr::Tcp("[2001:db8:1:3::10]:5".parse().unwrap());
        assert_eq!(group(&config, one), group(&config, two));
        assert_ne!(group(&config, one), group(&config, other));
        let wider = config.with_per_address_v6_prefix(48);
        assert_eq!(group(&wider, one), group(&wider, other));
        assert_eq!(group(&Config::default(), one), None);
    }

    /// Prints the table's memory per address at 10,000 addresses (reported in the
    /// CHANGELOG), and checks that the table empties and shrinks.
    #[test]
    fn ten_thousand_addresses_cost_a_bounded_table_and_leave_nothing() {
        let admission = Admission::default();
        let addrs: Vec<IpAddr> = (0..10_000u32)
            .map(|i| IpAddr::V4((0x0a00_0000 + i).into()))
            .collect();
        for &addr in &addrs {
            assert!(admission.try_take(addr, 1));
        }
        let (len, bytes) = admission.footprint();
        assert_eq!(len, 10_000);
        println!(
            "per-address table: {len} addresses, {bytes} bytes, {:.1} bytes per address",
            bytes as f64 / len as f64
        );
        assert!(bytes / len <= 64, "{bytes} bytes for {len} addresses");
        for &addr in &addrs {
            admission.release(addr);
        }
        let (len, bytes) = admission.footprint();
        assert_eq!(len, 0);
        assert!(
            bytes < 64 * 32,
            "{bytes} bytes left after every address left"
        );
    }
}
