import { test } from 'node:test';
import assert from 'node:assert/strict';
import { native } from '../../src/native/binding.js';
import { Command } from '../../src/protocol/commands.js';
import { SetIrqsFlags } from '../../src/protocol/constants.js';
import { CAP_X_IRQ_MESSAGES, CMD_X_VM_INTERRUPT, decodeVmInterrupt } from '../../src/protocol/extensions.js';
import { FLAG_NO_REPLY } from '../../src/protocol/header.js';
import { decodeVersionWithCapabilities } from '../../src/protocol/version.js';
import { encodeSetIrqsRequest } from '../../src/protocol/set-irqs.js';
import type { Message } from '../../src/transport/types.js';
import { settle, startRig } from '../helpers/raw-client.js';

const desc = { vendorId: 1, deviceId: 2, irqs: { intx: 1, msi: 2 } };

test('interrupts by message: only for a client that asked, alongside the eventfd', async () => {
  const rig = await startRig('socket', desc, { requireBusMaster: false }, { maxMsgFds: 8, extensions: { [CAP_X_IRQ_MESSAGES]: true } });
  const got: Message[] = [];
  rig.ep.setHandlers({ onCommand: (m) => got.push(m) });
  const efd = native.eventfd(0, native.EFD_NONBLOCK);
  try {
    await rig.call(Command.DEVICE_SET_IRQS, encodeSetIrqsRequest({ flags: SetIrqsFlags.DATA_EVENTFD | SetIrqsFlags.ACTION_TRIGGER, index: 0, start: 0, count: 1 }), [efd]);
    assert.equal(rig.ctx.irq.trigger('intx'), 'delivered');
    assert.equal(rig.ctx.irq.trigger('msi', 1), 'delivered', 'no eventfd, but a message');
    await settle();
    assert.equal(native.eventfdRead(efd), 1n);
    assert.deepEqual(got.map((m) => [m.header.command, m.header.flags & FLAG_NO_REPLY, decodeVmInterrupt(m.payload)]), [
      [CMD_X_VM_INTERRUPT, FLAG_NO_REPLY, { index: 0, vector: 0 }],
      [CMD_X_VM_INTERRUPT, FLAG_NO_REPLY, { index: 1, vector: 1 }],
    ]);
  } finally {
    native.close(efd);
    await rig.close();
  }
});

test('a client that did not ask never sees the extension', async () => {
  const rig = await startRig('memory', desc, { requireBusMaster: false }, { maxMsgFds: 8 });
  const got: Message[] = [];
  rig.ep.setHandlers({ onCommand: (m) => got.push(m) });
  try {
    assert.equal(rig.ctx.irq.trigger('msi', 0), 'no-eventfd');
    await settle();
    assert.equal(got.length, 0);
  } finally {
    await rig.close();
  }
});

test('the VERSION reply names the extension only when asked', async () => {
  const { negotiate } = await import('../helpers/raw-client.js');
  const rig = await startRig('memory', desc, {}, undefined, false);
  try {
    const r = await negotiate(rig.ep, { maxMsgFds: 8, extensions: { [CAP_X_IRQ_MESSAGES]: true, other_thing: 1 } });
    const caps = decodeVersionWithCapabilities(r.payload).capabilities;
    assert.deepEqual(caps.extensions, { [CAP_X_IRQ_MESSAGES]: true });
  } finally {
    await rig.close();
  }
});
