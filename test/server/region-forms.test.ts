// The allocation-free region callbacks (readInto, writeFrom) serve every
// access path: single reads and writes, posted writes, REGION_WRITE_MULTI
// batches, over sockets (where the fast lane answers in place), the
// dedicated-thread mode and the in-memory transport (the general path).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Command } from '../../src/protocol/commands.js';
import { decodeRegionReadReply, encodeRegionReadRequest, encodeRegionWriteRequest } from '../../src/protocol/region-access.js';
import { decodeWriteMultiReply, encodeWriteMultiRequest } from '../../src/protocol/write-multi.js';
import { Errno } from '../../src/protocol/errno.js';
import type { DeviceDescription } from '../../src/server/device.js';
import { TRANSPORTS, startRig } from '../helpers/raw-client.js';

function device(log: string[]): DeviceDescription {
  const regs = new Uint8Array(64);
  return {
    vendorId: 1,
    deviceId: 2,
    regions: {
      0: {
        size: 64,
        readInto: (off, n, out, at) => {
          log.push(`r${off}+${n}`);
          for (let i = 0; i < n; i++) out[at + i] = regs[off + i]!;
        },
        writeFrom: (off, src, at, n) => {
          log.push(`w${off}+${n}`);
          for (let i = 0; i < n; i++) regs[off + i] = src[at + i]!;
        },
        // Never called while the allocation-free forms are there.
        read: () => assert.fail('read called'),
        write: () => assert.fail('write called'),
      },
    },
  };
}

const read = async (rig: Awaited<ReturnType<typeof startRig>>, offset: number, count: number): Promise<number[]> =>
  Array.from(decodeRegionReadReply((await rig.call(Command.REGION_READ, encodeRegionReadRequest({ offset: BigInt(offset), region: 0, count }))).payload).data);

for (const kind of TRANSPORTS) {
  test(`${kind}: readInto and writeFrom serve reads, writes, posted writes and WRITE_MULTI`, async () => {
    const log: string[] = [];
    const rig = await startRig(kind, device(log));
    try {
      await rig.call(Command.REGION_WRITE, encodeRegionWriteRequest({ offset: 4n, region: 0, count: 4, data: new Uint8Array([1, 2, 3, 4]) }));
      assert.deepEqual(await read(rig, 4, 4), [1, 2, 3, 4]);
      rig.ep.post(Command.REGION_WRITE, encodeRegionWriteRequest({ offset: 8n, region: 0, count: 2, data: new Uint8Array([7, 8]) }));
      const entries = [0, 1, 2].map((i) => ({ offset: BigInt(16 + i * 8), region: 0, count: 8, data: new Uint8Array(8).fill(i + 1) }));
      const m = await rig.call(Command.REGION_WRITE_MULTI, encodeWriteMultiRequest({ entries }));
      assert.equal(decodeWriteMultiReply(m.payload).wrCnt, 3n);
      assert.deepEqual(await read(rig, 8, 2), [7, 8], 'the posted write landed before the later read');
      assert.deepEqual(await read(rig, 16, 24), [...new Array(8).fill(1), ...new Array(8).fill(2), ...new Array(8).fill(3)]);
      // Out of bounds: refused, and the device never sees it.
      const before = log.length;
      assert.equal(await rig.errno(Command.REGION_READ, encodeRegionReadRequest({ offset: 60n, region: 0, count: 8 })), Errno.EINVAL);
      assert.equal(await rig.errno(Command.REGION_WRITE, encodeRegionWriteRequest({ offset: 2n ** 32n, region: 0, count: 1, data: new Uint8Array(1) })), Errno.EINVAL);
      assert.equal(log.length, before);
      assert.deepEqual(log, ['w4+4', 'r4+4', 'w8+2', 'w16+8', 'w24+8', 'w32+8', 'r8+2', 'r16+24']);
    } finally {
      await rig.close();
    }
  });
}
