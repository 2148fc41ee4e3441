// The client against a scripted server (an Endpoint on the other end of an
// in-memory pair): the DMA requests it must refuse, negotiation failures,
// and the hook for extension commands.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { native } from '../../src/native/binding.js';
import { Command } from '../../src/protocol/commands.js';
import { Errno } from '../../src/protocol/errno.js';
import { RemoteError } from '../../src/protocol/errors.js';
import { encodeDmaReadRequest, encodeDmaWriteRequest, decodeDmaReadReply, decodeDmaWriteReply } from '../../src/protocol/dma-rw.js';
import { decodeDmaMapRequest } from '../../src/protocol/dma-map.js';
import { decodeVersionWithCapabilities, encodeVersion, encodeVersionWithCapabilities, type CapabilitiesInput } from '../../src/protocol/version.js';
import { Endpoint } from '../../src/transport/endpoint.js';
import { createMemoryPair } from '../../src/transport/memory-transport.js';
import type { Message } from '../../src/transport/types.js';
import { ClientError, ClientErrorCode, VfioUserClient, type ClientOptions } from '../../src/client/index.js';

interface Fake {
  ep: Endpoint;
  client: VfioUserClient;
  versionRequest: Message;
  maps: ReturnType<typeof decodeDmaMapRequest>[];
}

async function fake(opts: ClientOptions = {}, versionReply?: (m: Message) => Uint8Array): Promise<Fake> {
  const [s, c] = createMemoryPair({ dupFd: native.dup, closeFd: native.close });
  const ep = new Endpoint(s);
  const maps: Fake['maps'] = [];
  let versionRequest: Message | null = null;
  ep.setHandlers({
    onCommand: (m) => {
      s.releaseFds(m.fds);
      if (m.header.command === Command.VERSION) {
        versionRequest = m;
        const caps: CapabilitiesInput = { maxMsgFds: 8, maxDataXferSize: 4096 };
        ep.reply(m.header, versionReply ? versionReply(m) : encodeVersionWithCapabilities(0, 1, caps));
      } else if (m.header.command === Command.DMA_MAP) {
        maps.push(decodeDmaMapRequest(m.payload));
        ep.reply(m.header);
      } else if (m.header.command === Command.DMA_UNMAP) {
        ep.reply(m.header, m.payload);
      } else ep.replyError(m.header, Errno.ENOSYS);
    },
  });
  const client = await VfioUserClient.over(c, opts);
  return { ep, client, versionRequest: versionRequest!, maps };
}

const errnoOf = (e: unknown) => (e instanceof RemoteError ? e.errno : -1);

test('the VERSION request carries our capabilities', async () => {
  const f = await fake({ maxDataXferSize: 1024, twinSocket: false, extensions: { my_ext: { on: true } } });
  try {
    const v = decodeVersionWithCapabilities(f.versionRequest.payload);
    assert.equal(v.major, 0);
    assert.equal(v.minor, 2);
    const c = v.capabilities;
    assert.equal(c.maxMsgFds, 16);
    assert.equal(c.maxDataXferSize, 1024);
    assert.equal(c.pgsizes, 4096);
    assert.equal(c.maxDmaMaps, 65535);
    assert.deepEqual(c.migration, { pgsize: 4096, maxBitmapSize: 256 * 1048576 });
    assert.equal(c.twinSocket, undefined);
    assert.deepEqual(c.extensions, { my_ext: { on: true } });
    assert.equal(f.client.version.minor, 1);
    assert.equal(f.client.serverCaps.maxDataXferSize, 4096);
    assert.equal(f.client.xferChunk, 4096);
  } finally {
    await f.client.close();
  }
});

test('negotiation failures reject with ERR_VFIO_USER_NEGOTIATION', async () => {
  const isNeg = (e: unknown) => e instanceof ClientError && e.code === ClientErrorCode.NEGOTIATION;
  await assert.rejects(fake({}, () => encodeVersion({ major: 1, minor: 0 })), isNeg);
  await assert.rejects(fake({}, () => encodeVersion({ major: 0, minor: 3 })), isNeg);
  await assert.rejects(fake({}, () => encodeVersion({ major: 0, minor: 0, json: '{"capabilities": 5}' })), isNeg);
  // twin_socket that we did not offer, or without its fd
  await assert.rejects(fake({}, () => encodeVersionWithCapabilities(0, 0, { twinSocket: { supported: true, fdIndex: 0 } })), isNeg);
  await assert.rejects(fake({ twinSocket: true }, () => encodeVersionWithCapabilities(0, 0, { twinSocket: { supported: true, fdIndex: 0 } })), isNeg);
});

