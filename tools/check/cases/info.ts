// Device, region and IRQ info, and region capabilities (sparse mmap areas
// checked by mapping the fd and comparing with REGION_READ).
import { Command } from '../../../src/protocol/commands.js';
import { DeviceInfoFlags, IrqInfoFlags, RegionInfoFlags } from '../../../src/protocol/constants.js';
import { encodeIrqInfoRequest } from '../../../src/protocol/irq-info.js';
import { encodeRegionInfoRequest, isSparseMmapCap } from '../../../src/protocol/region-info.js';
import { native } from '../../../src/native/binding.js';
import { answer, closeFds, errReply, getInfo, getState, IRQ_NAMES, okRead, regionInfo } from '../ops.js';
import { isError } from '../raw-client.js';
import { expect, fail, pass, skip, type CheckCase } from '../types.js';

export const infoCases: CheckCase[] = [
  {
    id: 'info/device',
    group: 'info',
    spec: 'spec: VFIO_USER_DEVICE_GET_INFO; QEMU needs PCI, 8..100 regions, 3..50 IRQ indexes',
    title: 'DEVICE_GET_INFO: argsz 16, PCI flag, region and IRQ counts QEMU accepts',
    async run(ctx) {
      const i = ctx.profile.info;
      expect(i.argsz === 16, `argsz ${i.argsz}`);
      expect(i.flags & DeviceInfoFlags.PCI, `flags 0x${i.flags.toString(16)} without PCI`);
      expect(i.numRegions >= 8 && i.numRegions <= 100, `num_regions ${i.numRegions}`);
      expect(i.numIrqs >= 3 && i.numIrqs <= 50, `num_irqs ${i.numIrqs}`);
      return pass(`flags 0x${i.flags.toString(16)}${i.flags & DeviceInfoFlags.RESET ? ' (RESET)' : ''}, ${i.numRegions} regions, ${i.numIrqs} IRQ indexes`);
    },
  },
  {
    id: 'info/regions',
    group: 'info',
    spec: 'spec: VFIO_USER_DEVICE_GET_REGION_INFO',
    title: 'every region: index echoed, known flags, caps inside the reply, config space R/W, 256 or 4096 bytes, not mappable',
    async run(ctx) {
      for (const r of ctx.profile.regions) {
        const at = ctx.profile.regions.indexOf(r);
        expect(r.index === at, `region ${at} answered as index ${r.index}`);
        expect((r.flags & ~0xf) === 0, `region ${at} flags 0x${r.flags.toString(16)} has unknown bits`);
        if (r.capOffset) expect(r.capOffset >= 32 && r.capOffset < r.argsz, `region ${at} cap_offset ${r.capOffset} outside [32, ${r.argsz})`);
        if (r.flags & RegionInfoFlags.MMAP) expect(r.size > 0n, `region ${at} mappable with size 0`);
      }
      const cfg = ctx.profile.regions[7];
      expect(cfg, 'no config region');
      expect(cfg.size === 256n || cfg.size === 4096n, `config space of ${cfg.size} bytes`);
      expect((cfg.flags & 3) === 3, `config space flags 0x${cfg.flags.toString(16)} (needs READ|WRITE)`);
      expect(!(cfg.flags & RegionInfoFlags.MMAP), 'config space is mappable');
      return pass(ctx.profile.regions.filter((r) => r.size > 0n).map((r) => `${r.index}:0x${r.size.toString(16)}`).join(' '));
    },
  },
  {
    id: 'info/region-bad-index',
    group: 'info',
    spec: 'spec: VFIO_USER_DEVICE_GET_REGION_INFO',
    title: 'DEVICE_GET_REGION_INFO of index num_regions and 0xffffffff is refused',
    async run(ctx) {
      const c = await ctx.connect();
      for (const index of [ctx.profile.info.numRegions, 0xffffffff]) {
        errReply(await c.call(Command.DEVICE_GET_REGION_INFO, encodeRegionInfoRequest({ index, argsz: 32 })), `REGION_INFO index ${index}`);
      }
      return pass();
    },
  },
  {
    id: 'info/sparse-mmap',
    group: 'info',
    spec: 'spec: VFIO_USER_DEVICE_GET_REGION_INFO (VFIO_REGION_INFO_CAP_SPARSE_MMAP); spec: VFIO_USER_REGION_READ',
    title: 'mappable regions: one fd, areas inside the region, the mapping shows what REGION_READ returns',
    async run(ctx) {
      const mappable = ctx.profile.regions.filter((r) => r.flags & RegionInfoFlags.MMAP);
      if (mappable.length === 0) return skip('no mappable region');
      const c = await ctx.connect();
      const seen: string[] = [];
      for (const r0 of mappable) {
        const { info, fds } = await regionInfo(c, r0.index);
        try {
          expect(fds.length === 1, `region ${info.index}: ${fds.length} fds with the full reply (QEMU takes exactly one)`);
          const sparse = info.caps.find(isSparseMmapCap);
          const areas = sparse ? sparse.areas : [{ offset: 0n, size: info.size }];
          for (const a of areas) {
            expect(a.offset + a.size <= info.size && a.size > 0n, `region ${info.index}: area 0x${a.offset.toString(16)}+0x${a.size.toString(16)} outside the region`);
            const len = Number(a.size < 4096n ? a.size : 4096n);
            const map = native.mmap(fds[0]!, info.offset + a.offset, len, native.PROT_READ);
            try {
              const viaMap = new Uint8Array(map).slice(0, Math.min(len, 64));
              const viaMsg = await okRead(c, info.index, a.offset, viaMap.length);
              expect(Buffer.from(viaMap).equals(Buffer.from(viaMsg)), `region ${info.index} +0x${a.offset.toString(16)}: the mapping and REGION_READ disagree`);
            } finally {
              native.munmap(map);
            }
          }
          seen.push(`${info.index}: ${areas.length} area(s)`);
        } finally {
          closeFds(fds);
        }
      }
      return pass(seen.join(', '));
    },
  },
  {
    id: 'info/irqs',
    group: 'info',
    spec: 'spec: VFIO_USER_DEVICE_GET_IRQ_INFO',
    title: 'every IRQ index: index echoed, EVENTFD, ERR/REQ at most 1 vector, MSI a power of two <= 32',
    async run(ctx) {
      const out: string[] = [];
      for (const q of ctx.profile.irqs) {
        const at = ctx.profile.irqs.indexOf(q);
        expect(q.index === at, `IRQ index ${at} answered as ${q.index}`);
        expect(q.argsz === 16, `IRQ index ${at} argsz ${q.argsz}`);
        if (q.count > 0) expect(q.flags & IrqInfoFlags.EVENTFD, `${IRQ_NAMES[at]} has vectors but no EVENTFD flag`);
        if (at === 3 || at === 4) expect(q.count <= 1, `${IRQ_NAMES[at]} has ${q.count} vectors`);
        if (at === 1 && q.count > 0) expect([1, 2, 4, 8, 16, 32].includes(q.count), `MSI count ${q.count}`);
        if (at === 2) expect(q.count <= 2048, `MSI-X count ${q.count}`);
        if (q.count > 0) out.push(`${IRQ_NAMES[at] ?? at}:${q.count}${q.flags & IrqInfoFlags.MASKABLE ? ' maskable' : ''}`);
      }
      if (ctx.profile.irqs[0] && ctx.profile.irqs[0].count > 0) {
        const pin = ctx.profile.config[0x3d];
        if (pin === 0) return fail('INTx has a vector but Interrupt Pin is 0');
      }
      return pass(out.join(', ') || 'no vectors');
    },
  },
  {
    id: 'info/irq-bad-index',
    group: 'info',
    spec: 'spec: VFIO_USER_DEVICE_GET_IRQ_INFO',
    title: 'DEVICE_GET_IRQ_INFO of index num_irqs is refused',
    async run(ctx) {
      const c = await ctx.connect();
      errReply(await c.call(Command.DEVICE_GET_IRQ_INFO, encodeIrqInfoRequest({ index: ctx.profile.info.numIrqs })), `IRQ_INFO index ${ctx.profile.info.numIrqs}`);
      return pass();
    },
  },
  {
    id: 'info/reset',
    group: 'info',
    spec: 'spec: VFIO_USER_DEVICE_RESET',
    title: 'DEVICE_RESET (advertised by the RESET flag) gets a header-only reply; a migrating device is RUNNING after it',
    async run(ctx) {
      if (!(ctx.profile.info.flags & DeviceInfoFlags.RESET)) return skip('the device does not advertise RESET');
      const c = await ctx.connect();
      const m = await c.call(Command.DEVICE_RESET);
      expect(!isError(m), `DEVICE_RESET refused with ${answer(m)}`);
      expect(m.payload.length === 0, `DEVICE_RESET reply of ${m.payload.length} bytes`);
      if (ctx.profile.migration !== null) {
        const s = await getState(c);
        expect(s === 2, `migration state ${s} after reset (RUNNING expected)`);
      }
      await getInfo(c);
      return pass();
    },
  },
];
