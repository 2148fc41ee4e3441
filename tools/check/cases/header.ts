// The message header: command numbers, type bits, reserved flags, sizes,
// oversize bodies, NO_REPLY and msg_id echo.
import { Command } from '../../../src/protocol/commands.js';
import { encodeDeviceInfoRequest } from '../../../src/protocol/device-info.js';
import { FLAG_NO_REPLY, encodeMessage, isReply } from '../../../src/protocol/header.js';
import { encodeRegionReadRequest, encodeRegionWriteRequest } from '../../../src/protocol/region-access.js';
import type { Message } from '../../../src/transport/types.js';
import { answer, errReply, okRead } from '../ops.js';
import { accessRegion } from '../profile.js';
import { isError, type RawClient } from '../raw-client.js';
import { expect, fail, pass, type CaseContext, type CheckCase, type CaseOutcome } from '../types.js';

const SPEC = 'spec: Header';

/** After an odd message: the next GET_INFO gets its reply (first), or the connection closed cleanly. */
async function streamIntact(ctx: CaseContext, c: RawClient, what: string, allowClose: boolean): Promise<CaseOutcome | string> {
  const id = c.send(Command.DEVICE_GET_INFO, encodeDeviceInfoRequest());
  let m: Message | null;
  // Whatever the odd message caused (an error reply or nothing) comes first.
  const seen: string[] = [];
  for (;;) {
    m = await c.next();
    if (!m) break;
    c.release(m);
    if (isReply(m.header.flags) && m.header.msgId === id && m.header.command === Command.DEVICE_GET_INFO) {
      return isError(m) ? fail(`after ${what}, DEVICE_GET_INFO failed with ${answer(m)}`) : seen.length ? `answered ${seen.join(', ')}` : 'no answer';
    }
    seen.push(isReply(m.header.flags) ? answer(m) : `command ${m.header.command}`);
    if (seen.length > 2) return fail(`after ${what}, unexpected messages: ${seen.join(', ')}`);
  }
  if (c.closed) {
    if (!allowClose) return fail(`the server closed the connection after ${what}`);
    await c.close();
    if (!(await ctx.serverAlive())) return fail(`the server no longer accepts clients after ${what}`);
    return 'closed the connection';
  }
  return fail(`after ${what}, no reply to DEVICE_GET_INFO within ${ctx.timeoutMs} ms (stream lost)`);
}

function headerCase(id: string, title: string, spec: string, build: (c: RawClient) => Uint8Array, opts: { mustError?: boolean; allowClose?: boolean } = {}): CheckCase {
  return {
    id: `header/${id}`,
    group: 'header',
    spec,
    title,
    async run(ctx) {
      const c = await ctx.connect();
      c.sendRaw(build(c));
      const r = await streamIntact(ctx, c, title, opts.allowClose ?? false);
      if (typeof r !== 'string') return r;
      if (opts.mustError && !/^answered .*E/.test(r) && r !== 'closed the connection') return fail(`no error reply (${r})`);
      return pass(`saw: ${r}`);
    },
  };
}

const msg = (c: RawClient, command: number, flags: number, payload?: Uint8Array, error = 0): Uint8Array =>
  encodeMessage({ msgId: c.id(), command, flags, error }, payload);

