//! The process allocator. Loading a manifest is dominated by allocating and freeing many
//! small strings and maps; glibc malloc spent over 40 % of a load in its own bookkeeping
//! (`perf`, BENCHMARKS.md), mimalloc a fraction of that. The binary and the benchmarks install
//! [`Allocator`] with `#[global_allocator]`, so both measure the same thing.

pub use mimalloc::MiMalloc as Allocator;

/// Hands the memory freed by a load (manifest text and parse trees, several times the size of
/// what is kept) back to the system, so that the idle service does not stay at its peak size.
pub fn release_free_memory() {
    // SAFETY: mi_collect only frees pages mimalloc no longer uses; it has no preconditions.
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
    // Programs that link the library without installing the allocator (the integration tests)
    // allocate from glibc, whose free blocks stay in its arenas until trimmed.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of glibc's arenas to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}
