// DMA_MAP / DMA_UNMAP edge cases: overlap, exact unmap, unmap-all, maps
// without fds, overflow, limits.
import { DmaUnmapFlags } from '../../../src/protocol/constants.js';
import { answer, dmaMap, dmaMapMemfd, dmaUnmap, errReply, okReply } from '../ops.js';
import { isError } from '../raw-client.js';
import { expect, fail, pass, type CheckCase } from '../types.js';

const MAP = 'spec: VFIO_USER_DMA_MAP';
const UNMAP = 'spec: VFIO_USER_DMA_UNMAP';
const BASE = 0x4000_0000n;
const PAGE = 0x1000n;

export const dmaCases: CheckCase[] = [
  {
    id: 'dma/map-unmap-fd',
    group: 'dma',
    spec: `${MAP}; ${UNMAP}`,
    title: 'a map with an fd and its exact unmap succeed; the unmap reply echoes the request',
    async run(ctx) {
      const c = await ctx.connect();
      okReply(await dmaMapMemfd(c, { address: BASE, size: 0x10000n }), 'DMA_MAP with fd');
      const m = okReply(await dmaUnmap(c, { address: BASE, size: 0x10000n }), 'DMA_UNMAP');
      expect(m.payload.length === 0 || m.payload.length === 24, `unmap reply of ${m.payload.length} bytes`);
      if (m.payload.length === 24) {
        const dv = new DataView(m.payload.buffer, m.payload.byteOffset, 24);
        expect(dv.getBigUint64(8, true) === BASE && dv.getBigUint64(16, true) === 0x10000n, 'unmap reply does not echo address and size');
      }
      return pass(`unmap reply ${m.payload.length} bytes`);
    },
  },
  {
    id: 'dma/map-no-fd',
    group: 'dma',
    spec: MAP,
    title: 'a map without an fd (message-based DMA) succeeds and unmaps',
    async run(ctx) {
      const c = await ctx.connect();
      okReply(await dmaMap(c, { address: BASE, size: 0x10000n }), 'DMA_MAP without fd');
      okReply(await dmaUnmap(c, { address: BASE, size: 0x10000n }), 'DMA_UNMAP');
      return pass();
    },
  },
  {
    id: 'dma/overlap',
    group: 'dma',
    spec: `${MAP} (EEXIST)`,
    title: 'a map overlapping an existing one is refused with EEXIST',
    async run(ctx) {
      const c = await ctx.connect();
      okReply(await dmaMap(c, { address: BASE, size: 4n * PAGE }), 'first DMA_MAP');
      const m = await dmaMap(c, { address: BASE + 2n * PAGE, size: 4n * PAGE });
      const e = errReply(m, 'an overlapping DMA_MAP');
      expect(e === 17, `refused with ${answer(m)}; the spec says EEXIST`);
      return pass();
    },
  },
  {
    id: 'dma/identical-remap',
    group: 'dma',
    spec: `${MAP}; README: libvfio-user accepts an identical re-map, QEMU repeats maps`,
    title: 'an identical re-map: accepted or EEXIST',
    async run(ctx) {
      const c = await ctx.connect();
      okReply(await dmaMap(c, { address: BASE, size: 4n * PAGE }), 'first DMA_MAP');
      const m = await dmaMap(c, { address: BASE, size: 4n * PAGE });
      if (isError(m) && m.header.error !== 17) return fail(`refused with ${answer(m)} (EEXIST or success expected)`);
      return pass(`saw: ${answer(m)}`);
    },
  },
  {
    id: 'dma/partial-unmap',
    group: 'dma',
    spec: `${UNMAP} (must match a map exactly)`,
    title: 'unmapping part of a map is refused and the map stays',
    async run(ctx) {
      const c = await ctx.connect();
      okReply(await dmaMap(c, { address: BASE, size: 4n * PAGE }), 'DMA_MAP');
      errReply(await dmaUnmap(c, { address: BASE, size: PAGE }), 'an unmap of the first page of a 4-page map');
      okReply(await dmaUnmap(c, { address: BASE, size: 4n * PAGE }), 'the exact unmap afterwards');
      return pass();
    },
  },
  {
    id: 'dma/unmap-unknown',
    group: 'dma',
    spec: UNMAP,
    title: 'unmapping a range that was never mapped is refused',
    async run(ctx) {
      const c = await ctx.connect();
      errReply(await dmaUnmap(c, { address: 0x7000_0000n, size: PAGE }), 'an unmap of nothing');
      return pass();
    },
  },
  {
    id: 'dma/unmap-all',
    group: 'dma',
    spec: `${UNMAP}; README: QEMU sends VFIO_DMA_UNMAP_FLAG_ALL`,
    title: 'unmap with the ALL flag removes every map',
    async run(ctx) {
      const c = await ctx.connect();
      okReply(await dmaMapMemfd(c, { address: BASE, size: 0x10000n }), 'DMA_MAP with fd');
      okReply(await dmaMap(c, { address: BASE + 0x100000n, size: PAGE }), 'DMA_MAP without fd');
      okReply(await dmaUnmap(c, { address: 0n, size: 0n, flags: DmaUnmapFlags.ALL }), 'DMA_UNMAP ALL');
      errReply(await dmaUnmap(c, { address: BASE, size: 0x10000n }), 'an unmap after unmap-all');
      okReply(await dmaMap(c, { address: BASE, size: PAGE }), 'a map where one was before unmap-all');
      return pass();
    },
  },
  {
    id: 'dma/unmap-all-with-range',
    group: 'dma',
    spec: UNMAP,
    title: 'unmap ALL with a non-zero address or size is refused',
    async run(ctx) {
      const c = await ctx.connect();
      errReply(await dmaUnmap(c, { address: BASE, size: PAGE, flags: DmaUnmapFlags.ALL }), 'DMA_UNMAP ALL with a range');
      return pass();
    },
  },
  {
    id: 'dma/unknown-flags',
    group: 'dma',
    spec: MAP,
    title: 'DMA_MAP and DMA_UNMAP with unknown flag bits are refused',
    async run(ctx) {
      const c = await ctx.connect();
      errReply(await dmaMap(c, { address: BASE, size: PAGE, flags: 0x103 }), 'DMA_MAP flags 0x103');
      errReply(await dmaUnmap(c, { address: BASE, size: PAGE, flags: 0x100 }), 'DMA_UNMAP flags 0x100');
      return pass();
    },
  },
  {
    id: 'dma/wraps',
    group: 'dma',
    spec: MAP,
    title: 'a map whose address + size wraps around 2^64 is refused',
    async run(ctx) {
      const c = await ctx.connect();
      errReply(await dmaMap(c, { address: 0xffff_ffff_ffff_f000n, size: 2n * PAGE }), 'a wrapping DMA_MAP');
      return pass();
    },
  },
  {
    id: 'dma/size-zero',
    group: 'dma',
    spec: MAP,
    title: 'a map of size 0: refused, or accepted and harmless',
    async run(ctx) {
      const c = await ctx.connect();
      const m = await dmaMap(c, { address: BASE, size: 0n });
      okReply(await dmaMap(c, { address: BASE, size: PAGE }), 'a real map at the same address afterwards');
      return pass(`saw: ${answer(m)}`);
    },
  },
  {
    id: 'dma/fd-beyond-file',
    group: 'dma',
    spec: MAP,
    title: 'a map with an fd whose file is smaller than offset + size: refused, or accepted without touching it',
    async run(ctx) {
      const c = await ctx.connect();
      const m = await dmaMapMemfd(c, { address: BASE, size: 0x10000n, offset: 0x8000n }, 0x1000);
      // The server must still be alive: touching such a mapping raises SIGBUS.
      okReply(await dmaMap(c, { address: BASE + 0x100000n, size: PAGE }), 'a map afterwards');
      return pass(`saw: ${answer(m)}`);
    },
  },
  {
    id: 'dma/many-maps',
    group: 'dma',
    spec: `${MAP}; spec: VFIO_USER_VERSION (max_dma_maps)`,
    title: '512 pipelined page maps all succeed, or the first refusals say ENOSPC/EINVAL past a limit; unmap-all clears them',
    async run(ctx) {
      const c = await ctx.connect();
      const n = 512;
      const ids: number[] = [];
      for (let i = 0; i < n; i++) {
        const b = new Uint8Array(32);
        const dv = new DataView(b.buffer);
        dv.setUint32(0, 32, true);
        dv.setUint32(4, 3, true);
        dv.setBigUint64(16, BASE + BigInt(i) * 2n * PAGE, true);
        dv.setBigUint64(24, PAGE, true);
        ids.push(c.send(2, b));
      }
      let okCount = 0;
      let firstRefusal = '';
      for (const id of ids) {
        let m;
        try {
          m = await c.reply(id, 2);
        } catch (e) {
          return fail(`after ${okCount} accepted maps: ${(e as Error).message}`);
        }
        if (!isError(m)) {
          if (firstRefusal) return fail(`map ${okCount} accepted after an earlier refusal (${firstRefusal})`);
          okCount++;
        } else if (!firstRefusal) {
          firstRefusal = answer(m);
          if (m.header.error !== 28 && m.header.error !== 22) return fail(`map ${okCount} refused with ${firstRefusal}`);
        }
      }
      okReply(await dmaUnmap(c, { address: 0n, size: 0n, flags: DmaUnmapFlags.ALL }), 'DMA_UNMAP ALL');
      okReply(await dmaMap(c, { address: BASE, size: PAGE }), 'a map after unmap-all');
      return pass(okCount === n ? `${n} maps` : `${okCount} maps, then ${firstRefusal}`);
    },
  },
];
