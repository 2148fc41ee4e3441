/**
 * Dirty-page bitmap for one DMA region: bit i = page i of the region,
 * LSB-first in little-endian 64-bit words (the layout REPORT sends).
 */
export class DirtyBitmap {
  readonly pageSize: number;
  readonly pages: number;
  readonly bits: Uint8Array;
  private readonly size: number;

  constructor(regionSize: bigint, pageSize: number) {
    this.pageSize = pageSize;
    this.size = Number(regionSize);
    this.pages = Number((regionSize + BigInt(pageSize) - 1n) / BigInt(pageSize));
    this.bits = new Uint8Array(Math.ceil(this.pages / 64) * 8);
  }

  /** Marks [offset, offset+length) of the region dirty. */
  mark(offset: number, length: number): void {
    if (length <= 0) return;
    const first = Math.floor(offset / this.pageSize);
    const last = Math.min(this.pages - 1, Math.floor((offset + length - 1) / this.pageSize));
    for (let p = first; p <= last; p++) this.bits[p >> 3]! |= 1 << (p & 7);
  }

  /**
   * Reads and clears the pages covering [offset, offset+length) and returns a
   * bitmap of that range at `reportPageSize`: smaller report pages repeat a
   * bit, larger ones OR several together.
   */
  takeRange(offset: number, length: number, reportPageSize: number): Uint8Array {
    const outPages = Math.ceil(length / reportPageSize);
    const out = new Uint8Array(Math.ceil(outPages / 64) * 8);
    for (let i = 0; i < outPages; i++) {
      const start = offset + i * reportPageSize;
      const end = Math.min(offset + length, start + reportPageSize);
      const p0 = Math.floor(start / this.pageSize);
      const p1 = Math.floor((end - 1) / this.pageSize);
      for (let p = p0; p <= p1 && p < this.pages; p++) {
        if (this.bits[p >> 3]! & (1 << (p & 7))) {
          out[i >> 3]! |= 1 << (i & 7);
          break;
        }
      }
    }
    // Clear after reading so one page feeding two report bits is reported in both.
    const c0 = Math.floor(offset / this.pageSize);
    const c1 = Math.min(this.pages - 1, Math.floor((offset + length - 1) / this.pageSize));
    // Only pages wholly inside the range are cleared; a page shared with a
    // neighbouring range stays dirty so the other report still sees it.
    for (let p = c0; p <= c1; p++) {
      const ps = p * this.pageSize;
      const pe = Math.min(ps + this.pageSize, this.size);
      if (ps >= offset && pe <= offset + length) this.bits[p >> 3]! &= ~(1 << (p & 7));
    }
    return out;
  }
}
