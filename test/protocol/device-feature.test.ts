import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Errno } from '../../src/protocol/errno.js';
import { DeviceFeature, DeviceFeatureFlags as FF, DeviceState, MigrationFlags } from '../../src/protocol/constants.js';
import {
  checkFeatureArgsz,
  checkFeatureFlags,
  checkFeatureOps,
  decodeDeviceFeatureReply,
  decodeDeviceFeatureRequest,
  decodeDmaLoggingControl,
  decodeDmaLoggingReport,
  decodeDmaLoggingReportRequest,
  decodeMigDeviceState,
  decodeMigrationData,
  dmaLoggingReportReplySize,
  encodeDeviceFeatureReply,
  encodeDeviceFeatureRequest,
  encodeDmaLoggingControl,
  encodeDmaLoggingReport,
  encodeDmaLoggingReportReply,
  encodeDmaLoggingReportRequest,
  encodeMigDeviceState,
  encodeMigrationData,
  encodeMigrationGetReply,
  FEATURE_SUPPORTED_OPS,
  featureFlags,
  validateDmaLoggingReport,
  validateDmaLoggingStart,
} from '../../src/protocol/device-feature.js';
import {
  allocBitmap,
  bitmapByteSize,
  bitmapClear,
  bitmapConvert,
  bitmapMarkRange,
  bitmapSet,
  bitmapSetBits,
  bitmapTest,
} from '../../src/protocol/dirty-bitmap.js';
import { assertBytes, assertProtocolError, assertTotal, hex, plain, shifted, u32, u64 } from './helpers/util.js';

