// A type-0 PCI configuration space built from a device description.
//
// Every byte has a write mask (`wmask`: bits a guest write may change) and a
// write-1-to-clear mask (`w1cmask`). A write of any size or alignment is
// applied byte by byte:
//     b = (b & ~wmask) | (v & wmask);  b &= ~(v & w1cmask)
// Read-only registers simply have a zero mask, so writes to them are ignored
// rather than refused (QEMU forwards every guest config write). BAR sizing
// falls out of the same rule: a BAR's mask is ~(size - 1) minus its type bits,
// split over two dwords for 64-bit BARs. A few registers need a fix-up after
// the masked write (self-clearing FLR, MSI MME clamp, unsupported D-states),
// and state changes are reported through hooks.

import { ProtocolError } from '../protocol/errors.js';
import { Errno } from '../protocol/errno.js';
import { CAP_IDS, capSize, EXT_CAP_IDS, extCapSize, place, publicInfo, type PlacedCapability } from './capability-layout.js';
import { initBars, initCapability, initExtCapability } from './config-init.js';
import { ConfigRegisters } from './config-registers.js';
import * as C from './constants.js';
import { checkUint, invalid, isPow2, normalizeClass, resolveBars, validateCapability, validateExtCapability, type ResolvedBar } from './description-checks.js';
import type { CapabilityDescription, CapabilityInfo, MsiState, MsixControl, PciConfigHooks, PciDeviceDescription } from './types.js';

export type { ResolvedBar } from './description-checks.js';

/** A type-0 configuration space with PCI write semantics, built from a device description. */
export class PciConfigSpace {
  /** 256, or 4096 for PCI Express. */
  readonly size: number;
  /** The live register contents. Mutating it bypasses write semantics. */
  readonly bytes: Uint8Array;
  /** Hooks the owner installs; may be replaced at any time. */
  hooks: PciConfigHooks;

  private readonly regs: ConfigRegisters;
  private readonly initial: Uint8Array;
  private readonly bars: (ResolvedBar | undefined)[];
  private readonly romSize: number;
  private readonly caps: PlacedCapability[];
  private readonly extCaps: PlacedCapability[];

