// A client that sends requests with big replies and never reads them must not
// make the server buffer replies without bound: once the send queue passes
// its high-water mark the server stops running commands and reading the
// socket until the client catches up; then every reply arrives, in order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native } from '../../src/native/binding.js';
import { Command } from '../../src/protocol/commands.js';
import { DeviceContext } from '../../src/server/context.js';
import { concat, frame, versionPayload } from '../fuzz/gen.js';

const u32s = (...v: number[]): Uint8Array => new Uint8Array(new Uint32Array(v).buffer);
const u64s = (...v: bigint[]): Uint8Array => new Uint8Array(new BigUint64Array(v).buffer);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('a client that never reads: server-side reply buffering stays bounded, and nothing is lost', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vfu-bp-'));
  const path = join(dir, 's');
  const MiB = 1048576;
  const ctx = new DeviceContext({ vendorId: 1, deviceId: 2, regions: { 0: { size: MiB, shared: true } } });
  await ctx.listen(path);
  const fd = native.connect(path);
  try {
    const v = frame(Command.VERSION, versionPayload(null));
    assert.equal(native.sendmsg(fd, v, 0, v.length, null), v.length);
    const N = 200; // 200 x 1 MiB replies if the server buffered them all
    const before = process.memoryUsage().arrayBuffers;
    let peak = 0;
    let sent = 0;
    for (let i = 0; i < N; i++) {
      const m = frame(Command.REGION_READ, concat(u64s(0n), u32s(0, MiB)), i + 2);
      const n = native.sendmsg(fd, m, 0, m.length, null);
      peak = Math.max(peak, process.memoryUsage().arrayBuffers - before);
      if (n < 0) break; // the server stopped reading us: that is the point
      assert.equal(n, m.length);
      sent++;
      await new Promise((r) => setImmediate(r));
    }
    await sleep(100);
    peak = Math.max(peak, process.memoryUsage().arrayBuffers - before);
    assert.ok(peak < 48 * MiB, `server buffered ${(peak / MiB).toFixed(0)} MiB of replies for a client that does not read`);
    assert.ok(sent >= 10, `only ${sent} requests went out`);
    assert.equal(ctx.connected, true);
    // Now read: a reply to every request sent comes, in order, whole.
    const buf = new Uint8Array(4 * MiB);
    const fdsOut = new Int32Array(4);
    let stream: Uint8Array = new Uint8Array(0);
    let next = 1;
    const deadline = Date.now() + 20000;
    while (next <= sent + 1) {
      assert.ok(Date.now() < deadline, `only ${next - 1} of ${sent + 1} replies arrived`);
      const n = native.recvmsg(fd, buf, 0, buf.length, fdsOut);
      assert.notEqual(n, 0, 'server closed the connection');
      if (n < 0) {
        await sleep(2);
        continue;
      }
      stream = concat(stream, buf.subarray(0, n));
      while (stream.length >= 16) {
        const dv = new DataView(stream.buffer, stream.byteOffset);
        const size = dv.getUint32(4, true);
        if (stream.length < size) break;
        assert.equal(dv.getUint16(0, true), next, 'replies in order');
        assert.equal(dv.getUint32(8, true), 1, 'a success reply');
        if (next > 1) assert.equal(size, 16 + 16 + MiB);
        next++;
        stream = stream.slice(size);
      }
    }
  } finally {
    native.close(fd);
    await ctx.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
