// fd hygiene, by counting /proc/PID/fd of the server (--pid): fds a client
// hands over are released when it unassigns them, when they were not
// wanted, and when it leaves. The runner also compares the count around
// every case.
import { Command } from '../../../src/protocol/commands.js';
import { encodeDeviceInfoRequest } from '../../../src/protocol/device-info.js';
import { RegionInfoFlags } from '../../../src/protocol/constants.js';
import { closeFds, dmaMap, eventfd, memfd, okReply, regionInfo, setIrqs, TRIGGER_EVENTFD } from '../ops.js';
import { irqTarget } from '../profile.js';
import { expect, pass, skip, type CaseContext, type CheckCase, type CaseOutcome } from '../types.js';

const SPEC = 'spec: Socket Disconnection Behavior; spec: VFIO_USER_DEVICE_SET_IRQS; spec: VFIO_USER_DMA_MAP';

async function settled(ctx: CaseContext, target: number): Promise<number> {
  let n = ctx.serverFdCount() ?? 0;
  for (let i = 0; i < 150 && n > target; i++) {
    await new Promise((r) => setTimeout(r, 20));
    n = ctx.serverFdCount() ?? 0;
  }
  return n;
}

function fdCase(id: string, title: string, body: (ctx: CaseContext, base: number) => Promise<CaseOutcome>): CheckCase {
  return {
    id: `fds/${id}`,
    group: 'fds',
    spec: SPEC,
    title,
    async run(ctx) {
      const base = ctx.serverFdCount();
      if (base === null) return skip('needs --pid');
      return body(ctx, base);
    },
  };
}

export const fdsCases: CheckCase[] = [
  fdCase('unwanted-fds', 'fds attached to DEVICE_GET_INFO are not kept', async (ctx) => {
    const c = await ctx.connect();
    const before = ctx.serverFdCount()!;
    const fds = [eventfd(), eventfd(), eventfd()];
    try {
      c.release(await c.call(Command.DEVICE_GET_INFO, encodeDeviceInfoRequest(), { fds }));
    } finally {
      closeFds(fds);
    }
    const after = await settled(ctx, before);
    expect(after <= before, `${after - before} fd(s) kept from a GET_INFO that carried 3`);
    return pass();
  }),
  fdCase('irq-eventfds-released', 'eventfds assigned with SET_IRQS are released by de-assignment', async (ctx) => {
    const t = irqTarget(ctx.profile);
    if (!t) return skip('no vectors');
    const c = await ctx.connect();
    const before = ctx.serverFdCount()!;
    const n = Math.min(t.count, 16);
    const fds = Array.from({ length: n }, () => eventfd());
    try {
      okReply(await setIrqs(c, { flags: TRIGGER_EVENTFD, index: t.index, start: 0, count: n }, fds), `assigning ${n} eventfds`);
    } finally {
      closeFds(fds);
    }
    const held = ctx.serverFdCount()!;
    okReply(await setIrqs(c, { flags: TRIGGER_EVENTFD, index: t.index, start: 0, count: n }), 'de-assigning them');
    const after = await settled(ctx, before);
    expect(after <= before, `${after - before} of ${n} eventfds still held after de-assignment`);
    return pass(`held ${held - before} while assigned`);
  }),
  fdCase('disconnect-releases', 'eventfds and DMA fds are released when the client leaves without cleaning up', async (ctx, base) => {
    const c = await ctx.connect();
    const t = irqTarget(ctx.profile);
    const efds = t ? Array.from({ length: Math.min(t.count, 8) }, () => eventfd()) : [];
    const mfd = memfd(0x10000);
    try {
      if (t) okReply(await setIrqs(c, { flags: TRIGGER_EVENTFD, index: t.index, start: 0, count: efds.length }, efds), 'assigning eventfds');
      okReply(await dmaMap(c, { address: 0x4000_0000n, size: 0x10000n }, mfd), 'DMA_MAP with fd');
    } finally {
      closeFds([...efds, mfd]);
    }
    c.abort();
    const after = await settled(ctx, base);
    expect(after <= base, `${after - base} fd(s) still held after the client left`);
    return pass();
  }),
  fdCase('region-info-repeat', 'asking for a mappable region 20 times does not grow the server\'s fds', async (ctx) => {
    const r = ctx.profile.regions.find((x) => x.flags & RegionInfoFlags.MMAP);
    if (!r) return skip('no mappable region');
    const c = await ctx.connect();
    const before = ctx.serverFdCount()!;
    for (let i = 0; i < 20; i++) closeFds((await regionInfo(c, r.index)).fds);
    const after = await settled(ctx, before);
    expect(after <= before, `${after - before} more fd(s) after 20 REGION_INFO replies with fds`);
    return pass();
  }),
];
