//! How the process keeps memory between requests.
//!
//! A large request decodes into hundreds of megabytes of small allocations and a few huge
//! vectors. With glibc's defaults every huge vector gets its own `mmap` (and is copied on each
//! growth) and freed memory goes straight back to the kernel, so every request faults all of it
//! in again: about 40% of decoding a 5,000-node snapshot. Keeping freed memory for the next
//! request, and growing huge vectors inside the heap, halves that (see the README's performance
//! section). The cost is a resident set that stays at its high-water mark (about 1 GiB for a
//! 150,000-pod snapshot), which a service sized for such requests has to allow anyway.

/// Below this size glibc allocates inside the heap; freed heap is kept up to this much too.
const RETAINED_BYTES: i32 = 1 << 30;

/// Tunes the allocator as described above, best first thing in `main`; without glibc it does
/// nothing.
pub fn retain_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt takes no pointers and only changes allocator parameters, under the
        // allocator's own locks.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, RETAINED_BYTES);
            libc::mallopt(libc::M_TRIM_THRESHOLD, RETAINED_BYTES);
        }
    }
}