test('DMA requests the client must refuse get the right errno', async () => {
  const f = await fake({ maxDataXferSize: 1024 });
  const { ep, client } = f;
  try {
    const a = await client.createGuestMemory({ iova: 0x1000, size: 0x1000, useFd: false });
    const b = await client.createGuestMemory({ iova: 0x2000, size: 0x1000, useFd: false });
    const ro = await client.createGuestMemory({ iova: 0x8000, size: 0x1000, useFd: false, readOnly: true });
    assert.deepEqual(f.maps.map((m) => [m.address, m.size, m.flags]), [
      [0x1000n, 0x1000n, 3],
      [0x2000n, 0x1000n, 3],
      [0x8000n, 0x1000n, 1],
    ]);
    a.bytes.fill(0xaa);
    b.bytes.fill(0xbb);
    // A read spanning two adjacent memories is served from both.
    const r = decodeDmaReadReply((await ep.request(Command.DMA_READ, encodeDmaReadRequest({ address: 0x1ff0n, count: 32n }))).payload);
    assert.equal(r.address, 0x1ff0n);
    assert.equal(r.count, 32n);
    assert.deepEqual([...r.data], [...new Array(16).fill(0xaa), ...new Array(16).fill(0xbb)]);
    const w = await ep.request(Command.DMA_WRITE, encodeDmaWriteRequest({ address: 0x2010n, count: 2n, data: new Uint8Array([1, 2]) }));
    assert.equal(w.payload.length, 16, 'DMA_WRITE reply is the 16-byte echo');
    assert.deepEqual(decodeDmaWriteReply(w.payload), { address: 0x2010n, count: 2n });
    assert.deepEqual([...b.bytes.subarray(0x10, 0x12)], [1, 2]);

    const refuse = async (cmd: number, payload: Uint8Array, fds?: number[]) =>
      errnoOf(await ep.request(cmd, payload, fds ? { fds } : {}).then(() => null, (e) => e));
    assert.equal(await refuse(Command.DMA_READ, encodeDmaReadRequest({ address: 0x5000n, count: 4n })), Errno.ENOENT);
    assert.equal(await refuse(Command.DMA_READ, encodeDmaReadRequest({ address: 0x2ff0n, count: 32n })), Errno.ENOENT, 'runs off the end');
    assert.equal(await refuse(Command.DMA_READ, encodeDmaReadRequest({ address: 0x1000n, count: 1025n })), Errno.E2BIG);
    assert.equal(await refuse(Command.DMA_READ, new Uint8Array(8)), Errno.EINVAL);
    assert.equal(await refuse(Command.DMA_WRITE, encodeDmaWriteRequest({ address: 0x1000n, count: 2000n, data: new Uint8Array(2000) })), Errno.E2BIG);
    assert.equal(await refuse(Command.DMA_WRITE, encodeDmaWriteRequest({ address: 0x8000n, count: 1n, data: new Uint8Array(1) })), Errno.EPERM);
    const efd = native.eventfd(0, 0);
    assert.equal(await refuse(Command.DMA_READ, encodeDmaReadRequest({ address: 0x1000n, count: 4n }), [efd]), Errno.EINVAL);
    native.close(efd);
    assert.equal(await refuse(99, new Uint8Array(4)), Errno.ENOSYS);
    assert.equal(client.stats.errors, 8);

    // Unmapped memory is no longer served.
    await a.unmap();
    assert.equal(await refuse(Command.DMA_READ, encodeDmaReadRequest({ address: 0x1000n, count: 4n })), Errno.ENOENT);
    void ro;
  } finally {
    await client.close();
  }
});

test('onServerCommand serves extension commands; a throw becomes an error reply', async () => {
  const f = await fake();
  const { ep, client } = f;
  try {
    const seen: number[] = [];
    client.onServerCommand(40, (m) => {
      seen.push(m.payload[0]!);
      client.notifyIrq('msix', m.payload[0]!);
      return new Uint8Array([0x42]);
    });
    client.onServerCommand(41, async () => {
      throw Object.assign(new Error('nope'), { errno: Errno.EBUSY });
    });
    const wait = client.waitForIrq('msix', 3, { timeoutMs: 1000 });
    const r = await ep.request(40, new Uint8Array([3]));
    assert.deepEqual([...r.payload], [0x42]);
    assert.equal(await wait, 1);
    assert.deepEqual(seen, [3]);
    assert.equal(errnoOf(await ep.request(41, new Uint8Array(1)).then(() => null, (e) => e)), Errno.EBUSY);
    client.onServerCommand(40, null);
    assert.equal(errnoOf(await ep.request(40, new Uint8Array(1)).then(() => null, (e) => e)), Errno.ENOSYS);
  } finally {
    await client.close();
  }
});

test('calls after close reject with ERR_VFIO_USER_CLIENT_CLOSED; server EOF emits close', async () => {
  const f = await fake();
  const closed = new Promise((r) => f.client.once('close', r));
  await f.ep.close();
  await closed;
  assert.equal(f.client.closed, true);
  await assert.rejects(f.client.getDeviceInfo(), (e: unknown) => e instanceof ClientError && e.code === ClientErrorCode.CLOSED);
  await f.client.close();
});
