//! The working memory of a hash (19 MiB at OWASP's parameters), kept per hashing thread and
//! reused, on transparent huge pages where the kernel grants them.

use argon2::{Block, Params};

/// Working memory for one hash (19 MiB at the server's parameters). The server keeps one per
/// hashing thread, allocated at its first hash, and reuses it: a fresh 19 MiB per login would
/// be mapped, faulted in and given back every time, and the allocator's per-thread arenas
/// would hold on to hundreds of MiB under a burst of logins.
///
/// On Linux the blocks start on a 2 MiB boundary and the range is advised for transparent huge
/// pages (`MADV_HUGEPAGE`, honoured when THP is `always` or `madvise`, the usual default).
/// argon2 reads its memory at data-dependent places, so with 4 KiB pages nearly every block it
/// reads is a TLB miss: on huge pages a hash is ~12% faster on this project's bench machine
/// (bench/notes/identity.md). Where the kernel declines, the memory is ordinary pages.
#[derive(Default)]
pub struct Memory {
    buffer: Vec<Block>,
    /// Where the blocks start in `buffer`: the first block at a 2 MiB boundary (or less than a
    /// block after it: the allocator aligns blocks to 64 bytes, not to their 1 KiB size).
    start: usize,
    blocks: usize,
}

impl Memory {
    /// Memory for hashes with `params`.
    pub fn for_params(params: &Params) -> Self {
        let blocks = params.block_count();
        let block = std::mem::size_of::<Block>();
        const HUGE_PAGE: usize = 2 << 20;
        // Room to move the start to a boundary, and for the last, partly used huge page.
        let spare = if cfg!(target_os = "linux") { 2 * HUGE_PAGE / block } else { 0 };
        let mut buffer: Vec<Block> = Vec::with_capacity(blocks + spare);
        let addr = buffer.as_ptr() as usize;
        let start = if spare == 0 { 0 } else { (addr.next_multiple_of(HUGE_PAGE) - addr).div_ceil(block) };
        #[cfg(target_os = "linux")]
        advise_huge_pages(addr, (blocks + spare) * block);
        // Filled (faulted in) only after the advice, so the faults can take huge pages.
        buffer.resize(start + blocks, Block::default());
        Self { buffer, start, blocks }
    }

    /// The blocks for a hash with `params`, reallocated first if they are another size.
    pub fn blocks_for(&mut self, params: &Params) -> &mut [Block] {
        if self.blocks != params.block_count() {
            *self = Self::for_params(params);
        }
        &mut self.buffer[self.start..self.start + self.blocks]
    }
}

/// `madvise(MADV_HUGEPAGE)` on the whole pages inside `[addr, addr + len)`. Advice only: an
/// error (an old kernel, THP off) leaves ordinary pages, so it is ignored.
#[cfg(target_os = "linux")]
fn advise_huge_pages(addr: usize, len: usize) {
    const PAGE: usize = 4096;
    let (from, to) = (addr.next_multiple_of(PAGE), (addr + len) / PAGE * PAGE);
    if to > from {
        // SAFETY: the range lies inside an allocation this thread owns, and MADV_HUGEPAGE only
        // changes how its pages may be backed, never their contents.
        unsafe { libc::madvise(from as *mut libc::c_void, to - from, libc::MADV_HUGEPAGE) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::password::argon::params;

    /// Where the kernel offers transparent huge pages on advice, the hashing memory gets them.
    #[cfg(target_os = "linux")]
    #[test]
    fn hashing_memory_is_on_huge_pages_where_the_kernel_offers_them() {
        let mode = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
        let mut memory = Memory::for_params(&params());
        let blocks = memory.blocks_for(&params());
        assert_eq!(blocks.len(), params().block_count());
        let (from, to) = (blocks.as_ptr() as usize, blocks.as_ptr() as usize + std::mem::size_of_val(blocks));
        // The first block starts on a 2 MiB boundary, or just after it when the allocator's
        // alignment (64 bytes) puts no block boundary there.
        assert!(from % (2 << 20) < std::mem::size_of::<Block>(), "the blocks start at a huge page: {from:#x}");
        if !(mode.contains("[always]") || mode.contains("[madvise]")) {
            return;
        }
        // The mapping holding the blocks, from /proc/self/smaps: its AnonHugePages line.
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut huge_kib = None;
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ')
                && let Some((a, b)) = range.split_once('-')
                && let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
            {
                inside = a <= from && from < b && to <= b;
            } else if inside && let Some(kib) = line.strip_prefix("AnonHugePages:") {
                huge_kib = kib.trim().trim_end_matches("kB").trim().parse::<usize>().ok();
            }
        }
        // 19 MiB from a 2 MiB boundary: ten huge pages, the last one half used.
        assert!(huge_kib.unwrap_or(0) >= 10 * 2048, "AnonHugePages {huge_kib:?} kB ({mode})");
    }
}
