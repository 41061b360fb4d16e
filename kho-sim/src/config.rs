//! The shape of a simulated machine.

use kho_abi::{KhoScratch, Order, PAGE_SIZE, PhysAddr};

use crate::error::SimError;

/// Default RAM base: 4 GiB, non-zero and far from any virtual address.
pub const DEFAULT_RAM_BASE: PhysAddr = PhysAddr::new(0x1_0000_0000);
/// Default RAM size: 256 MiB.
pub const DEFAULT_RAM_SIZE: u64 = 256 << 20;
/// Default scratch area size: 16 MiB.
pub const DEFAULT_SCRATCH_SIZE: u64 = 16 << 20;
/// Default largest order: the kernel's `MAX_PAGE_ORDER`.
pub const DEFAULT_MAX_ORDER: u32 = 10;

/// The shape of a simulated machine: RAM, scratch areas, largest order and
/// NUMA nodes.
///
/// ```
/// use kho_sim::MachineConfig;
///
/// let cfg = MachineConfig::with_ram(kho_abi::PhysAddr::new(0x4000_0000), 64 << 20);
/// assert_eq!(cfg.scratch[0].addr, 0x4000_0000 + (32 << 20));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MachineConfig {
    /// PA of the first byte of RAM: non-zero, page aligned.
    pub ram_base: PhysAddr,
    /// RAM size in bytes, a non-zero multiple of the page size.
    pub ram_size: u64,
    /// Scratch areas (absolute PAs, page aligned, inside RAM, disjoint): the
    /// only memory the next kernel allocates from before `boot_done`, and
    /// memory the first kernel never allocates from.
    pub scratch: Vec<KhoScratch>,
    /// The largest order `alloc_pages` serves ([`PageAlloc::max_order`](kho_abi::PageAlloc::max_order)).
    pub max_order: Order,
    /// If `Some(n)`, RAM is split into NUMA nodes of `n` bytes from
    /// `ram_base` (`n` a non-zero multiple of the page size).
    pub numa_node_size: Option<u64>,
}

impl Default for MachineConfig {
    fn default() -> Self {
        MachineConfig::with_ram(DEFAULT_RAM_BASE, DEFAULT_RAM_SIZE)
    }
}

impl MachineConfig {
    /// The default configuration for RAM of `ram_size` bytes at `ram_base`:
    /// one scratch area of 16 MiB (or an eighth of RAM, page aligned, if RAM
    /// is smaller than 128 MiB) in the middle of RAM.
    pub fn with_ram(ram_base: PhysAddr, ram_size: u64) -> MachineConfig {
        let page = PAGE_SIZE as u64;
        let size = if ram_size >= 8 * DEFAULT_SCRATCH_SIZE { DEFAULT_SCRATCH_SIZE } else { ram_size / 8 / page * page };
        let half = ram_size / 2 / page * page;
        MachineConfig {
            ram_base,
            ram_size,
            scratch: vec![KhoScratch { addr: ram_base.as_u64().wrapping_add(half), size: size.max(page) }],
            max_order: Order::new(u64::from(DEFAULT_MAX_ORDER), "max_order").unwrap_or(Order::ZERO),
            numa_node_size: None,
        }
    }

    /// Checks the RAM and NUMA fields (not the scratch areas, which are
    /// checked against the RAM actually present by [`check_scratch`]).
    pub(crate) fn check_ram(&self) -> Result<(), SimError> {
        let page = PAGE_SIZE as u64;
        if self.ram_base.is_null() || !self.ram_base.is_page_aligned() {
            return Err(SimError::Config { what: "ram_base must be non-zero and page aligned" });
        }
        if self.ram_size == 0 || !self.ram_size.is_multiple_of(page) {
            return Err(SimError::Config { what: "ram_size must be a non-zero multiple of the page size" });
        }
        if self.ram_base.checked_add(self.ram_size).is_none() {
            return Err(SimError::Config { what: "ram_base + ram_size overflows" });
        }
        self.check_common()
    }