describe('DEVICE_FEATURE messages', () => {
  it('GET MIGRATION reply: 16 bytes, flags STOP_COPY|PRE_COPY', () => {
    const req = hex('10000000 01000100');
    assertBytes(encodeDeviceFeatureRequest({ argsz: 16, flags: featureFlags(DeviceFeature.MIGRATION, FF.GET), data: new Uint8Array(0) }), req);
    const d = decodeDeviceFeatureRequest(shifted(req));
    assert.equal(d.feature, 1);
    assert.ok(d.get && !d.set && !d.probe);
    const rep = encodeMigrationGetReply(MigrationFlags.STOP_COPY | MigrationFlags.PRE_COPY);
    assertBytes(rep, hex('10000000 01000100 0500000000000000'));
    assert.equal(decodeMigrationData(decodeDeviceFeatureReply(rep).data), 5n);
  });

  it('SET MIG_DEVICE_STATE PRE_COPY (sample client): 16 bytes, echoed byte-identically', () => {
    const p = hex('10000000 02000200 06000000 ffffffff');
    const built = encodeDeviceFeatureRequest({ argsz: 16, flags: featureFlags(DeviceFeature.MIG_DEVICE_STATE, FF.SET), data: encodeMigDeviceState({ deviceState: DeviceState.PRE_COPY, dataFd: -1 }) });
    assertBytes(built, p);
    const d = decodeDeviceFeatureRequest(p);
    assert.deepEqual(decodeMigDeviceState(d.data), { deviceState: 6, dataFd: 0xffffffff });
    assertBytes(encodeDeviceFeatureReply(d), p);
  });

  it('SET DMA_LOGGING_START (sample client): argsz 24, page 4096, no ranges; echo', () => {
    const p = hex('18000000 06000200 0010000000000000 00000000 00000000');
    const c = { pageSize: 4096n, ranges: [] };
    assertBytes(encodeDeviceFeatureRequest({ flags: featureFlags(DeviceFeature.DMA_LOGGING_START, FF.SET), data: encodeDmaLoggingControl(c) }), p);
    const d = decodeDeviceFeatureRequest(p);
    assert.deepEqual(decodeDmaLoggingControl(d.data), c);
    validateDmaLoggingStart(c);
    assertBytes(encodeDeviceFeatureReply(d), p);
    // with ranges
    const r = { pageSize: 0x200000n, ranges: [{ iova: 0x1000n, length: 0x2000n }] };
    assertBytes(encodeDmaLoggingControl(r), hex('0000200000000000 01000000 00000000 0010000000000000 0020000000000000'));
  });

  it('GET DMA_LOGGING_REPORT (sample client): request 32, reply exactly 40', () => {
    const req = hex('28000000 08000100 0040000000000000 0010000000000000 0010000000000000');
    const r = { iova: 0x4000n, length: 4096n, pageSize: 4096n };
    assertBytes(encodeDeviceFeatureRequest({ argsz: 40, flags: featureFlags(DeviceFeature.DMA_LOGGING_REPORT, FF.GET), data: encodeDmaLoggingReportRequest(r) }), req);
    const d = decodeDeviceFeatureRequest(req);
    assert.deepEqual(decodeDmaLoggingReportRequest(d.data), r);
    assert.equal(validateDmaLoggingReport(r), 8);
    assert.equal(dmaLoggingReportReplySize(r), 40);
    checkFeatureArgsz(d.argsz, 40);
    const bitmap = hex('0100000000000000');
    const rep = encodeDmaLoggingReportReply({ ...r, bitmap });
    assert.equal(rep.length, 40);
    assertBytes(rep, new Uint8Array([...hex('28000000 08000100'), ...req.subarray(8), ...bitmap]));
    assert.deepEqual(decodeDmaLoggingReport(decodeDeviceFeatureReply(rep).data), { ...r, bitmap });
  });

  it('flag checks', () => {
    checkFeatureFlags(FF.GET | 1);
    checkFeatureFlags(FF.PROBE | FF.GET | FF.SET | 2);
    checkFeatureFlags(FF.PROBE | 8);
    assertProtocolError(() => checkFeatureFlags(FF.GET | FF.SET | 2), Errno.EINVAL);
    assertProtocolError(() => checkFeatureFlags(2), Errno.EINVAL);
    assertProtocolError(() => checkFeatureFlags(0x80000 | FF.GET | 1), Errno.EINVAL);
    assertProtocolError(() => decodeDeviceFeatureRequest(hex('10000000 01000300')), Errno.EINVAL);
    checkFeatureOps(FF.GET | 1, FEATURE_SUPPORTED_OPS[1]!);
    checkFeatureOps(FF.PROBE | 1, FEATURE_SUPPORTED_OPS[1]!);
    assertProtocolError(() => checkFeatureOps(FF.SET | 1, FEATURE_SUPPORTED_OPS[1]!), Errno.EINVAL);
    assertProtocolError(() => checkFeatureOps(FF.GET | 6, FEATURE_SUPPORTED_OPS[6]!), Errno.EINVAL);
    assertProtocolError(() => checkFeatureArgsz(15, 16), Errno.EINVAL);
  });

  it('sub-payload errors', () => {
    assertProtocolError(() => decodeDeviceFeatureRequest(new Uint8Array(7)), Errno.EINVAL);
    assertProtocolError(() => decodeMigrationData(new Uint8Array(7)), Errno.EINVAL);
    assertProtocolError(() => decodeMigDeviceState(hex('02000000')), Errno.EINVAL);
    assertProtocolError(() => decodeMigDeviceState(hex('08000000 00000000')), Errno.EINVAL);
    assertProtocolError(() => decodeDmaLoggingControl(hex('0010000000000000 01000000 00000000')), Errno.EINVAL);
    assertProtocolError(() => decodeDmaLoggingControl(hex('0010000000000000 ffffffff 00000000')), Errno.EINVAL);
    assertProtocolError(() => validateDmaLoggingStart({ pageSize: 0n, ranges: [] }), Errno.EINVAL);
    assertProtocolError(() => validateDmaLoggingStart({ pageSize: 4097n, ranges: [] }), Errno.EINVAL);
    assertProtocolError(() => validateDmaLoggingReport({ iova: 0n, length: 4096n, pageSize: 3n }), Errno.EINVAL);
    assertProtocolError(() => validateDmaLoggingReport({ iova: 0n, length: 2048n, pageSize: 4096n }), Errno.EINVAL);
    assertProtocolError(() => validateDmaLoggingReport({ iova: (1n << 64n) - 4096n, length: 8192n, pageSize: 4096n }), Errno.EINVAL);
    assertProtocolError(() => validateDmaLoggingReport({ iova: 0n, length: 1n << 63n, pageSize: 1n }), Errno.E2BIG);
    assertProtocolError(() => decodeDmaLoggingReport(hex('0000000000000000 0010000000000000 0000000000000000')), Errno.EINVAL); // page 0
    assertProtocolError(() => decodeDmaLoggingReport(hex('0000000000000000 0010000000000000 0010000000000000 00')), Errno.EINVAL);
    assertProtocolError(() => encodeDmaLoggingReport({ iova: 0n, length: 4096n, pageSize: 4096n, bitmap: new Uint8Array(16) }), Errno.EINVAL);
  });

  it('round-trips', () => {
    fc.assert(
      fc.property(u32(), fc.integer({ min: 0, max: 0xffff }), fc.constantFrom(FF.GET, FF.SET, FF.PROBE, FF.PROBE | FF.GET | FF.SET), fc.uint8Array({ maxLength: 40 }), (argsz, feature, ops, data) => {
        const m = { argsz, flags: featureFlags(feature, ops), data };
        const d = decodeDeviceFeatureRequest(encodeDeviceFeatureRequest(m));
        assert.deepEqual({ argsz: d.argsz, flags: d.flags, data: d.data }, m);
        assert.equal(d.feature, feature);
      }),
    );
    fc.assert(fc.property(u64(), (f) => assert.equal(decodeMigrationData(encodeMigrationData(f)), f)));
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 7 }), u32(), (deviceState, dataFd) => {
        assert.deepEqual(decodeMigDeviceState(encodeMigDeviceState({ deviceState, dataFd })), { deviceState, dataFd });
      }),
    );
    fc.assert(
      fc.property(u64(), fc.array(fc.record({ iova: u64(), length: u64() }), { maxLength: 6 }), (pageSize, ranges) => {
        assert.deepEqual(decodeDmaLoggingControl(encodeDmaLoggingControl({ pageSize, ranges })), plain({ pageSize, ranges }));
      }),
    );
    fc.assert(
      fc.property(u64(), fc.bigInt({ min: 0n, max: 1n << 24n }), fc.integer({ min: 0, max: 16 }), fc.infiniteStream(fc.integer({ min: 0, max: 255 })), (iova, length, shift, stream) => {
        const pageSize = 1n << BigInt(shift);
        const n = bitmapByteSize(length, pageSize);
        const bitmap = new Uint8Array(n);
        const it = stream[Symbol.iterator]();
        for (let i = 0; i < n; i++) bitmap[i] = it.next().value as number;
        const r = { iova, length, pageSize, bitmap };
        assert.deepEqual(decodeDmaLoggingReport(encodeDmaLoggingReport(r)), r);
        assert.deepEqual(decodeDmaLoggingReportRequest(encodeDmaLoggingReportRequest(r)), { iova, length, pageSize });
      }),
      { numRuns: 100 },
    );
  });

  it('total on random bytes', () => {
    assertTotal(decodeDeviceFeatureRequest);
    assertTotal(decodeDeviceFeatureReply);
    assertTotal(decodeMigrationData);
    assertTotal(decodeMigDeviceState);
    assertTotal(decodeDmaLoggingControl);
    assertTotal(decodeDmaLoggingReportRequest);
    assertTotal(decodeDmaLoggingReport);
  });
});

