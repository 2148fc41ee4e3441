import { native } from './binding.js';

let tuned = false;

/**
 * Keeps glibc from returning every freed transfer buffer to the kernel:
 * allocations of a megabyte (region, DMA and migration transfers) are then
 * reused instead of faulted in page by page on every message. Process-wide
 * and done once; VFIO_USER_NO_MALLOC_TUNING=1 turns it off.
 */
export function tuneAllocator(): void {
  if (tuned || process.env.VFIO_USER_NO_MALLOC_TUNING === '1') return;
  tuned = true;
  native.tuneAllocator(32 << 20, 256 << 20);
}