  constructor(desc: PciDeviceDescription, hooks: PciConfigHooks = {}) {
    if (desc === null || typeof desc !== 'object') throw invalid('description must be an object');
    this.hooks = hooks;
    this.size = desc.express ? C.PCIE_CONFIG_SIZE : C.PCI_CONFIG_SIZE;
    this.regs = new ConfigRegisters(this.size);
    this.bytes = this.regs.bytes;

    const vendorId = checkUint(desc.vendorId, 16, 'vendorId');
    if (vendorId === 0xffff) throw invalid('vendorId 0xffff means "no device"');
    const deviceId = checkUint(desc.deviceId, 16, 'deviceId');
    const cls = normalizeClass(desc.classCode);
    const revision = checkUint(desc.revision ?? 0, 8, 'revision');
    const ssvid = checkUint(desc.subsystemVendorId ?? 0, 16, 'subsystemVendorId');
    const ssid = checkUint(desc.subsystemId ?? 0, 16, 'subsystemId');
    this.bars = resolveBars(desc.bars);
    const romSize = desc.rom?.size ?? 0;
    if (romSize !== 0) {
      checkUint(romSize, 32, 'rom.size');
      if (!isPow2(BigInt(romSize)) || romSize < 2048 || romSize > 2 ** 31) {
        throw invalid('rom.size must be 0 or a power of two in [2 KiB, 2 GiB]');
      }
    }
    this.romSize = romSize;

    const capDescs = desc.capabilities ?? [];
    const extDescs = desc.extendedCapabilities ?? [];
    if (!Array.isArray(capDescs) || !Array.isArray(extDescs)) throw invalid('capabilities must be arrays');
    for (const c of capDescs) validateCapability(c, this.bars);
    for (const t of ['pm', 'msi', 'msix', 'pcie'] as const) {
      if (capDescs.filter((c) => c.type === t).length > 1) throw invalid(`more than one ${t} capability`);
    }
    if (extDescs.length > 0 && !desc.express) throw invalid('extended capabilities need express: true');
    for (const c of extDescs) validateExtCapability(c);
    if (extDescs.filter((c) => c.type === 'dsn').length > 1) throw invalid('more than one DSN capability');

    this.caps = place(capDescs, capSize, (d) => CAP_IDS[d.type], C.PCI_STD_HEADER_SIZE, C.PCI_CONFIG_SIZE, false);
    this.extCaps = place(extDescs, extCapSize, (d) => EXT_CAP_IDS[d.type], C.PCI_EXT_CAP_START, this.size, true);
    if (this.extCaps.length > 0 && this.extCaps[0]!.offset !== C.PCI_EXT_CAP_START) {
      throw invalid('the first extended capability must be at 0x100');
    }

    // Header.
    this.set16(C.PCI_VENDOR_ID, vendorId);
    this.set16(C.PCI_DEVICE_ID, deviceId);
    this.regs.setMask16(C.PCI_COMMAND, C.PCI_COMMAND_WRITABLE);
    this.regs.setW1c16(C.PCI_STATUS, C.PCI_STATUS_W1C);
    this.bytes[C.PCI_REVISION_ID] = revision;
    this.bytes[C.PCI_CLASS_PROG] = cls.progIf;
    this.bytes[C.PCI_CLASS_DEVICE] = cls.sub;
    this.bytes[C.PCI_CLASS_DEVICE + 1] = cls.base;
    this.regs.wmask[C.PCI_CACHE_LINE_SIZE] = 0xff;
    this.regs.wmask[C.PCI_LATENCY_TIMER] = 0xff;
    this.set16(C.PCI_SUBSYSTEM_VENDOR_ID, ssvid);
    this.set16(C.PCI_SUBSYSTEM_ID, ssid);
    this.regs.wmask[C.PCI_INTERRUPT_LINE] = 0xff;
    if (desc.intxPin) this.bytes[C.PCI_INTERRUPT_PIN] = 1;

    initBars(this.regs, this.bars, romSize);

    // Capabilities.
    if (this.caps.length > 0) {
      this.bytes[C.PCI_CAPABILITY_LIST] = this.caps[0]!.offset;
      this.set16(C.PCI_STATUS, C.PCI_STATUS_CAP_LIST);
    }
    this.caps.forEach((cap, i) => {
      this.bytes[cap.offset] = cap.id;
      this.bytes[cap.offset + 1] = this.caps[i + 1]?.offset ?? 0;
      initCapability(this.regs, cap);
      if (cap.readOnly) this.regs.clearMasks(cap.offset, cap.size);
    });
    this.extCaps.forEach((cap, i) => {
      const next = this.extCaps[i + 1]?.offset ?? 0;
      this.set32(cap.offset, (cap.id | (1 << 16) | (next << 20)) >>> 0);
      initExtCapability(this.regs, cap);
      if (cap.readOnly) this.regs.clearMasks(cap.offset, cap.size);
    });

    this.initial = this.bytes.slice();
  }

  private set16(off: number, v: number): void {
    this.regs.set16(off, v);
  }
  private set32(off: number, v: number): void {
    this.regs.set32(off, v);
  }
  private get16(off: number): number {
    return this.regs.get16(off);
  }
  private get32(off: number): number {
    return this.regs.get32(off);
  }

  // ---- access -------------------------------------------------------------

  private checkRange(offset: number, count: number): void {
    if (!Number.isInteger(offset) || !Number.isInteger(count) || offset < 0 || count < 0 || offset + count > this.size) {
      throw new ProtocolError(Errno.EINVAL, `config space access [${offset}, +${count}) outside 0..${this.size}`);
    }
  }

  /** A copy of `count` bytes at `offset`. */
  read(offset: number, count: number): Uint8Array {
    this.checkRange(offset, count);
    return this.bytes.slice(offset, offset + count);
  }

