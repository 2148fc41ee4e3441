import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Framer, type FrameEvent } from '../../src/transport/framer.js';
import { FramingFatalError } from '../../src/transport/errors.js';
import { encodeMessage, decodeHeader } from '../../src/protocol/header.js';
import { concatBytes } from '../../src/util/bytes.js';

const limits = { maxMessageSize: 4096, maxDrainSize: 1 << 20 };

function msg(id: number, command: number, payloadLen: number, fill = id): Uint8Array {
  return encodeMessage({ msgId: id, command, flags: 0, error: 0 }, new Uint8Array(payloadLen).fill(fill));
}

const concat = (...parts: Uint8Array[]): Uint8Array => concatBytes(parts);

function messages(evs: FrameEvent[]) {
  return evs.filter((e) => e.type === 'message').map((e) => (e as Extract<FrameEvent, { type: 'message' }>).msg);
}

test('every split point of two consecutive messages yields both intact', () => {
  const a = msg(1, 9, 16, 0xaa);
  const b = msg(2, 10, 7, 0xbb);
  const stream = concat(a, b);
  for (let i = 0; i <= stream.length; i++) {
    for (let j = i; j <= stream.length; j++) {
      const f = new Framer(limits, () => {});
      const evs = [
        ...f.push(stream.subarray(0, i)),
        ...f.push(stream.subarray(i, j)),
        ...f.push(stream.subarray(j)),
      ];
      const ms = messages(evs);
      assert.equal(ms.length, 2, `split ${i}/${j}`);
      assert.deepEqual([ms[0]!.header.msgId, ms[0]!.header.command, ms[0]!.payload.length], [1, 9, 16]);
      assert.deepEqual([ms[1]!.header.msgId, ms[1]!.header.command, ms[1]!.payload.length], [2, 10, 7]);
      assert.ok(ms[0]!.payload.every((x) => x === 0xaa));
      assert.ok(ms[1]!.payload.every((x) => x === 0xbb));
      assert.ok(f.idle);
    }
  }
});

test('byte-at-a-time delivery frames correctly', () => {
  const stream = concat(msg(1, 1, 0), msg(2, 2, 300), msg(3, 3, 1));
  const f = new Framer(limits, () => {});
  const evs: FrameEvent[] = [];
  for (let i = 0; i < stream.length; i++) evs.push(...f.push(stream.subarray(i, i + 1)));
  assert.deepEqual(messages(evs).map((m) => [m.header.msgId, m.payload.length]), [[1, 0], [2, 300], [3, 1]]);
});

test('fds belong to the message holding the last byte of the read', () => {
  const a = msg(1, 2, 32);
  const b = msg(2, 2, 32);
  // Read 1 ends inside b: fds are b's. (The kernel stops a read after the
  // segment carrying fds, so this is what a coalesced read looks like.)
  let f = new Framer(limits, () => {});
  let ms = messages([...f.push(concat(a, b.subarray(0, 10)), [7, 8]), ...f.push(b.subarray(10))]);
  assert.deepEqual(ms.map((m) => m.fds), [[], [7, 8]]);
  // Read ends exactly at the end of a: fds are a's.
  f = new Framer(limits, () => {});
  ms = messages([...f.push(a, [5]), ...f.push(b)]);
  assert.deepEqual(ms.map((m) => m.fds), [[5], []]);
  // Read ends in the middle of b's header.
  f = new Framer(limits, () => {});
  ms = messages([...f.push(concat(a, b.subarray(0, 3)), [9]), ...f.push(b.subarray(3))]);
  assert.deepEqual(ms.map((m) => m.fds), [[], [9]]);
  // Truncation flag travels with them.
  f = new Framer(limits, () => {});
  ms = messages(f.push(a, [], true));
  assert.equal(ms[0]!.fdsTruncated, true);
});

test('oversize message is skipped without desynchronising, next message is intact', () => {
  const closed: number[] = [];
  const big = msg(7, 10, 5000, 0x11);
  const next = msg(8, 9, 4, 0x22);
  const stream = concat(big, next);
  for (const step of [1, 13, 1000, big.length, stream.length]) {
    const g = new Framer(limits, (fds) => closed.push(...fds));
    const evs: FrameEvent[] = [];
    // fds sent with the oversize message arrive with a read ending inside it.
    for (let i = 0; i < stream.length; i += step) {
      const end = Math.min(i + step, stream.length);
      evs.push(...g.push(stream.subarray(i, end), i === 0 && end <= big.length ? [42] : []));
    }
    assert.equal(evs.length, 2);
    assert.equal(evs[0]!.type, 'oversize');
    assert.equal((evs[0] as { header: { msgId: number } }).header.msgId, 7);
    const m = messages(evs)[0]!;
    assert.equal(m.header.msgId, 8);
    assert.ok(m.payload.every((x) => x === 0x22));
    assert.deepEqual(m.fds, []);
  }
  assert.equal(closed.filter((x) => x === 42).length, 4, 'fds of a drained message are closed');
});

test('msg_size below 16 is fatal and closes held fds', () => {
  const closed: number[] = [];
  const f = new Framer(limits, (fds) => closed.push(...fds));
  const bad = msg(1, 1, 0);
  new DataView(bad.buffer).setUint32(4, 15, true);
  assert.throws(() => f.push(bad, [3]), FramingFatalError);
  assert.deepEqual(closed, [3]);
  assert.throws(() => f.push(msg(2, 1, 0)), FramingFatalError);
});

test('a declared size beyond the drain limit is fatal', () => {
  const f = new Framer(limits, () => {});
  const h = msg(1, 1, 0);
  new DataView(h.buffer).setUint32(4, 0xffffffff, true);
  assert.equal(decodeHeader(h).msgSize, 0xffffffff);
  assert.throws(() => f.push(h), FramingFatalError);
});