export const headerCases: CheckCase[] = [
  headerCase('unknown-command', 'an unknown command (0x4242) gets an error reply; the stream stays in sync', `${SPEC}; spec: Commands`, (c) => msg(c, 0x4242, 0, new Uint8Array(8)), { mustError: true }),
  headerCase('command-zero', 'command 0 gets an error reply', `${SPEC}; spec: Commands`, (c) => msg(c, 0, 0, new Uint8Array(8)), { mustError: true }),
  headerCase('obsolete-dirty-pages', 'the obsolete command 14 (DIRTY_PAGES) gets an error reply', `${SPEC}; spec: Commands`, (c) => msg(c, 14, 0, new Uint8Array(16)), { mustError: true }),
  headerCase('server-command-from-client', 'DMA_READ sent by the client gets an error reply', 'spec: VFIO_USER_DMA_READ', (c) => msg(c, Command.DMA_READ, 0, new Uint8Array(16)), { mustError: true }),
  headerCase('stray-reply', 'an unsolicited reply from the client is ignored or refused; the stream stays in sync', SPEC, (c) => msg(c, Command.DEVICE_GET_INFO, 1, new Uint8Array(16))),
  headerCase('bad-type', 'message type 5 (reserved) is refused or ignored', SPEC, (c) => msg(c, Command.DEVICE_GET_INFO, 5, encodeDeviceInfoRequest())),
  headerCase('reserved-flags', 'reserved flag bits (0x100) are refused or ignored', SPEC, (c) => msg(c, Command.DEVICE_GET_INFO, 0x100, encodeDeviceInfoRequest())),
  headerCase('error-in-command', 'the ERROR flag on a command is refused or ignored', SPEC, (c) => msg(c, Command.DEVICE_GET_INFO, 0x20, encodeDeviceInfoRequest(), 22)),
  headerCase('trailing-bytes', 'DEVICE_GET_INFO with 16 extra payload bytes is answered or refused', `${SPEC}; spec: Message sizes`, (c) => msg(c, Command.DEVICE_GET_INFO, 0, new Uint8Array([16, 0, 0, 0, ...new Uint8Array(28)]))),
  {
    id: 'header/msg-size-below-header',
    group: 'header',
    spec: SPEC,
    title: 'msg_size 8 (< 16) makes the server drop the connection, then serve the next client',
    async run(ctx) {
      const c = await ctx.connect();
      const b = msg(c, Command.DEVICE_GET_INFO, 0, encodeDeviceInfoRequest());
      new DataView(b.buffer).setUint32(4, 8, true);
      c.sendRaw(b);
      const m = await c.next();
      if (m && isError(m)) {
        // Acceptable only if the server then gives up on the stream.
        expect(await c.waitClosed(), 'answered msg_size 8 with an error and kept reading a stream it cannot frame');
      } else expect(m === null && c.closed, m ? `answered a message with msg_size 8 (${answer(m)})` : 'the connection stayed open with an unframeable stream');
      await c.close();
      expect(await ctx.serverAlive(), 'the server no longer accepts clients');
      return pass();
    },
  },
  {
    id: 'header/oversize-skipped',
    group: 'header',
    spec: `${SPEC}; spec: Message sizes (max_data_xfer_size)`,
    title: 'a REGION_WRITE of 2 MiB (> max_data_xfer_size) is refused after its body is skipped; the stream stays in sync',
    async run(ctx) {
      const c = await ctx.connect();
      const max = c.serverCaps?.maxDataXferSize ?? 1048576;
      const count = Math.max(2 * 1048576, max * 2);
      const r = accessRegion(ctx.profile);
      c.send(Command.REGION_WRITE, encodeRegionWriteRequest({ region: r.index, offset: 0n, count, data: new Uint8Array(count) }));
      const out = await streamIntact(ctx, c, `a ${count}-byte REGION_WRITE`, false);
      if (typeof out !== 'string') return out;
      expect(/^answered .*E/.test(out), `the oversize write was not refused (${out})`);
      return pass(`saw: ${out}`);
    },
  },
  {
    id: 'header/no-reply-error',
    group: 'header',
    spec: `${SPEC} (NO_REPLY); README: QEMU logs a reply to a posted write`,
    title: 'a failing REGION_READ with NO_REPLY gets no reply (or an error reply); the next reply is the right one',
    async run(ctx) {
      const c = await ctx.connect();
      c.send(Command.REGION_READ, encodeRegionReadRequest({ region: 0xdeadbeef, offset: 0n, count: 4 }), { flags: FLAG_NO_REPLY });
      const out = await streamIntact(ctx, c, 'a NO_REPLY REGION_READ of region 0xdeadbeef', false);
      if (typeof out !== 'string') return out;
      expect(!/success/.test(out), `a success reply to a failing NO_REPLY command (${out})`);
      return pass(`saw: ${out}`);
    },
  },
  {
    id: 'header/no-reply-write',
    group: 'header',
    spec: `${SPEC} (NO_REPLY)`,
    title: 'a posted (NO_REPLY) config-space write gets no reply and takes effect',
    async run(ctx) {
      const c = await ctx.connect();
      // Interrupt Line (0x3c) is a plain read/write scratch register on every PCI function.
      const before = (await okRead(c, 7, 0x3cn, 1))[0]!;
      const v = before === 0x5a ? 0xa5 : 0x5a;
      c.send(Command.REGION_WRITE, encodeRegionWriteRequest({ region: 7, offset: 0x3cn, count: 1, data: new Uint8Array([v]) }), { flags: FLAG_NO_REPLY });
      const out = await streamIntact(ctx, c, 'a posted config write', false);
      if (typeof out !== 'string') return out;
      expect(out === 'no answer', `the posted write was answered (${out})`);
      const after = (await okRead(c, 7, 0x3cn, 1))[0]!;
      expect(after === v, `Interrupt Line reads 0x${after.toString(16)} after a posted write of 0x${v.toString(16)}`);
      return pass();
    },
  },
  {
    id: 'header/msg-id-echo',
    group: 'header',
    spec: `${SPEC} (msg_id); spec: Command Concurrency`,
    title: 'pipelined commands with repeated ids are answered in order, each echoing its id and command',
    async run(ctx) {
      const c = await ctx.connect();
      const ids = [7, 7, 0xffff, 0, 9];
      for (const id of ids) c.send(Command.DEVICE_GET_INFO, encodeDeviceInfoRequest(), { msgId: id });
      for (const id of ids) {
        const m = await c.reply(id, Command.DEVICE_GET_INFO);
        expect(!isError(m), `GET_INFO id ${id} failed with ${answer(m)}`);
      }
      return pass();
    },
  },
  {
    id: 'header/reply-header',
    group: 'header',
    spec: SPEC,
    title: 'replies carry type 1, error 0 on success, and an ERROR-flagged header-only reply on failure',
    async run(ctx) {
      const c = await ctx.connect();
      const ok = await c.call(Command.DEVICE_GET_INFO, encodeDeviceInfoRequest());
      expect((ok.header.flags & 0xf) === 1 && ok.header.error === 0 && !isError(ok), `success reply flags 0x${ok.header.flags.toString(16)} error ${ok.header.error}`);
      expect(ok.header.msgSize === 16 + ok.payload.length, 'msg_size disagrees with the bytes that followed');
      const bad = await c.call(Command.REGION_READ, encodeRegionReadRequest({ region: 0xdeadbeef, offset: 0n, count: 4 }));
      errReply(bad, 'REGION_READ of region 0xdeadbeef');
      expect(bad.header.error !== 0, 'error reply with errno 0');
      expect(bad.payload.length === 0, `the error reply carries ${bad.payload.length} payload bytes; the spec says header only`);
      return pass();
    },
  },
];

