import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decodeState, encodeState, stateMigration } from '../../src/server/state-stream.js';
import { crc32 } from '../../src/util/crc32.js';

test('crc32 matches the standard check value', () => {
  assert.equal(crc32(new TextEncoder().encode('123456789')), 0xcbf43926);
});

test('state sections round-trip; any flipped byte is detected', () => {
  fc.assert(
    fc.property(fc.dictionary(fc.string({ maxLength: 8 }), fc.uint8Array({ maxLength: 64 })), fc.nat(), (sections, flip) => {
      const s = encodeState('dev/1', sections);
      const back = decodeState('dev/1', s);
      assert.deepEqual(Object.keys(back), Object.keys(sections));
      for (const k of Object.keys(sections)) assert.deepEqual(back[k], sections[k]);
      const bad = s.slice();
      bad[flip % bad.length]! ^= 0x40;
      assert.throws(() => decodeState('dev/1', bad), { code: 'ERR_VFIO_USER_PROTOCOL' });
    }),
  );
  assert.throws(() => decodeState('dev/2', encodeState('dev/1', {})), /tag/);
});

test('stateMigration streams a snapshot taken at STOP_COPY and restores it on RESUMING -> STOP', async () => {
  let regs = new Uint8Array([1, 2, 3]);
  const mem = new Uint8Array(10000).fill(7);
  const src = stateMigration({ tag: 't/1', save: () => ({ regs, mem }), load: () => {} });
  let loaded: Record<string, Uint8Array> | null = null;
  const dst = stateMigration({ tag: 't/1', save: () => ({}), load: (s) => void (loaded = s) });
  await src.transition('STOP', 'RUNNING');
  await src.transition('STOP_COPY', 'STOP');
  regs = new Uint8Array([9]); // changes after the snapshot are not in the stream
  await dst.transition('STOP', 'RUNNING');
  await dst.transition('RESUMING', 'STOP');
  for (;;) {
    const c = await src.read(4096);
    if (c.length === 0) break;
    await dst.write(c);
  }
  await dst.transition('STOP', 'RESUMING');
  assert.deepEqual(loaded!['regs'], new Uint8Array([1, 2, 3]));
  assert.deepEqual(loaded!['mem'], mem);
  // A truncated stream fails the transition.
  await dst.transition('RESUMING', 'STOP');
  await dst.write(new Uint8Array(20));
  await assert.rejects(() => Promise.resolve(dst.transition('STOP', 'RESUMING')), /device state stream/);
});

test('stateMigration buffers at most maxStreamBytes of an incoming stream (E2BIG beyond), and a new RESUMING starts over', async () => {
  let loaded: Record<string, Uint8Array> | null = null;
  const dst = stateMigration({ tag: 't/1', save: () => ({}), load: (s) => void (loaded = s), maxStreamBytes: 1000 });
  await dst.transition('RESUMING', 'RUNNING');
  await dst.write(new Uint8Array(600));
  await assert.rejects(async () => dst.write(new Uint8Array(401)), (e: { errno?: number }) => e.errno === 7 /* E2BIG */);
  // Back to RESUMING: the limit counts from zero again, and a real stream fits.
  await dst.transition('RESUMING', 'RUNNING');
  const stream = encodeState('t/1', { regs: new Uint8Array([9, 8, 7]) });
  await dst.write(new Uint8Array(stream.subarray(0, 10)));
  await dst.write(new Uint8Array(stream.subarray(10)));
  await dst.transition('STOP', 'RESUMING');
  assert.deepEqual(Array.from(loaded!['regs']!), [9, 8, 7]);
});