    /// Checks the fields every machine needs, fresh or loaded.
    pub(crate) fn check_common(&self) -> Result<(), SimError> {
        if let Some(n) = self.numa_node_size
            && (n == 0 || !n.is_multiple_of(PAGE_SIZE as u64))
        {
            return Err(SimError::Config { what: "numa_node_size must be a non-zero multiple of the page size" });
        }
        if self.max_order.get() > 40 {
            return Err(SimError::Config { what: "max_order above 40" });
        }
        Ok(())
    }
}

/// Checks the scratch areas against RAM (given as a predicate on PA ranges)
/// and returns them as sorted `(start, end)` PAs.
pub(crate) fn check_scratch(
    scratch: &[KhoScratch],
    in_ram: impl Fn(u64, u64) -> bool,
) -> Result<Vec<(u64, u64)>, SimError> {
    let mut areas = Vec::with_capacity(scratch.len());
    for s in scratch {
        let (start, end) = s
            .validate()
            .map_err(|_| SimError::Config { what: "scratch area must be page aligned, non-empty and not overflow" })?;
        if !in_ram(start.as_u64(), s.size) {
            return Err(SimError::Config { what: "scratch area not inside RAM" });
        }
        areas.push((start.as_u64(), end.as_u64()));
    }
    areas.sort_unstable();
    if areas.windows(2).any(|w| w[0].1 > w[1].0) {
        return Err(SimError::Config { what: "scratch areas overlap" });
    }
    Ok(areas)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_as_documented() {
        let c = MachineConfig::default();
        assert_eq!(c.ram_base, PhysAddr::new(0x1_0000_0000));
        assert_eq!(c.ram_size, 256 << 20);
        assert_eq!(c.scratch, vec![KhoScratch { addr: 0x1_0000_0000 + (128 << 20), size: 16 << 20 }]);
        assert_eq!(c.max_order.get(), 10);
        assert_eq!(c.numa_node_size, None);
        assert!(c.check_ram().is_ok());
    }

    #[test]
    fn small_ram_gets_small_scratch() {
        let c = MachineConfig::with_ram(PhysAddr::new(0x10_0000), 8 << 20);
        assert_eq!(c.scratch, vec![KhoScratch { addr: 0x10_0000 + (4 << 20), size: 1 << 20 }]);
    }

    #[test]
    fn bad_configs() {
        let bad = |f: fn(&mut MachineConfig)| {
            let mut c = MachineConfig::default();
            f(&mut c);
            c.check_ram().unwrap_err()
        };
        assert!(matches!(bad(|c| c.ram_base = PhysAddr::NULL), SimError::Config { .. }));
        assert!(matches!(bad(|c| c.ram_base = PhysAddr::new(0x1800)), SimError::Config { .. }));
        assert!(matches!(bad(|c| c.ram_size = 0), SimError::Config { .. }));
        assert!(matches!(bad(|c| c.ram_size = 0x1001), SimError::Config { .. }));
        assert!(matches!(bad(|c| c.ram_base = PhysAddr::new(u64::MAX - 0xfff)), SimError::Config { .. }));
        assert!(matches!(bad(|c| c.numa_node_size = Some(0)), SimError::Config { .. }));
        assert!(matches!(bad(|c| c.numa_node_size = Some(100)), SimError::Config { .. }));
        let in_ram = |pa: u64, len: u64| pa >= 0x1000 && pa + len <= 0x10_0000;
        let s = |addr, size| KhoScratch { addr, size };
        assert!(check_scratch(&[s(0x2000, 0x1000)], in_ram).is_ok());
        assert!(check_scratch(&[s(0x2000, 0)], in_ram).is_err());
        assert!(check_scratch(&[s(0x2800, 0x1000)], in_ram).is_err());
        assert!(check_scratch(&[s(0xff000, 0x2000)], in_ram).is_err());
        assert!(check_scratch(&[s(0x2000, 0x2000), s(0x3000, 0x1000)], in_ram).is_err());
        assert_eq!(
            check_scratch(&[s(0x5000, 0x1000), s(0x2000, 0x1000)], in_ram).unwrap(),
            vec![(0x2000, 0x3000), (0x5000, 0x6000)]
        );
    }
}