  /** A guest write of any size and alignment; read-only bits are ignored. */
  write(offset: number, data: Uint8Array): void {
    if (!(data instanceof Uint8Array)) throw new ProtocolError(Errno.EINVAL, 'config write data must be a Uint8Array');
    this.checkRange(offset, data.length);
    if (data.length === 0) return;
    const before = this.snapshot();
    this.regs.applyWrite(offset, data);
    const flr = this.fixups(offset, data.length, before);
    if (flr) {
      // FLR returns the function to its power-on state; the owner hears about
      // every state change (BME off, MSI off...) and then about the FLR.
      this.bytes.set(this.initial);
    }
    this.report(before);
    if (flr) this.hooks.onFlr?.();
  }

  /** Restore power-on defaults (as after a reset), reporting state changes. */
  reset(): void {
    const before = this.snapshot();
    this.bytes.set(this.initial);
    this.report(before);
  }

  private overlaps(offset: number, len: number, start: number, size: number): boolean {
    return offset < start + size && start < offset + len;
  }

  /** Post-write corrections; returns true when an FLR was initiated. */
  private fixups(offset: number, len: number, before: Snapshot): boolean {
    let flr = false;
    for (const cap of this.caps) {
      if (cap.readOnly || !this.overlaps(offset, len, cap.offset, cap.size)) continue;
      const o = cap.offset;
      const d = cap.desc as CapabilityDescription;
      if (d.type === 'msi') {
        const ctl = this.get16(o + C.PCI_MSI_FLAGS);
        const mmc = (ctl & C.PCI_MSI_FLAGS_QMASK) >> 1;
        const mme = (ctl & C.PCI_MSI_FLAGS_QSIZE) >> 4;
        if (mme > mmc) this.set16(o + C.PCI_MSI_FLAGS, (ctl & ~C.PCI_MSI_FLAGS_QSIZE) | (mmc << 4));
      } else if (d.type === 'pm') {
        const csr = this.get16(o + C.PCI_PM_CTRL);
        const state = csr & C.PCI_PM_CTRL_STATE_MASK;
        if ((state === 1 && !d.d1) || (state === 2 && !d.d2)) {
          // Unsupported power state: the write to the field is ignored.
          this.set16(o + C.PCI_PM_CTRL, (csr & ~C.PCI_PM_CTRL_STATE_MASK) | (before.powerState ?? 0));
        }
      } else if (d.type === 'pcie' && d.flr) {
        const ctl = this.get16(o + C.PCI_EXP_DEVCTL);
        if (ctl & C.PCI_EXP_DEVCTL_BCR_FLR) {
          this.set16(o + C.PCI_EXP_DEVCTL, ctl & ~C.PCI_EXP_DEVCTL_BCR_FLR);
          flr = true;
        }
      }
    }
    return flr;
  }

  private snapshot(): Snapshot {
    return {
      command: this.command,
      bars: [0, 1, 2, 3, 4, 5, 6].map((i) => this.barRegister(i)),
      msi: this.msiState(),
      msix: this.msixControl(),
      powerState: this.powerState,
    };
  }

  private report(before: Snapshot): void {
    const h = this.hooks;
    const cmd = this.command;
    if (cmd !== before.command) h.onCommandChange?.(before.command, cmd);
    for (let i = 0; i <= 6; i++) {
      const v = this.barRegister(i);
      if (v !== undefined && v !== before.bars[i]) h.onBarChange?.(i, v);
    }
    const msi = this.msiState();
    const b = before.msi;
    if (
      msi &&
      b &&
      (msi.enabled !== b.enabled ||
        msi.address !== b.address ||
        msi.data !== b.data ||
        msi.multipleMessageEnable !== b.multipleMessageEnable ||
        msi.maskBits !== b.maskBits)
    ) {
      h.onMsiChange?.(msi);
    }
    const msix = this.msixControl();
    if (msix && before.msix && (msix.enabled !== before.msix.enabled || msix.functionMask !== before.msix.functionMask)) {
      h.onMsixControlChange?.(msix);
    }
    const ps = this.powerState;
    if (ps !== undefined && before.powerState !== undefined && ps !== before.powerState) {
      h.onPowerStateChange?.(before.powerState, ps);
    }
  }

  // ---- state getters ------------------------------------------------------