describe('dirty bitmaps', () => {
  it('size = ceil(ceil(length/page)/64)*8', () => {
    assert.equal(bitmapByteSize(0n, 4096n), 0);
    assert.equal(bitmapByteSize(1n, 4096n), 8);
    assert.equal(bitmapByteSize(4096n, 4096n), 8);
    assert.equal(bitmapByteSize(64n * 4096n, 4096n), 8);
    assert.equal(bitmapByteSize(64n * 4096n + 1n, 4096n), 16);
    assert.equal(bitmapByteSize(1n << 30n, 4096n), 32768);
    assertProtocolError(() => bitmapByteSize(4096n, 0n), Errno.EINVAL);
    assertProtocolError(() => bitmapByteSize((1n << 64n) - 1n, 1n), Errno.E2BIG);
  });

  it('bit i is LSB-first in little-endian u64 words', () => {
    const bm = allocBitmap(128n * 4096n, 4096n);
    bitmapSet(bm, 0);
    bitmapSet(bm, 9);
    bitmapSet(bm, 63);
    bitmapSet(bm, 64);
    assertBytes(bm, hex('0102000000000080 0100000000000000'));
    const dv = new DataView(bm.buffer);
    assert.equal(dv.getBigUint64(0, true), (1n << 0n) | (1n << 9n) | (1n << 63n));
    assert.ok(bitmapTest(bm, 9) && !bitmapTest(bm, 10));
    bitmapClear(bm, 9);
    assert.deepEqual(bitmapSetBits(bm), [0, 63, 64]);
    assertProtocolError(() => bitmapSet(bm, 128), Errno.EINVAL);
    assertProtocolError(() => bitmapTest(bm, -1), Errno.EINVAL);
  });

  it('mark a byte range', () => {
    const bm = allocBitmap(16n * 4096n, 4096n);
    bitmapMarkRange(bm, 4096n, 4095n, 2n); // pages 0 and 1
    bitmapMarkRange(bm, 4096n, 5n * 4096n, 4096n); // page 5 only
    bitmapMarkRange(bm, 4096n, 9n * 4096n, 0n); // nothing
    assert.deepEqual(bitmapSetBits(bm), [0, 1, 5]);
  });

  it('convert: smaller pages repeat bits, larger pages OR them', () => {
    const len = 8n * 4096n;
    const src = allocBitmap(len, 4096n);
    bitmapSet(src, 1);
    bitmapSet(src, 6);
    // 4 KiB → 1 KiB: page 1 → bits 4..7, page 6 → bits 24..27
    assert.deepEqual(bitmapSetBits(bitmapConvert(src, len, 4096n, 1024n)), [4, 5, 6, 7, 24, 25, 26, 27]);
    // 4 KiB → 16 KiB: page 1 → 0, page 6 → 1
    assert.deepEqual(bitmapSetBits(bitmapConvert(src, len, 4096n, 16384n)), [0, 1]);
    // identity
    assertBytes(bitmapConvert(src, len, 4096n, 4096n), src);
    // partial last page: length 3 KiB + 1 at 4 KiB pages → 1 KiB pages stop at length
    const s2 = allocBitmap(5120n, 4096n);
    bitmapSet(s2, 1);
    assert.deepEqual(bitmapSetBits(bitmapConvert(s2, 5120n, 4096n, 1024n)), [4]);
    assertProtocolError(() => bitmapConvert(src, len, 4096n, 3000n), Errno.EINVAL);
    assertProtocolError(() => bitmapConvert(new Uint8Array(16), len, 4096n, 1024n), Errno.EINVAL);
  });

  it('convert agrees with a per-byte model', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5000 }), fc.integer({ min: 0, max: 9 }), fc.integer({ min: 0, max: 9 }), fc.array(fc.nat(), { maxLength: 20 }), (lenN, s, d, bits) => {
        const length = BigInt(lenN);
        const sp = 1n << BigInt(s);
        const dp = 1n << BigInt(d);
        const src = allocBitmap(length, sp);
        const pages = Math.ceil(lenN / Number(sp));
        for (const b of bits) bitmapSet(src, b % pages);
        const out = bitmapConvert(src, length, sp, dp);
        assert.equal(out.length, bitmapByteSize(length, dp));
        const dpages = Math.ceil(lenN / Number(dp));
        for (let j = 0; j < dpages; j++) {
          let dirty = false;
          for (let byte = j * Number(dp); byte < Math.min((j + 1) * Number(dp), lenN); byte++) {
            if (bitmapTest(src, Math.floor(byte / Number(sp)))) dirty = true;
          }
          assert.equal(bitmapTest(out, j), dirty, `page ${j}`);
        }
      }),
      { numRuns: 200 },
    );
  });
});
