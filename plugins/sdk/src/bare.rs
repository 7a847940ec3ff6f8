//! What the standard library gives a plugin and a `no_std` plugin gets
//! here instead: a heap, a panic handler, the `cabi_realloc` export through
//! which the host writes arguments into the plugin's memory, and the C
//! functions the compiler calls without a C library (`memcmp`, `bcmp`).
//!
//! On `wasm32-wasip2` the standard library links wasi-libc, and with it the
//! WASI interfaces its start-up and I/O use: 14 imports in every component,
//! each of which a fresh instance links. Without them a request to a small
//! plugin costs the host about a fifth less CPU (`docs/plugins.md`, "Lean
//! Rust plugins", has the figures).
//!
//! The heap is dlmalloc (the allocator Rust's standard library uses on
//! wasm), given a static arena as its first region: an instance is fresh
//! for each request, and growing its memory costs far more than the request
//! (measured: a plugin that grew its memory once per request took 60 µs of
//! host CPU per request, against 24 µs with the arena). A request that needs
//! more than the arena grows the memory as usual. Freed memory is reused,
//! so a plugin served with `--reuse` does not creep.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr;

use dlmalloc::{Allocator, Dlmalloc};

/// The heap a fresh instance starts with, in the plugin's `.bss`: zeroed
/// pages that cost nothing until written, and only the pages a request
/// wrote are reset after it.
pub const ARENA_BYTES: usize = 256 * 1024;

/// Wasm's page size, the unit of `memory.grow`.
const WASM_PAGE: usize = 64 * 1024;

/// Aligned as dlmalloc's chunks are, so that none of it is lost to
/// aligning the first one.
#[repr(C, align(16))]
struct ArenaBytes([u8; ARENA_BYTES]);

struct Arena {
    bytes: UnsafeCell<ArenaBytes>,
    /// Whether dlmalloc has the arena already.
    given: UnsafeCell<bool>,
}

/// The regions dlmalloc asks for: the arena first, then grown memory.
struct Regions;

// SAFETY: a component instance runs on one thread.
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena {
    bytes: UnsafeCell::new(ArenaBytes([0; ARENA_BYTES])),
    given: UnsafeCell::new(false),
};

// SAFETY: regions are handed out once each and never returned (`free` says
// so), as dlmalloc's own wasm allocator does.
unsafe impl Allocator for Regions {
    fn alloc(&self, size: usize) -> (*mut u8, usize, u32) {
        // SAFETY: one thread; `given` is only read and written here.
        unsafe {
            if !*ARENA.given.get() && size <= ARENA_BYTES {
                *ARENA.given.get() = true;
                return (ARENA.bytes.get().cast(), ARENA_BYTES, 0);
            }
        }
        let pages = size.div_ceil(WASM_PAGE);
        let previous = core::arch::wasm32::memory_grow(0, pages);
        if previous == usize::MAX {
            return (ptr::null_mut(), 0, 0);
        }
        ((previous * WASM_PAGE) as *mut u8, pages * WASM_PAGE, 0)
    }

    fn remap(&self, _ptr: *mut u8, _old: usize, _new: usize, _can_move: bool) -> *mut u8 {
        ptr::null_mut()
    }

    fn free_part(&self, _ptr: *mut u8, _old: usize, _new: usize) -> bool {
        false
    }

    fn free(&self, _ptr: *mut u8, _size: usize) -> bool {
        false
    }

    fn can_release_part(&self, _flags: u32) -> bool {
        false
    }

    fn allocates_zeros(&self) -> bool {
        // The arena is zeroed at instantiation and grown pages are fresh.
        true
    }

    fn page_size(&self) -> usize {
        WASM_PAGE
    }
}

struct Heap(UnsafeCell<Dlmalloc<Regions>>);

// SAFETY: a component instance runs on one thread.
unsafe impl Sync for Heap {}

#[global_allocator]
static HEAP: Heap = Heap(UnsafeCell::new(Dlmalloc::new_with_allocator(Regions)));

// SAFETY: dlmalloc's contract is `GlobalAlloc`'s; there is one thread, so
// the `&mut` taken for each call is the only one.
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { (*self.0.get()).malloc(layout.size(), layout.align()) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        unsafe { (*self.0.get()).calloc(layout.size(), layout.align()) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { (*self.0.get()).free(ptr, layout.size(), layout.align()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        unsafe { (*self.0.get()).realloc(ptr, layout.size(), layout.align(), new_size) }
    }
}

/// A panic traps the instance: that request gets a 500 and the host logs
/// the trap with its wasm frames. The message is lost, as there is nowhere
/// to write it without WASI.
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    core::arch::wasm32::unreachable()
}

/// The canonical ABI's allocator export: the host calls it to place
/// arguments (strings, lists) in the plugin's memory.
///
/// # Safety
///
/// Called by the host only, with `old`/`old_len` from an earlier call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cabi_realloc(
    old: *mut u8,
    old_len: usize,
    align: usize,
    new_len: usize,
) -> *mut u8 {
    let ptr = unsafe {
        if old_len == 0 {
            if new_len == 0 {
                return align as *mut u8;
            }
            alloc::alloc::alloc(Layout::from_size_align_unchecked(new_len, align))
        } else {
            alloc::alloc::realloc(
                old,
                Layout::from_size_align_unchecked(old_len, align),
                new_len,
            )
        }
    };
    if ptr.is_null() {
        core::arch::wasm32::unreachable();
    }
    ptr
}

/// Compares `n` bytes; the compiler calls it for slice and string equality.
///
/// # Safety
///
/// `a` and `b` must be valid for reads of `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// `memcmp` when only equality matters; the compiler may call either.
///
/// # Safety
///
/// As for [`memcmp`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    unsafe { memcmp(a, b, n) }
}
