// Extensions of this implementation, outside the vfio-user spec. A peer only
// ever sees them after asking for them in its VERSION capabilities, so a
// spec client (QEMU, libvfio-user) never does.
import { einval } from './errors.js';

/**
 * Interrupts by message. The seed's MUSER had a server->client
 * VFIO_USER_VM_INTERRUPT (command 13 in early drafts, later removed from the
 * spec); this brings it back for clients that cannot take eventfds. The
 * command number lies far above the spec's (1-18) so it cannot collide with
 * a future one. Sent with NO_REPLY; payload `u32 index, u32 vector` (index as
 * in SET_IRQS: 0 INTx, 1 MSI, 2 MSI-X, 3 ERR, 4 REQ).
 */
export const CMD_X_VM_INTERRUPT = 0x7f01;
/** VERSION capability a client sets to true to receive CMD_X_VM_INTERRUPT. */
export const CAP_X_IRQ_MESSAGES = 'x_vm_interrupt';

/** Payload of CMD_X_VM_INTERRUPT: which interrupt fired. */
export interface VmInterrupt {
  index: number;
  vector: number;
}

/** Encodes a CMD_X_VM_INTERRUPT payload (`u32 index, u32 vector`). */
export function encodeVmInterrupt(v: VmInterrupt): Uint8Array {
  const out = new Uint8Array(8);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, v.index >>> 0, true);
  dv.setUint32(4, v.vector >>> 0, true);
  return out;
}

/** Decodes a CMD_X_VM_INTERRUPT payload (EINVAL unless 8 bytes). */
export function decodeVmInterrupt(payload: Uint8Array): VmInterrupt {
  if (payload.length < 8) throw einval(`VM_INTERRUPT payload of ${payload.length} bytes`);
  const dv = new DataView(payload.buffer, payload.byteOffset, payload.length);
  return { index: dv.getUint32(0, true), vector: dv.getUint32(4, true) };
}
