//! The only module that names atomics, fences and spin hints (nothing else: the futex call
//! and its loom model live with the waits, in `wait.rs`).
//!
//! Built normally it re-exports `core`/`std`; built with `--cfg shmring_loom` it re-exports
//! loom's model-checked equivalents, so `loom-tests` explores the exact code that ships.
//! Everything else in the crate imports these names from here (clippy's `disallowed-types`
//! enforces it).
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[cfg(not(shmring_loom))]
#[allow(unused_imports)]
mod imp {
    pub use core::sync::atomic::Ordering;

    macro_rules! atomic {
        ($name:ident, $int:ty) => {
            /// The std atomic, under a name that only this module may define (so loom builds
            /// can swap it and clippy can forbid the std type elsewhere). Same layout.
            #[repr(transparent)]
            #[derive(Debug, Default)]
            pub struct $name(core::sync::atomic::$name);

            impl $name {
                pub const fn new(value: $int) -> Self {
                    Self(core::sync::atomic::$name::new(value))
                }
                #[inline(always)]
                pub fn load(&self, order: Ordering) -> $int {
                    self.0.load(order)
                }
                #[inline(always)]
                pub fn store(&self, value: $int, order: Ordering) {
                    self.0.store(value, order)
                }
                #[inline(always)]
                pub fn swap(&self, value: $int, order: Ordering) -> $int {
                    self.0.swap(value, order)
                }
                #[inline(always)]
                pub fn fetch_add(&self, value: $int, order: Ordering) -> $int {
                    self.0.fetch_add(value, order)
                }
                #[inline(always)]
                pub fn fetch_sub(&self, value: $int, order: Ordering) -> $int {
                    self.0.fetch_sub(value, order)
                }
                /// The std atomic inside, for the kernel interfaces that take one (futex).
                #[inline(always)]
                pub fn as_std(&self) -> &core::sync::atomic::$name {
                    &self.0
                }
                #[inline(always)]
                pub fn fetch_or(&self, value: $int, order: Ordering) -> $int {
                    self.0.fetch_or(value, order)
                }
                #[inline(always)]
                pub fn fetch_and(&self, value: $int, order: Ordering) -> $int {
                    self.0.fetch_and(value, order)
                }
                #[inline(always)]
                pub fn fetch_max(&self, value: $int, order: Ordering) -> $int {
                    self.0.fetch_max(value, order)
                }
                #[inline(always)]
                pub fn compare_exchange(
                    &self,
                    current: $int,
                    new: $int,
                    success: Ordering,
                    failure: Ordering,
                ) -> Result<$int, $int> {
                    self.0.compare_exchange(current, new, success, failure)
                }
            }
        };
    }
    atomic!(AtomicU32, u32);
    atomic!(AtomicU64, u64);

    /// A memory fence.
    #[inline(always)]
    pub fn fence(order: Ordering) {
        core::sync::atomic::fence(order)
    }

    /// A CPU hint that we are busy-waiting.
    #[inline]
    pub fn spin_loop() {
        core::hint::spin_loop();
    }

    /// Give the rest of the time slice to another thread.
    #[inline]
    pub fn yield_now() {
        std::thread::yield_now();
    }

    /// Asks the CPU to fetch the cache line at `ptr` for writing, without waiting for it
    /// (x86 PREFETCHW). A hint only: it never faults and changes no value.
    #[inline(always)]
    pub fn prefetch_write(ptr: *const u8) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: prefetch instructions never fault, whatever the address.
        unsafe {
            core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_ET0 }>(ptr.cast())
        };
        #[cfg(not(target_arch = "x86_64"))]
        let _ = ptr;
    }

    #[cfg(any(test, feature = "testing"))]
    /// Records accesses to the data region of a heap-backed ring; free outside loom.
    pub struct AccessTracker;

    #[cfg(any(test, feature = "testing"))]
    impl AccessTracker {
        pub fn new(_words: usize) -> Self {
            AccessTracker
        }
        #[inline]
        pub fn read(&self, _words: core::ops::Range<usize>) {}
        #[inline]
        pub fn write(&self, _words: core::ops::Range<usize>) {}
    }
}

#[cfg(shmring_loom)]
#[allow(unused_imports)]
mod imp {
    pub use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

    /// Under loom a spin is a scheduling point, or models hit the branch limit.
    #[inline]
    pub fn spin_loop() {
        loom::hint::spin_loop();
    }

    /// Under loom a yield is a scheduling point.
    #[inline]
    pub fn yield_now() {
        loom::thread::yield_now();
    }

    /// No hardware under loom.
    #[inline]
    pub fn prefetch_write(_ptr: *const u8) {}

    #[cfg(any(test, feature = "testing"))]
    /// One loom cell per 8-byte data word: loom reports a causality violation when a read
    /// and a write of the same word are not ordered by happens-before.
    pub struct AccessTracker {
        words: Box<[loom::cell::UnsafeCell<()>]>,
    }

    #[cfg(any(test, feature = "testing"))]
    impl AccessTracker {
        pub fn new(words: usize) -> Self {
            AccessTracker {
                words: (0..words)
                    .map(|_| loom::cell::UnsafeCell::new(()))
                    .collect(),
            }
        }
        pub fn read(&self, words: core::ops::Range<usize>) {
            for cell in &self.words[words] {
                cell.with(|_| ());
            }
        }
        pub fn write(&self, words: core::ops::Range<usize>) {
            for cell in &self.words[words] {
                cell.with_mut(|_| ());
            }
        }
    }
}

#[allow(unused_imports)]
pub(crate) use imp::*;

/// Plain interior-mutable storage (the bytes of a heap-backed ring), same layout as `T`.
#[cfg(any(test, feature = "testing"))]
#[repr(transparent)]
pub(crate) struct RawCell<T>(core::cell::UnsafeCell<T>);

#[cfg(any(test, feature = "testing"))]
impl<T> RawCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        RawCell(core::cell::UnsafeCell::new(value))
    }

    /// Pointer to the contents of the cell at `this` (without creating a reference).
    pub(crate) const fn raw_get(this: *const Self) -> *mut T {
        // `RawCell` is `repr(transparent)` over `UnsafeCell<T>`.
        core::cell::UnsafeCell::raw_get(this.cast::<core::cell::UnsafeCell<T>>())
    }
}
