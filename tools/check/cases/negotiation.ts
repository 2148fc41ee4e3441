// VERSION negotiation: the exact requests QEMU and libvfio-user's client
// send, and malformed ones a server must refuse without crashing.
import { Command } from '../../../src/protocol/commands.js';
import { encodeDeviceInfoRequest } from '../../../src/protocol/device-info.js';
import { decodeVersionWithCapabilities, encodeVersion } from '../../../src/protocol/version.js';
import type { Message } from '../../../src/transport/types.js';
import { answer, closeFds, eventfd, getInfo } from '../ops.js';
import { isError, type RawClient } from '../raw-client.js';
import { expect, fail, pass, type CaseContext, type CheckCase, type CaseOutcome } from '../types.js';

/** QEMU 11.1.3's VERSION request JSON, byte for byte (spaces and key order as QEMU writes them). */
export const QEMU_VERSION_JSON =
  '{"capabilities": {"pgsizes": 4096, "max_msg_fds": 16, "max_dma_maps": 65535, "max_data_xfer_size": 1048576, ' +
  '"migration": {"max_bitmap_size": 268435456, "pgsize": 4096}, "write_multiple": true}}';
/** libvfio-user's samples/client.c VERSION JSON (sent as 0.2). */
export const LVU_VERSION_JSON = '{"capabilities":{"max_msg_fds":32,"max_data_xfer_size":1024}}';

const SPEC = 'spec: VFIO_USER_VERSION';

/** VERSION payload with raw bytes after major/minor. */
function versionBytes(major: number, minor: number, tail: Uint8Array): Uint8Array {
  const b = new Uint8Array(4 + tail.length);
  const dv = new DataView(b.buffer);
  dv.setUint16(0, major, true);
  dv.setUint16(2, minor, true);
  b.set(tail, 4);
  return b;
}

/** The server must refuse: an error reply or closing the connection; never success. Then it must serve a new client. */
async function refused(ctx: CaseContext, c: RawClient, m: Message | null, what: string): Promise<CaseOutcome> {
  let saw: string;
  if (m === null) saw = c.closed ? 'closed the connection' : 'no reply';
  else {
    c.release(m);
    if (!isError(m)) return fail(`${what} was accepted`);
    saw = `${answer(m)}${(await c.waitClosed(300)) ? ', then closed the connection' : ''}`;
  }
  if (saw === 'no reply') return fail(`${what}: no reply within ${ctx.timeoutMs} ms and the connection stayed open`);
  await c.close();
  if (!(await ctx.serverAlive())) return fail(`${what}: ${saw}; then the server no longer accepts clients`);
  return pass(`saw: ${saw}`);
}

async function sendVersion(ctx: CaseContext, payload: Uint8Array, fds?: number[]): Promise<{ c: RawClient; m: Message | null }> {
  const c = await ctx.connect(true);
  const id = c.send(Command.VERSION, payload, fds ? { fds } : {});
  let m: Message | null = null;
  try {
    m = await c.reply(id, Command.VERSION);
  } catch {
    m = null;
  }
  return { c, m };
}

