//! Decoding untrusted bytes allocates in proportion to the bytes, never to
//! a length they claim. A test binary of its own: it counts allocations
//! with a global allocator.

use dike_core::{codec, Command};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, remembering the largest single request.
struct Largest;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Largest = Largest;

#[test]
fn a_byte_array_that_claims_four_billion_elements_allocates_no_more_than_its_input_justifies() {
    // A command whose payload (a `codec::bytes` field) is sent as a
    // MessagePack array32 claiming u32::MAX elements, then ends (found
    // while reading the decoders for the `wire` fuzz target).
    let mut bytes = vec![0x94, 0x01, 0x01, 0x00]; // [client, seq, ack_floor,
    bytes.extend_from_slice(&[0xdd, 0xff, 0xff, 0xff, 0xff, 0x01]); // payload…
    LARGEST.store(0, Ordering::Relaxed);
    assert!(codec::decode::<Command>("command", &bytes).is_err());
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(largest < 1 << 20, "one allocation of {largest} bytes");
}
