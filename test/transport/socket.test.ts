import { test } from 'node:test';
import assert from 'node:assert/strict';
import { native } from '../../src/native/binding.js';
import { countOpenFds } from '../../src/native/fds.js';
import { Errno } from '../../src/protocol/errno.js';
import { encodeMessage } from '../../src/protocol/header.js';
import { Endpoint } from '../../src/transport/endpoint.js';
import { createMemoryPair } from '../../src/transport/memory-transport.js';
import { SocketTransport } from '../../src/transport/socket-transport.js';
import type { Message, Transport } from '../../src/transport/types.js';

const settle = (ms = 20) => new Promise((r) => setTimeout(r, ms));

function socketPair(limits = {}): [SocketTransport, SocketTransport] {
  const [a, b] = native.socketpair();
  return [new SocketTransport(a, limits), new SocketTransport(b, limits)];
}

function collect(t: Transport): Message[] {
  const got: Message[] = [];
  t.setHandlers({ onMessage: (m) => got.push(m) });
  return got;
}

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await settle(5);
  }
}

test('1 MiB messages go through a real socket intact, in order, with back-pressure', async () => {
  const [a, b] = socketPair({ maxMessageSize: 2 << 20, sendHighWaterMark: 1 << 20 });
  const got = collect(b);
  let drains = 0;
  a.setHandlers({ onDrain: () => drains++ });
  try {
    const sent: Uint8Array[] = [];
    let refused = 0;
    // More than the socket buffer (we ask for 4 MiB, which the kernel doubles) can hold.
    for (let i = 0; i < 16; i++) {
      const payload = new Uint8Array(1 << 20).map((_, j) => (i * 31 + j) & 0xff);
      sent.push(payload);
      if (!a.send(encodeMessage({ msgId: i, command: 10, flags: 0, error: 0 }, payload))) refused++;
    }
    assert.ok(refused > 0, 'send() reported back-pressure');
    await waitFor(() => got.length === 16);
    got.forEach((m, i) => {
      assert.equal(m.header.msgId, i);
      assert.ok(Buffer.from(m.payload).equals(Buffer.from(sent[i]!)), `message ${i} intact`);
    });
    await waitFor(() => drains > 0);
  } finally {
    await a.close();
    await b.close();
  }
});

test('fds arrive with their own message when reads coalesce several messages', async () => {
  const before = countOpenFds();
  const [a, b] = socketPair();
  const got = collect(b);
  try {
    b.pause(); // let everything pile up in the kernel first
    const efds = [native.eventfd(1, 0), native.eventfd(2, 0), native.eventfd(3, 0)];
    a.send(encodeMessage({ msgId: 1, command: 9, flags: 0, error: 0 }, new Uint8Array(10)));
    a.send(encodeMessage({ msgId: 2, command: 8, flags: 0, error: 0 }, new Uint8Array(20)), [efds[0]!, efds[1]!]);
    a.send(encodeMessage({ msgId: 3, command: 9, flags: 0, error: 0 }, new Uint8Array(5)));
    a.send(encodeMessage({ msgId: 4, command: 2, flags: 0, error: 0 }, new Uint8Array(32)), [efds[2]!]);
    a.send(encodeMessage({ msgId: 5, command: 9, flags: 0, error: 0 }));
    for (const fd of efds) native.close(fd);
    await settle();
    b.resume();
    await waitFor(() => got.length === 5);
    assert.deepEqual(got.map((m) => m.fds.length), [0, 2, 0, 1, 0]);
    // The fds are the eventfds we sent (their counters say which).
    assert.deepEqual(got[1]!.fds.map((fd) => native.eventfdRead(fd)), [1n, 2n]);
    assert.equal(native.eventfdRead(got[3]!.fds[0]!), 3n);
    for (const m of got) b.releaseFds(m.fds);
  } finally {
    await a.close();
    await b.close();
  }
  assert.equal(countOpenFds(), before, 'no fd left behind');
});