export const negotiationCases: CheckCase[] = [
  {
    id: 'negotiation/qemu-request',
    group: 'negotiation',
    spec: `${SPEC}; QEMU 11.1 limits`,
    title: "QEMU's exact 198-byte VERSION request gets a reply QEMU accepts",
    async run(ctx) {
      const req = encodeVersion({ major: 0, minor: 0, json: QEMU_VERSION_JSON });
      expect(req.length === 198, `internal: QEMU request is ${req.length} bytes`);
      const { c, m } = await sendVersion(ctx, req);
      expect(m, 'no reply to VERSION');
      expect(!isError(m), `refused with ${answer(m)}`);
      const v = decodeVersionWithCapabilities(m.payload);
      expect(v.major === 0, `major ${v.major}`);
      expect(v.minor === 0, `minor ${v.minor} > the client's 0`);
      // QEMU's receive buffer is the size of its request: a longer reply makes realize fail.
      expect(m.payload.length <= 198, `reply payload is ${m.payload.length} bytes; QEMU refuses more than its 198-byte request`);
      const caps = v.capabilities;
      expect(caps.maxMsgFds <= 16, `max_msg_fds ${caps.maxMsgFds} > 16 (QEMU refuses)`);
      expect(caps.maxDataXferSize <= 64 * 1048576, `max_data_xfer_size ${caps.maxDataXferSize} > 64 MiB (QEMU refuses)`);
      expect(!caps.present.has('twin_socket'), 'twin_socket in the reply although the client did not offer it');
      if (caps.migration) expect(caps.migration.pgsize % 4096 === 0, `migration.pgsize ${caps.migration.pgsize}`);
      await getInfo(c);
      return pass(`reply ${m.payload.length} bytes: ${v.json ?? '(no JSON)'}`);
    },
  },
  {
    id: 'negotiation/lvu-request',
    group: 'negotiation',
    spec: SPEC,
    title: "libvfio-user's client request (0.2) gets minor <= 2, capabilities it offered only",
    async run(ctx) {
      const { c, m } = await sendVersion(ctx, encodeVersion({ major: 0, minor: 2, json: LVU_VERSION_JSON }));
      expect(m && !isError(m), `refused: ${m ? answer(m) : 'no reply'}`);
      const v = decodeVersionWithCapabilities(m.payload);
      expect(v.major === 0 && v.minor <= 2, `version ${v.major}.${v.minor}`);
      expect(!v.capabilities.present.has('twin_socket'), 'twin_socket without an offer (libvfio-user\'s client crashes on it)');
      await getInfo(c);
      return pass(`version 0.${v.minor}`);
    },
  },
  {
    id: 'negotiation/no-json',
    group: 'negotiation',
    spec: SPEC,
    title: 'VERSION without JSON (defaults for every capability) is accepted',
    async run(ctx) {
      const { c, m } = await sendVersion(ctx, versionBytes(0, 0, new Uint8Array(0)));
      expect(m && !isError(m), `refused: ${m ? answer(m) : 'no reply'}`);
      const v = decodeVersionWithCapabilities(m.payload);
      expect(v.major === 0 && v.minor === 0, `version ${v.major}.${v.minor}`);
      await getInfo(c);
      return pass();
    },
  },
  {
    id: 'negotiation/unknown-capability',
    group: 'negotiation',
    spec: SPEC,
    title: 'an unknown capability key is ignored',
    async run(ctx) {
      const { c, m } = await sendVersion(ctx, encodeVersion({ major: 0, minor: 2, json: '{"capabilities":{"max_msg_fds":16,"x_check_unknown":{"a":[1,2]}}}' }));
      expect(m && !isError(m), `refused: ${m ? answer(m) : 'no reply'}`);
      const v = decodeVersionWithCapabilities(m.payload);
      expect(!v.capabilities.present.has('x_check_unknown'), 'the reply echoes a capability the server cannot know');
      await getInfo(c);
      return pass();
    },
  },
  {
    id: 'negotiation/bad-major',
    group: 'negotiation',
    spec: SPEC,
    title: 'major 1 is refused (error reply or close)',
    async run(ctx) {
      const { c, m } = await sendVersion(ctx, encodeVersion({ major: 1, minor: 0, json: '{"capabilities":{}}' }));
      return refused(ctx, c, m, 'VERSION 1.0');
    },
  },
  {
    id: 'negotiation/bad-json',
    group: 'negotiation',
    spec: SPEC,
    title: 'malformed JSON is refused',
    async run(ctx) {
      const { c, m } = await sendVersion(ctx, encodeVersion({ major: 0, minor: 2, json: '{"capabilities": {"max_msg_fds": 16,' }));
      return refused(ctx, c, m, 'VERSION with truncated JSON');
    },
  },
  {
    id: 'negotiation/wrong-types',
    group: 'negotiation',
    spec: SPEC,
    title: 'capabilities of the wrong type are refused',
    async run(ctx) {
      const { c, m } = await sendVersion(ctx, encodeVersion({ major: 0, minor: 2, json: '{"capabilities":{"max_msg_fds":"many","max_data_xfer_size":-1}}' }));
      return refused(ctx, c, m, 'VERSION with a string max_msg_fds');
    },
  },
  {
    id: 'negotiation/no-nul',
    group: 'negotiation',
    spec: SPEC,
    title: 'JSON without its NUL terminator is refused',
    async run(ctx) {
      const { c, m } = await sendVersion(ctx, versionBytes(0, 2, new TextEncoder().encode('{"capabilities":{}}')));
      return refused(ctx, c, m, 'VERSION JSON without NUL');
    },
  },
  {
    id: 'negotiation/short',
    group: 'negotiation',
    spec: SPEC,
    title: 'a 2-byte VERSION payload is refused',
    async run(ctx) {
      const { c, m } = await sendVersion(ctx, new Uint8Array([0, 0]));
      return refused(ctx, c, m, 'VERSION of 2 bytes');
    },
  },
  {
    id: 'negotiation/not-first',
    group: 'negotiation',
    spec: SPEC,
    title: 'a command before VERSION is refused',
    async run(ctx) {
      const c = await ctx.connect(true);
      const id = c.send(Command.DEVICE_GET_INFO, encodeDeviceInfoRequest());
      let m: Message | null = null;
      try {
        m = await c.reply(id, Command.DEVICE_GET_INFO);
      } catch {
        m = null;
      }
      return refused(ctx, c, m, 'DEVICE_GET_INFO before VERSION');
    },
  },
  {
    id: 'negotiation/with-fd',
    group: 'negotiation',
    spec: `${SPEC}; libvfio-user refuses fds here`,
    title: 'a VERSION carrying an fd: refused or accepted, the fd is not kept',
    async run(ctx) {
      const fd = eventfd();
      try {
        const { c, m } = await sendVersion(ctx, encodeVersion({ major: 0, minor: 2, json: '{"capabilities":{"max_msg_fds":16}}' }), [fd]);
        if (m && !isError(m)) {
          c.release(m);
          await getInfo(c);
          return pass('saw: accepted (fd ignored)');
        }
        return refused(ctx, c, m, 'VERSION with an fd');
      } finally {
        closeFds([fd]);
      }
    },
  },
  {
    id: 'negotiation/twice',
    group: 'negotiation',
    spec: SPEC,
    title: 'a second VERSION on a negotiated connection: refused or answered, the connection stays usable or closes',
    async run(ctx) {
      const c = await ctx.connect();
      const m = await c.call(Command.VERSION, encodeVersion({ major: 0, minor: 2, json: '{"capabilities":{}}' })).catch(() => null);
      if (m === null) {
        expect(c.closed, 'no reply to a second VERSION');
        await c.close();
        expect(await ctx.serverAlive(), 'server gone after a second VERSION');
        return pass('saw: closed the connection');
      }
      c.release(m);
      await getInfo(c);
      return pass(`saw: ${answer(m)}`);
    },
  },
];
