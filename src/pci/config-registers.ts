// The bytes of a configuration space with their write masks, and the masked
// write every guest access goes through.

/**
 * Register bytes plus, per byte, the bits a guest write may change (`wmask`)
 * and the bits a written 1 clears (`w1cmask`). Read-only registers have zero
 * masks, so a write to them is ignored rather than refused.
 */
export class ConfigRegisters {
  readonly bytes: Uint8Array;
  readonly wmask: Uint8Array;
  readonly w1cmask: Uint8Array;

  constructor(size: number) {
    this.bytes = new Uint8Array(size);
    this.wmask = new Uint8Array(size);
    this.w1cmask = new Uint8Array(size);
  }

  set16(off: number, v: number): void {
    this.bytes[off] = v & 0xff;
    this.bytes[off + 1] = (v >>> 8) & 0xff;
  }
  set32(off: number, v: number): void {
    for (let i = 0; i < 4; i++) this.bytes[off + i] = (v >>> (8 * i)) & 0xff;
  }
  get16(off: number): number {
    return this.bytes[off]! | (this.bytes[off + 1]! << 8);
  }
  get32(off: number): number {
    return (this.bytes[off]! | (this.bytes[off + 1]! << 8) | (this.bytes[off + 2]! << 16) | (this.bytes[off + 3]! << 24)) >>> 0;
  }
  setMask16(off: number, m: number): void {
    this.wmask[off] = m & 0xff;
    this.wmask[off + 1] = (m >>> 8) & 0xff;
  }
  setMask32(off: number, m: number): void {
    for (let i = 0; i < 4; i++) this.wmask[off + i] = (m >>> (8 * i)) & 0xff;
  }
  setW1c16(off: number, m: number): void {
    this.w1cmask[off] = m & 0xff;
    this.w1cmask[off + 1] = (m >>> 8) & 0xff;
  }
  /** Makes [off, off+len) read-only. */
  clearMasks(off: number, len: number): void {
    this.wmask.fill(0, off, off + len);
    this.w1cmask.fill(0, off, off + len);
  }

  /** The masked write, byte by byte: b = (b & ~wmask) | (v & wmask); b &= ~(v & w1cmask). */
  applyWrite(offset: number, data: Uint8Array): void {
    for (let i = 0; i < data.length; i++) {
      const a = offset + i;
      const v = data[i]!;
      const wm = this.wmask[a]!;
      let b = (this.bytes[a]! & ~wm) | (v & wm);
      b &= ~(v & this.w1cmask[a]!);
      this.bytes[a] = b;
    }
  }
}