  /** The Command register. */
  get command(): number {
    return this.get16(C.PCI_COMMAND);
  }
  /** The Status register. */
  get status(): number {
    return this.get16(C.PCI_STATUS);
  }
  /** Command: Bus Master Enable is set (the device may DMA and signal MSI/MSI-X). */
  get busMasterEnabled(): boolean {
    return (this.command & C.PCI_COMMAND_MASTER) !== 0;
  }
  /** Command: Memory Space Enable is set. */
  get memoryEnabled(): boolean {
    return (this.command & C.PCI_COMMAND_MEMORY) !== 0;
  }
  /** Command: I/O Space Enable is set. */
  get ioEnabled(): boolean {
    return (this.command & C.PCI_COMMAND_IO) !== 0;
  }
  /** Command: Interrupt Disable is set (INTx must not be signalled). */
  get intxDisabled(): boolean {
    return (this.command & C.PCI_COMMAND_INTX_DISABLE) !== 0;
  }
  /** The Interrupt Line register (what firmware wrote there). */
  get interruptLine(): number {
    return this.bytes[C.PCI_INTERRUPT_LINE]!;
  }

  /** Status bit 3 follows the device's INTx line (asserted or not). */
  setInterruptStatus(asserted: boolean): void {
    const s = this.status;
    this.set16(C.PCI_STATUS, asserted ? s | C.PCI_STATUS_INTERRUPT : s & ~C.PCI_STATUS_INTERRUPT);
  }

  /** Set bits in the Status register from the device side (e.g. Received Master Abort). */
  raiseStatus(bits: number): void {
    this.set16(C.PCI_STATUS, this.status | (bits & C.PCI_STATUS_W1C));
  }

  /** BAR as validated from the description (undefined: empty, or the upper half of a 64-bit BAR). */
  bar(index: number): ResolvedBar | undefined {
    return this.bars[index];
  }

  /** Expansion ROM size (0: none). */
  get romBarSize(): number {
    return this.romSize;
  }

  /**
   * Raw register value of BAR `index` (0..5, a 64-bit BAR as one value at
   * its even index) or of the ROM BAR (6); undefined for an empty BAR.
   */
  barRegister(index: number): bigint | undefined {
    if (index === 6) return this.romSize ? BigInt(this.get32(C.PCI_ROM_ADDRESS)) : undefined;
    const bar = this.bars[index];
    if (!bar) return undefined;
    const off = C.PCI_BASE_ADDRESS_0 + 4 * index;
    const lo = BigInt(this.get32(off));
    return bar.kind === 'mem64' ? lo | (BigInt(this.get32(off + 4)) << 32n) : lo;
  }

  /** Address programmed into BAR `index` (type bits stripped); 6 = ROM. */
  barAddress(index: number): bigint | undefined {
    const raw = this.barRegister(index);
    if (raw === undefined) return undefined;
    if (index === 6) return raw & BigInt(C.PCI_ROM_ADDRESS_MASK);
    return this.bars[index]!.kind === 'io' ? raw & ~3n : raw & ~15n;
  }

  /** The expansion ROM exists and its decode is enabled. */
  get romEnabled(): boolean {
    return this.romSize !== 0 && (this.get32(C.PCI_ROM_ADDRESS) & C.PCI_ROM_ENABLE) !== 0;
  }

  /** PMCSR PowerState (0 = D0 ... 3 = D3hot), or undefined without a PM capability. */
  get powerState(): number | undefined {
    const o = this.findCapability(C.PCI_CAP_ID_PM);
    return o === undefined ? undefined : this.get16(o + C.PCI_PM_CTRL) & C.PCI_PM_CTRL_STATE_MASK;
  }