test('an oversize header is skipped (body drained) and the next message is framed correctly', async () => {
  const [a, b] = socketPair({ maxMessageSize: 4096, maxDrainSize: 1 << 20 });
  const got = collect(b);
  const skipped: number[] = [];
  b.setHandlers({ onFramingError: (e) => skipped.push(e.header.msgId) });
  try {
    a.send(encodeMessage({ msgId: 7, command: 10, flags: 0, error: 0 }, new Uint8Array(100_000).fill(0xee)));
    a.send(encodeMessage({ msgId: 8, command: 9, flags: 0, error: 0 }, new Uint8Array([1, 2, 3])));
    await waitFor(() => got.length === 1);
    assert.deepEqual(skipped, [7]);
    assert.deepEqual(Array.from(got[0]!.payload), [1, 2, 3]);
  } finally {
    await a.close();
    await b.close();
  }
});

test('a size below 16 or beyond the drain limit drops the connection', async () => {
  for (const size of [8, 0x7fffffff]) {
    const [a, b] = socketPair({ maxDrainSize: 1 << 20 });
    let closedWith: Error | undefined | null = null;
    b.setHandlers({ onClose: (e) => (closedWith = e) });
    const bad = encodeMessage({ msgId: 1, command: 1, flags: 0, error: 0 });
    new DataView(bad.buffer).setUint32(4, size, true);
    a.send(bad);
    await waitFor(() => closedWith !== null);
    assert.equal((closedWith as unknown as { code?: string })?.code, 'ERR_VFIO_USER_FRAMING');
    await a.close();
  }
});

test('close() is shutdown, drain, close: a peer with unsent data sees EOF, not a reset', async () => {
  const [fa, fb] = native.socketpair();
  const server = new SocketTransport(fa);
  server.pause(); // never reads what the peer sends
  const buf = new Uint8Array(1024);
  const fdsOut = new Int32Array(4);
  // The peer writes 64 KiB that the server never read.
  assert.ok(native.sendmsg(fb, new Uint8Array(65536), 0, 65536, null) > 0);
  await server.close();
  // The peer's next read is a clean EOF (0), not ECONNRESET.
  let n = -1;
  for (let i = 0; i < 100 && n < 0; i++) {
    n = native.recvmsg(fb, buf, 0, buf.length, fdsOut);
    if (n < 0) await settle(5);
  }
  assert.equal(n, 0);
  native.close(fb);
});

test('endpoint: replies matched by id with repeats, commands interleaved, timeouts, NO_REPLY', async () => {
  const [ta, tb] = createMemoryPair({ dupFd: native.dup, closeFd: native.close });
  const client = new Endpoint(ta, { requestTimeoutMs: 100 });
  const server = new Endpoint(tb);
  const order: string[] = [];
  // The server answers 9 normally, 10 with an error, ignores 11, and asks the client a question first for 12.
  server.setHandlers({
    onCommand: async (m) => {
      if (m.header.command === 9) server.reply(m.header, m.payload);
      else if (m.header.command === 10) server.replyError(m.header, Errno.EPERM);
      else if (m.header.command === 12) {
        const r = await server.request(11, new Uint8Array([42]));
        order.push(`server got ${r.payload[0]}`);
        server.reply(m.header, r.payload);
      }
    },
  });
  client.setHandlers({
    onCommand: (m) => {
      order.push('client answers a server request');
      client.reply(m.header, new Uint8Array([m.payload[0]! + 1]));
    },
  });
  try {
    const [r1, r2] = await Promise.all([client.request(9, new Uint8Array([1])), client.request(9, new Uint8Array([2]))]);
    assert.deepEqual([r1.payload[0], r2.payload[0]], [1, 2]);
    await assert.rejects(client.request(10), (e: { errno?: number }) => e.errno === Errno.EPERM);
    await assert.rejects(client.request(11), { code: 'ERR_VFIO_USER_TIMEOUT' });
    const r = await client.request(12);
    assert.equal(r.payload[0], 43);
    assert.deepEqual(order, ['client answers a server request', 'server got 43']);
    // A NO_REPLY command gets no reply even when the handler replies.
    let stray = 0;
    client.setHandlers({ onStrayReply: () => stray++ });
    server.setHandlers({ onCommand: (m) => server.reply(m.header) });
    client.post(9);
    await settle();
    assert.equal(stray, 0);
    // Closing fails what is still waiting.
    const waiting = client.request(11, undefined, { timeoutMs: 10_000 });
    server.setHandlers({ onCommand: () => {} });
    await settle();
    await server.close();
    await assert.rejects(waiting, { code: 'ERR_VFIO_USER_CLOSED' });
  } finally {
    await client.close();
    await server.close();
  }
});
