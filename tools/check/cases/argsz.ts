// argsz: the request's argsz is the largest reply the client accepts; the
// reply's is the size the full answer needs (spec "Message sizes").
import { Command } from '../../../src/protocol/commands.js';
import { RegionInfoFlags } from '../../../src/protocol/constants.js';
import { decodeDeviceInfoReply } from '../../../src/protocol/device-info.js';
import { decodeRegionInfoReply, encodeRegionInfoRequest } from '../../../src/protocol/region-info.js';
import { answer, closeFds, dmaUnmap, errReply, okReply, u32le } from '../ops.js';
import { isError } from '../raw-client.js';
import { expect, pass, skip, type CheckCase } from '../types.js';

const SPEC = 'spec: Message sizes';

function le(...words: number[]): Uint8Array {
  const b = new Uint8Array(words.length * 4);
  words.forEach((w, i) => b.set(u32le(w), i * 4));
  return b;
}

export const argszCases: CheckCase[] = [
  {
    id: 'argsz/get-info-small',
    group: 'argsz',
    spec: `${SPEC}; spec: VFIO_USER_DEVICE_GET_INFO`,
    title: 'DEVICE_GET_INFO with argsz 8 (< 16) is refused',
    async run(ctx) {
      const c = await ctx.connect();
      errReply(await c.call(Command.DEVICE_GET_INFO, le(8, 0, 0, 0)), 'GET_INFO argsz 8');
      return pass();
    },
  },
  {
    id: 'argsz/get-info-short-payload',
    group: 'argsz',
    spec: `${SPEC}; spec: VFIO_USER_DEVICE_GET_INFO`,
    title: 'DEVICE_GET_INFO with a 4-byte payload is refused',
    async run(ctx) {
      const c = await ctx.connect();
      errReply(await c.call(Command.DEVICE_GET_INFO, le(16)), 'GET_INFO of 4 bytes');
      return pass();
    },
  },
  {
    id: 'argsz/get-info-large',
    group: 'argsz',
    spec: `${SPEC}; spec: VFIO_USER_DEVICE_GET_INFO`,
    title: 'DEVICE_GET_INFO with argsz 4096 gets a 16-byte reply saying argsz 16',
    async run(ctx) {
      const c = await ctx.connect();
      const m = okReply(await c.call(Command.DEVICE_GET_INFO, le(4096, 0, 0, 0)), 'GET_INFO argsz 4096');
      expect(m.payload.length === 16, `reply payload ${m.payload.length} bytes`);
      expect(decodeDeviceInfoReply(m.payload).argsz === 16, `reply argsz ${decodeDeviceInfoReply(m.payload).argsz}`);
      return pass();
    },
  },
  {
    id: 'argsz/region-info-small',
    group: 'argsz',
    spec: `${SPEC}; spec: VFIO_USER_DEVICE_GET_REGION_INFO`,
    title: 'DEVICE_GET_REGION_INFO with argsz 16 (< 32) is refused',
    async run(ctx) {
      const c = await ctx.connect();
      errReply(await c.call(Command.DEVICE_GET_REGION_INFO, encodeRegionInfoRequest({ index: 7, argsz: 16 })), 'REGION_INFO argsz 16');
      return pass();
    },
  },
  {
    id: 'argsz/region-info-truncated',
    group: 'argsz',
    spec: `${SPEC}; spec: VFIO_USER_DEVICE_GET_REGION_INFO`,
    title: 'a region with caps asked with argsz 32: a 32-byte reply whose argsz says the full size, no fd; the retry gets the caps',
    async run(ctx) {
      const r = ctx.profile.regions.find((x) => x.flags & RegionInfoFlags.CAPS || x.argsz > 32);
      if (!r) return skip('no region has capabilities');
      const c = await ctx.connect();
      const m = okReply(await c.call(Command.DEVICE_GET_REGION_INFO, encodeRegionInfoRequest({ index: r.index, argsz: 32 })), 'REGION_INFO argsz 32');
      const fds = m.fds.length;
      closeFds(m.fds);
      expect(m.payload.length === 32, `reply payload ${m.payload.length} bytes for argsz 32`);
      const small = decodeRegionInfoReply(m.payload);
      expect(small.argsz > 32, `reply argsz ${small.argsz} for a region with caps`);
      expect(fds === 0, `${fds} fd(s) with a truncated reply (QEMU and libvfio-user's client expect none)`);
      expect((small.flags & RegionInfoFlags.CAPS) === 0 || small.capOffset === 0, 'CAPS with cap_offset set in a reply that has no room for caps');
      const m2 = okReply(await c.call(Command.DEVICE_GET_REGION_INFO, encodeRegionInfoRequest({ index: r.index, argsz: small.argsz })), 'REGION_INFO retry');
      closeFds(m2.fds);
      expect(m2.payload.length === small.argsz, `retry reply ${m2.payload.length} bytes, argsz said ${small.argsz}`);
      const full = decodeRegionInfoReply(m2.payload);
      expect(full.caps.length > 0, 'the retry carries no caps');
      return pass(`region ${r.index}: argsz ${small.argsz}`);
    },
  },
  {
    id: 'argsz/irq-info-small',
    group: 'argsz',
    spec: `${SPEC}; spec: VFIO_USER_DEVICE_GET_IRQ_INFO`,
    title: 'DEVICE_GET_IRQ_INFO with argsz 8 is refused',
    async run(ctx) {
      const c = await ctx.connect();
      errReply(await c.call(Command.DEVICE_GET_IRQ_INFO, le(8, 0, 0, 0)), 'IRQ_INFO argsz 8');
      return pass();
    },
  },
  {
    id: 'argsz/set-irqs-small',
    group: 'argsz',
    spec: `${SPEC}; spec: VFIO_USER_DEVICE_SET_IRQS`,
    title: 'DEVICE_SET_IRQS with argsz 8 is refused',
    async run(ctx) {
      const c = await ctx.connect();
      errReply(await c.call(Command.DEVICE_SET_IRQS, le(8, 0x21, 0, 0, 0)), 'SET_IRQS argsz 8');
      return pass();
    },
  },
  {
    id: 'argsz/dma-unmap-small',
    group: 'argsz',
    spec: `${SPEC}; spec: VFIO_USER_DMA_UNMAP`,
    title: 'DMA_UNMAP with argsz 8 (< the 24-byte reply) is refused',
    async run(ctx) {
      const c = await ctx.connect();
      const m = await dmaUnmap(c, { address: 0x10000000n, size: 0x1000n, argsz: 8 });
      expect(isError(m), `accepted (${answer(m)})`);
      return pass(`saw: ${answer(m)}`);
    },
  },
  {
    id: 'argsz/dma-map-small',
    group: 'argsz',
    spec: `${SPEC}; spec: VFIO_USER_DMA_MAP`,
    title: 'DMA_MAP with argsz 16 (< 32) is refused',
    async run(ctx) {
      const c = await ctx.connect();
      const b = new Uint8Array(32);
      const dv = new DataView(b.buffer);
      dv.setUint32(0, 16, true);
      dv.setUint32(4, 3, true);
      dv.setBigUint64(16, 0x20000000n, true);
      dv.setBigUint64(24, 0x1000n, true);
      errReply(await c.call(Command.DMA_MAP, b), 'DMA_MAP argsz 16');
      return pass();
    },
  },
];
