// REGION_READ / REGION_WRITE bounds: every access outside a region, or
// malformed, is refused and nothing outside the region is touched.
import { Command } from '../../../src/protocol/commands.js';
import { encodeRegionReadRequest } from '../../../src/protocol/region-access.js';
import { answer, errReply, okRead, regionRead } from '../ops.js';
import { accessRegion } from '../profile.js';
import { isError } from '../raw-client.js';
import { expect, pass, skip, type CheckCase } from '../types.js';

const SPEC = 'spec: VFIO_USER_REGION_READ; spec: VFIO_USER_REGION_WRITE';

function readCase(id: string, title: string, pick: (size: bigint, region: number) => { region: number; offset: bigint; count: number }): CheckCase {
  return {
    id: `access/${id}`,
    group: 'access',
    spec: SPEC,
    title,
    async run(ctx) {
      const r = accessRegion(ctx.profile);
      const a = pick(r.size, r.index);
      const c = await ctx.connect();
      errReply(await regionRead(c, a.region, a.offset, a.count), `REGION_READ region ${a.region} +0x${a.offset.toString(16)} count ${a.count}`);
      await okRead(c, 7, 0n, 4);
      return pass();
    },
  };
}

export const accessCases: CheckCase[] = [
  readCase('read-past-end', 'a read that straddles the end of a region is refused', (size, region) => ({ region, offset: size - 2n, count: 4 })),
  readCase('read-at-end', 'a read starting at the region size is refused', (size, region) => ({ region, offset: size, count: 1 })),
  readCase('read-wraps', 'a read whose offset + count wraps around 2^64 is refused', (_s, region) => ({ region, offset: 0xffff_ffff_ffff_fffen, count: 4 })),
  readCase('bad-region', 'a read of region 0xdeadbeef is refused (libvfio-user\'s client probes this)', () => ({ region: 0xdeadbeef, offset: 0n, count: 4 })),
  readCase('config-past-end', 'a config-space read past its end is refused', () => ({ region: 7, offset: 0xfffn + 1n, count: 4 })),
  {
    id: 'access/empty-region',
    group: 'access',
    spec: SPEC,
    title: 'a read of a region of size 0 is refused',
    async run(ctx) {
      const r = ctx.profile.regions.find((x) => x.size === 0n && x.index < 9);
      if (!r) return skip('every region has a size');
      const c = await ctx.connect();
      errReply(await regionRead(c, r.index, 0n, 4), `REGION_READ of empty region ${r.index}`);
      return pass(`region ${r.index}`);
    },
  },
  {
    id: 'access/write-count-mismatch',
    group: 'access',
    spec: SPEC,
    title: 'a REGION_WRITE whose count disagrees with the data it carries is refused',
    async run(ctx) {
      const r = accessRegion(ctx.profile);
      const c = await ctx.connect();
      const b = new Uint8Array(16 + 2);
      const dv = new DataView(b.buffer);
      dv.setBigUint64(0, 0n, true);
      dv.setUint32(8, r.index, true);
      dv.setUint32(12, 4, true);
      errReply(await c.call(Command.REGION_WRITE, b), 'REGION_WRITE count 4 with 2 data bytes');
      return pass();
    },
  },
  {
    id: 'access/short-header',
    group: 'access',
    spec: SPEC,
    title: 'a REGION_READ with a 12-byte payload is refused',
    async run(ctx) {
      const c = await ctx.connect();
      errReply(await c.call(Command.REGION_READ, encodeRegionReadRequest({ region: 7, offset: 0n, count: 4 }).subarray(0, 12)), 'REGION_READ of 12 bytes');
      return pass();
    },
  },
  {
    id: 'access/over-max-xfer',
    group: 'access',
    spec: `${SPEC}; spec: VFIO_USER_VERSION (max_data_xfer_size)`,
    title: 'a read larger than the client\'s max_data_xfer_size: refused or answered in full',
    async run(ctx) {
      const c = await ctx.connect(true);
      await c.negotiate({ maxMsgFds: 16, maxDataXferSize: 4096 });
      const r = ctx.profile.regions.find((x) => x.size > 4096n);
      if (!r) return skip('no region larger than 4096 bytes');
      const m = await regionRead(c, r.index, 0n, 8192);
      c.release(m);
      // The spec bounds the server's DMA by the client's value; for region
      // reads libvfio-user applies its own 1 MiB only. Either is accepted.
      return pass(`saw: ${isError(m) ? answer(m) : `answered with ${m.payload.length - 16} bytes`}`);
    },
  },
  {
    id: 'access/zero-count',
    group: 'access',
    spec: SPEC,
    title: 'a read of count 0: success with no data, or refused',
    async run(ctx) {
      const c = await ctx.connect();
      const m = await regionRead(c, 7, 0n, 0);
      if (!isError(m)) expect(m.payload.length === 16 || m.payload.length === 0, `reply of ${m.payload.length} bytes for count 0`);
      return pass(`saw: ${answer(m)}`);
    },
  },
];
