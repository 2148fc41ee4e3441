// The device built step by step in docs/writing-a-device.md, whole. The
// guide quotes the regions marked below verbatim (a test compares them), and
// test/docs/my-device.test.ts and test/e2e/my-device.test.ts drive it.
//
// A small DMA engine:
//   BAR0  4 KiB, registers served by callbacks (every guest access is a message)
//   BAR2  4 KiB of shared memory the client maps: the buffer the engine copies from
//   BAR4  4 KiB holding the MSI-X table and PBA, which the library serves
// A write of 1 to DMA_CMD copies DMA_LEN bytes of BAR2 to guest memory at
// DMA_ADDR, then raises MSI-X vector 0. A write of 1 to IRQ asserts INTx until
// a write of 0.

// #region imports
import { DeviceContext, stateMigration, type ResetReason, type ServerOptions } from 'vfio-user-ts';
// #endregion imports

// #region registers
/** Register offsets in BAR0 (all 32 bits wide). */
export const Reg = {
  /** Read-only: 'MYDV'. */
  ID: 0x00,
  /** Read/write, no effect: the guest's scratch pad. */
  SCRATCH: 0x04,
  /** Guest-physical address (IOVA) the engine writes to, low and high halves. */
  DMA_ADDR_LO: 0x08,
  DMA_ADDR_HI: 0x0c,
  /** Bytes to copy from the start of BAR2 (at most its size). */
  DMA_LEN: 0x10,
  /** Write 1: start the copy. */
  DMA_CMD: 0x14,
  /** Read-only: bit 0 = copy done, bit 1 = copy failed. */
  STATUS: 0x18,
  /** Write 1: assert INTx; write 0: deassert it. Reads the line's level. */
  IRQ: 0x1c,
  /** Read-only: completed copies. */
  DONE_COUNT: 0x20,
} as const;

export const DEVICE_ID_VALUE = 0x5644594d; // 'MYDV' little-endian
export const REGS_SIZE = 0x40;
export const BUFFER_SIZE = 0x1000;
export const STATUS_DONE = 1;
export const STATUS_ERROR = 2;
// #endregion registers

/** The device and the state its tests look at. */
export interface MyDevice {
  ctx: DeviceContext;
  /** BAR0's registers (REGS_SIZE bytes, little-endian). */
  regs: DataView;
  /** Resolves when the copy in flight (if any) has finished. */
  idle(): Promise<void>;
  close(): Promise<void>;
}

export function createMyDevice(options: ServerOptions = {}): MyDevice {
  // #region state
  const regBytes = new Uint8Array(REGS_SIZE);
  const regs = new DataView(regBytes.buffer);
  const r32 = (off: number): number => regs.getUint32(off, true);
  const w32 = (off: number, v: number): void => regs.setUint32(off, v >>> 0, true);
  let inflight: Promise<void> = Promise.resolve();

  function clearRegisters(): void {
    regBytes.fill(0);
    w32(Reg.ID, DEVICE_ID_VALUE);
  }
  clearRegisters();
  // #endregion state

  // #region description
  const ctx: DeviceContext = new DeviceContext(
    {
      vendorId: 0x1234, // a placeholder (QEMU's own test devices use it): use your vendor's ID
      deviceId: 0xbeef,
      classCode: { base: 0xff, sub: 0x00, progIf: 0x00 }, // "unassigned class": no driver claims it
      express: true,
      capabilities: [
        { type: 'pm' },
        { type: 'pcie' },
        // Table and PBA live in BAR4; the library serves both there.
        { type: 'msix', tableSize: 4, tableBar: 4, tableOffset: 0x000, pbaBar: 4, pbaOffset: 0x800 },
      ],
      irqs: { intx: 1 }, // MSI-X's vector count comes from the capability
      regions: {
        0: { size: 0x1000, kind: 'mem32', read: readRegs, write: writeRegs },
        2: { size: BUFFER_SIZE, kind: 'mem32', shared: true },
        4: { size: 0x1000, kind: 'mem32' },
      },
      reset: (reason) => reset(reason),
      quiesce: () => inflight,
      migration: stateMigration({
        tag: 'my-device/1',
        save: () => ({ regs: regBytes.slice(), buffer: ctx.region(2).memory!.slice() }),
        load: (s) => {
          regBytes.set(s.regs!);
          ctx.region(2).memory!.set(s.buffer!);
          if (r32(Reg.IRQ) & 1) ctx.irq.assertIntx();
        },
      }),
    },
    options,
  );
  // #endregion description

  // #region access
  function readRegs(offset: number, count: number): Uint8Array {
    // Past the registers the BAR reads as zeros.
    const out = new Uint8Array(count);
    if (offset < REGS_SIZE) out.set(regBytes.subarray(offset, Math.min(offset + count, REGS_SIZE)));
    return out;
  }

  function writeRegs(offset: number, data: Uint8Array): void {
    // Registers are 32 bits; other widths and offsets are ignored, as many devices do.
    if (data.length !== 4 || offset % 4 !== 0 || offset >= REGS_SIZE) return;
    const v = new DataView(data.buffer, data.byteOffset, 4).getUint32(0, true);
    switch (offset) {
      case Reg.SCRATCH:
      case Reg.DMA_ADDR_LO:
      case Reg.DMA_ADDR_HI:
      case Reg.DMA_LEN:
        w32(offset, v);
        break;
      case Reg.DMA_CMD:
        if (v === 1) inflight = inflight.then(runCopy);
        break;
      case Reg.IRQ:
        w32(Reg.IRQ, v & 1);
        if (v & 1) ctx.irq.assertIntx();
        else ctx.irq.deassertIntx();
        break;
    }
  }
  // #endregion access

  // #region dma
  async function runCopy(): Promise<void> {
    const iova = (BigInt(r32(Reg.DMA_ADDR_HI)) << 32n) | BigInt(r32(Reg.DMA_ADDR_LO));
    const len = Math.min(r32(Reg.DMA_LEN), BUFFER_SIZE);
    w32(Reg.STATUS, 0);
    try {
      // Through the mapping when QEMU shared the RAM's fd, else DMA_WRITE messages.
      await ctx.dma.write(iova, ctx.region(2).memory!.subarray(0, len));
      w32(Reg.STATUS, STATUS_DONE);
      w32(Reg.DONE_COUNT, r32(Reg.DONE_COUNT) + 1);
    } catch (e) {
      // Unmapped address, Bus Master off, client gone: the guest sees an error bit.
      ctx.log.warn(`copy to 0x${iova.toString(16)} failed: ${(e as Error).message}`);
      w32(Reg.STATUS, STATUS_ERROR);
    }
    ctx.irq.trigger('msix', 0);
  }
  // #endregion dma

  // #region reset
  async function reset(reason: ResetReason): Promise<void> {
    await inflight; // no DMA may outlive the reset
    ctx.log.info(`reset (${reason})`);
    clearRegisters();
    ctx.irq.deassertIntx();
  }
  // #endregion reset

  return { ctx, regs, idle: () => inflight, close: () => ctx.close() };
}

// #region main
// `npx tsx my-device.ts /tmp/my-device.sock` serves the device until Ctrl-C.
if (import.meta.url === `file://${process.argv[1]}`) {
  const path = process.argv[2] ?? '/tmp/my-device.sock';
  const dev = createMyDevice();
  dev.ctx.region(2).memory!.set(new TextEncoder().encode('hello from BAR2'));
  await dev.ctx.listen(path);
  console.log(`listening on ${path}`);
  process.once('SIGINT', () => void dev.close());
}
// #endregion main
