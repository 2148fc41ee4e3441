// The MSI-X vector table and Pending Bit Array, as the device serves them from
// one of its BARs. QEMU emulates the table itself but forwards PBA reads;
// other clients may access both. Delivery honours the MSI-X Enable, Function
// Mask and per-vector Mask bits; a masked vector's message is held as a
// pending bit and delivered when it becomes unmasked (PCI 3.0 §6.8.2.9).

import { ProtocolError } from '../protocol/errors.js';
import { Errno } from '../protocol/errno.js';
import { PCI_MSIX_ENTRY_CTRL_MASKBIT, PCI_MSIX_ENTRY_SIZE } from './constants.js';
import type { MsixControl } from './types.js';

/** What fire() did: sent the message, held it as a pending bit (masked), or nothing (MSI-X disabled). */
export type MsixFireResult = 'delivered' | 'pending' | 'disabled';

/** One MSI-X table entry as the guest programmed it. */
export interface MsixEntry {
  address: bigint;
  data: number;
  masked: boolean;
}

/** How to build an MsixTable. */
export interface MsixTableOptions {
  /** Number of vectors, 1..2048. */
  size: number;
  /** Send the message of `vector` (e.g. write its eventfd). */
  deliver?: (vector: number, entry: MsixEntry) => void;
}

/** An MSI-X vector table and Pending Bit Array with PCI's masking rules; DeviceContext serves one inside the BAR the MSI-X capability names. */
export class MsixTable {
  readonly size: number;
  /** Bytes of the table: `size * 16`. */
  readonly tableBytes: number;
  /** Bytes of the PBA: whole qwords. */
  readonly pbaBytes: number;
  /** Sends a vector's message; set by the owner (DeviceContext signals the vector's eventfd). */
  deliver: ((vector: number, entry: MsixEntry) => void) | undefined;

  private readonly table: Uint8Array;
  private readonly pba: Uint8Array;
  private enabled = false;
  private functionMask = false;

  constructor(opts: MsixTableOptions) {
    const { size } = opts;
    if (!Number.isInteger(size) || size < 1 || size > 2048) throw new RangeError(`MSI-X table size ${size} not in 1..2048`);
    this.size = size;
    this.tableBytes = size * PCI_MSIX_ENTRY_SIZE;
    this.pbaBytes = Math.ceil(size / 64) * 8;
    this.table = new Uint8Array(this.tableBytes);
    this.pba = new Uint8Array(this.pbaBytes);
    this.deliver = opts.deliver;
    this.reset();
  }

  /** Power-on state: every vector masked, addresses and data zero, nothing pending. */
  reset(): void {
    this.table.fill(0);
    this.pba.fill(0);
    for (let v = 0; v < this.size; v++) this.table[v * PCI_MSIX_ENTRY_SIZE + 12] = PCI_MSIX_ENTRY_CTRL_MASKBIT;
    this.enabled = false;
    this.functionMask = false;
  }

  /** Mirror the capability's Enable / Function Mask bits (wire to `onMsixControlChange`). */
  setControl(control: MsixControl): void {
    this.enabled = control.enabled;
    this.functionMask = control.functionMask;
    this.flushPending();
  }

  /** The Enable and Function Mask bits last set from config space. */
  control(): MsixControl {
    return { enabled: this.enabled, functionMask: this.functionMask };
  }

  /** Entry `vector` of the table, decoded. */
  entry(vector: number): MsixEntry {
    this.checkVector(vector);
    const dv = new DataView(this.table.buffer, vector * PCI_MSIX_ENTRY_SIZE, PCI_MSIX_ENTRY_SIZE);
    return {
      address: BigInt(dv.getUint32(0, true)) | (BigInt(dv.getUint32(4, true)) << 32n),
      data: dv.getUint32(8, true),
      masked: (dv.getUint32(12, true) & PCI_MSIX_ENTRY_CTRL_MASKBIT) !== 0,
    };
  }

  /** True while `vector` has a message held in the PBA. */
  isPending(vector: number): boolean {
    this.checkVector(vector);
    return (this.pba[vector >> 3]! & (1 << (vector & 7))) !== 0;
  }

  private setPending(vector: number, on: boolean): void {
    const bit = 1 << (vector & 7);
    if (on) this.pba[vector >> 3]! |= bit;
    else this.pba[vector >> 3]! &= ~bit;
  }

  private checkVector(vector: number): void {
    if (!Number.isInteger(vector) || vector < 0 || vector >= this.size) {
      throw new RangeError(`MSI-X vector ${vector} not in 0..${this.size - 1}`);
    }
  }

  private static checkAccess(offset: number, count: number, limit: number, what: string): void {
    if (!Number.isInteger(offset) || !Number.isInteger(count) || offset < 0 || count < 0 || offset + count > limit) {
      throw new ProtocolError(Errno.EINVAL, `MSI-X ${what} access [${offset}, +${count}) outside 0..${limit}`);
    }
    if ((count !== 4 && count !== 8) || offset % count !== 0) {
      throw new ProtocolError(Errno.EINVAL, `MSI-X ${what} access must be an aligned dword or qword (offset ${offset}, ${count} bytes)`);
    }
  }

  /** An aligned dword or qword read of the table. */
  readTable(offset: number, count: number): Uint8Array {
    MsixTable.checkAccess(offset, count, this.tableBytes, 'table');
    return this.table.slice(offset, offset + count);
  }

  /**
   * An aligned dword or qword write of the table. Reserved Vector Control
   * bits stay 0. Unmasking a vector with its pending bit set delivers it.
   */
  writeTable(offset: number, data: Uint8Array): void {
    MsixTable.checkAccess(offset, data.length, this.tableBytes, 'table');
    for (let i = 0; i < data.length; i++) {
      const a = offset + i;
      const field = a % PCI_MSIX_ENTRY_SIZE;
      let v = data[i]!;
      if (field === 12) v &= PCI_MSIX_ENTRY_CTRL_MASKBIT;
      else if (field > 12) v = 0;
      this.table[a] = v;
    }
    const first = Math.floor(offset / PCI_MSIX_ENTRY_SIZE);
    const last = Math.floor((offset + data.length - 1) / PCI_MSIX_ENTRY_SIZE);
    for (let v = first; v <= last; v++) this.tryDeliverPending(v);
  }

  /** An aligned dword or qword read of the PBA. */
  readPba(offset: number, count: number): Uint8Array {
    MsixTable.checkAccess(offset, count, this.pbaBytes, 'PBA');
    return this.pba.slice(offset, offset + count);
  }

  /** The device signals `vector`. */
  fire(vector: number): MsixFireResult {
    this.checkVector(vector);
    if (!this.enabled) return 'disabled';
    if (this.functionMask || this.entry(vector).masked) {
      this.setPending(vector, true);
      return 'pending';
    }
    this.deliver?.(vector, this.entry(vector));
    return 'delivered';
  }

  private tryDeliverPending(vector: number): void {
    if (!this.enabled || this.functionMask || !this.isPending(vector)) return;
    const e = this.entry(vector);
    if (e.masked) return;
    this.setPending(vector, false);
    this.deliver?.(vector, e);
  }

  private flushPending(): void {
    for (let v = 0; v < this.size; v++) this.tryDeliverPending(v);
  }
}
