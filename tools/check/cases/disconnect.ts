// Disconnects at awkward moments: the server must serve the next client
// (or exit cleanly, for servers that serve one client: --restart).
import { Command } from '../../../src/protocol/commands.js';
import { encodeRegionReadRequest } from '../../../src/protocol/region-access.js';
import { encodeDeviceInfoRequest } from '../../../src/protocol/device-info.js';
import { encodeMessage } from '../../../src/protocol/header.js';
import { closeFds, dmaMap, dmaUnmap, errReply, eventfd, getInfo, okReply, setIrqs, TRIGGER_EVENTFD } from '../ops.js';
import { irqTarget } from '../profile.js';
import type { RawClient } from '../raw-client.js';
import { expect, pass, type CaseContext, type CheckCase } from '../types.js';

const SPEC = 'spec: Socket Disconnection Behavior';

function dropCase(id: string, title: string, act: (ctx: CaseContext, c: RawClient) => Promise<void>, raw = false): CheckCase {
  return {
    id: `disconnect/${id}`,
    group: 'disconnect',
    spec: SPEC,
    title,
    async run(ctx) {
      const c = await ctx.connect(raw);
      await act(ctx, c);
      c.abort();
      expect(await ctx.serverAlive(), 'the server does not serve the next client');
      return pass();
    },
  };
}

export const disconnectCases: CheckCase[] = [
  dropCase('before-version', 'a client that connects and leaves without a word', async () => undefined, true),
  dropCase('mid-version', 'a client that leaves in the middle of its VERSION', async (_ctx, c) => {
    c.sendRaw(encodeMessage({ msgId: 1, command: Command.VERSION, flags: 0, error: 0 }, new Uint8Array(40)).subarray(0, 24));
  }, true),
  dropCase('mid-header', 'a client that leaves after 8 bytes of a header', async (_ctx, c) => {
    c.sendRaw(encodeMessage({ msgId: 1, command: Command.DEVICE_GET_INFO, flags: 0, error: 0 }, encodeDeviceInfoRequest()).subarray(0, 8));
  }),
  dropCase('mid-body', 'a client that leaves 100 bytes into a 4 KiB body', async (_ctx, c) => {
    const b = encodeMessage({ msgId: 1, command: Command.REGION_WRITE, flags: 0, error: 0 }, new Uint8Array(4096));
    c.sendRaw(b.subarray(0, 116));
  }),
  dropCase('replies-unread', 'a client that pipelines 200 reads and leaves without reading a reply', async (_ctx, c) => {
    for (let i = 0; i < 200; i++) c.send(Command.REGION_READ, encodeRegionReadRequest({ region: 7, offset: 0n, count: 256 }));
  }),
  {
    id: 'disconnect/state-dropped',
    group: 'disconnect',
    spec: SPEC,
    title: 'DMA maps and eventfds of a client that left are gone for the next one',
    async run(ctx) {
      const c = await ctx.connect();
      okReply(await dmaMap(c, { address: 0x4000_0000n, size: 0x1000n }), 'DMA_MAP');
      const t = irqTarget(ctx.profile);
      const efd = eventfd();
      try {
        if (t) okReply(await setIrqs(c, { flags: TRIGGER_EVENTFD, index: t.index, start: 0, count: 1 }, [efd]), 'assigning an eventfd');
      } finally {
        closeFds([efd]);
      }
      c.abort();
      const d = await ctx.connect();
      errReply(await dmaUnmap(d, { address: 0x4000_0000n, size: 0x1000n }), 'unmapping the previous client\'s map');
      await getInfo(d);
      return pass();
    },
  },
];