  /** The MSI capability's state, or undefined without one. */
  msiState(): MsiState | undefined {
    const o = this.findCapability(C.PCI_CAP_ID_MSI);
    if (o === undefined) return undefined;
    const ctl = this.get16(o + C.PCI_MSI_FLAGS);
    const a64 = (ctl & C.PCI_MSI_FLAGS_64BIT) !== 0;
    const pvm = (ctl & C.PCI_MSI_FLAGS_MASKBIT) !== 0;
    const dataOff = o + (a64 ? 12 : 8);
    let address = BigInt(this.get32(o + C.PCI_MSI_ADDRESS_LO));
    if (a64) address |= BigInt(this.get32(o + 8)) << 32n;
    const mme = (ctl & C.PCI_MSI_FLAGS_QSIZE) >> 4;
    return {
      enabled: (ctl & C.PCI_MSI_FLAGS_ENABLE) !== 0,
      address,
      data: this.get16(dataOff),
      multipleMessageEnable: mme,
      vectors: 1 << mme,
      capableVectors: 1 << ((ctl & C.PCI_MSI_FLAGS_QMASK) >> 1),
      address64: a64,
      perVectorMasking: pvm,
      maskBits: pvm ? this.get32(dataOff + 4) : 0,
      pendingBits: pvm ? this.get32(dataOff + 8) : 0,
    };
  }

  /** Device side: set or clear an MSI pending bit (per-vector masking only). */
  setMsiPending(vector: number, pending: boolean): void {
    const st = this.msiState();
    const o = this.findCapability(C.PCI_CAP_ID_MSI);
    if (!st || o === undefined || !st.perVectorMasking) return;
    if (!Number.isInteger(vector) || vector < 0 || vector >= st.capableVectors) {
      throw new RangeError(`MSI vector ${vector} out of range`);
    }
    const off = o + (st.address64 ? 12 : 8) + 8;
    const bit = (1 << vector) >>> 0;
    this.set32(off, (pending ? st.pendingBits | bit : st.pendingBits & ~bit) >>> 0);
  }

  /** MSI-X Enable, read without allocating (for a device's per-request path); false without the capability. */
  get msixEnabled(): boolean {
    this.msixCap ??= this.findCapability(C.PCI_CAP_ID_MSIX) ?? -1;
    return this.msixCap >= 0 && (this.get16(this.msixCap + C.PCI_MSIX_FLAGS) & C.PCI_MSIX_FLAGS_ENABLE) !== 0;
  }

  /** Offset of the MSI-X capability (-1: none), found on first use; the capability list is fixed at construction. */
  private msixCap: number | undefined;

  /** MSI-X Enable and Function Mask, or undefined without an MSI-X capability. */
  msixControl(): MsixControl | undefined {
    const o = this.findCapability(C.PCI_CAP_ID_MSIX);
    if (o === undefined) return undefined;
    const ctl = this.get16(o + C.PCI_MSIX_FLAGS);
    return { enabled: (ctl & C.PCI_MSIX_FLAGS_ENABLE) !== 0, functionMask: (ctl & C.PCI_MSIX_FLAGS_MASKALL) !== 0 };
  }

  // ---- capabilities ---------------------------------------------------------

  /** Offset of the first standard capability with `id`, in list order. */
  findCapability(id: number): number | undefined {
    return this.caps.find((c) => c.id === id)?.offset;
  }

  /** The next capability with `id` after the one at offset `after`, in list order. */
  findNextCapability(id: number, after: number): number | undefined {
    return this.caps.find((c) => c.id === id && c.offset > after)?.offset;
  }

  /** Offset of the first extended capability with `id`, in list order. */
  findExtendedCapability(id: number): number | undefined {
    return this.extCaps.find((c) => c.id === id)?.offset;
  }

  /** The next extended capability with `id` after the one at offset `after`, in list order. */
  findNextExtendedCapability(id: number, after: number): number | undefined {
    return this.extCaps.find((c) => c.id === id && c.offset > after)?.offset;
  }

  /** Standard then extended capabilities, each in list order. */
  listCapabilities(): CapabilityInfo[] {
    return [...this.caps, ...this.extCaps].map(publicInfo);
  }

  /** The capability whose bytes include `offset`, if any (for routing accesses). */
  capabilityAt(offset: number): CapabilityInfo | undefined {
    const list = offset >= C.PCI_EXT_CAP_START ? this.extCaps : this.caps;
    const c = list.find((p) => offset >= p.offset && offset < p.offset + p.size);
    return c ? publicInfo(c) : undefined;
  }
}

interface Snapshot {
  command: number;
  bars: (bigint | undefined)[];
  msi: MsiState | undefined;
  msix: MsixControl | undefined;
  powerState: number | undefined;
}
