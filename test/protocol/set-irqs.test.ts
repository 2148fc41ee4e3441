import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Errno } from '../../src/protocol/errno.js';
import { SetIrqsFlags as F } from '../../src/protocol/constants.js';
import {
  classifySetIrqs,
  decodeSetIrqsReply,
  decodeSetIrqsRequest,
  encodeSetIrqsReply,
  encodeSetIrqsRequest,
  validateSetIrqs,
  type SetIrqsRequest,
} from '../../src/protocol/set-irqs.js';
import { assertBytes, assertProtocolError, assertTotal, hex, shifted, u32 } from './helpers/util.js';

// INTx 1, MSI 4, MSI-X 0, ERR 1, REQ 1
const counts = [1, 4, 0, 1, 1];

describe('DEVICE_SET_IRQS codec', () => {
  it('sample client INTx vector: EVENTFD|TRIGGER, argsz 20', () => {
    const p = hex('14000000 24000000 00000000 00000000 01000000');
    const r = { flags: F.DATA_EVENTFD | F.ACTION_TRIGGER, index: 0, start: 0, count: 1 };
    assertBytes(encodeSetIrqsRequest(r), p);
    assert.deepEqual(decodeSetIrqsRequest(shifted(p)), { ...r, argsz: 20, data: new Uint8Array(0) });
    validateSetIrqs(decodeSetIrqsRequest(p), counts, 1);
    assert.equal(classifySetIrqs(r, 1), 'assign-eventfds');
  });

  it('BOOL data vector: 20 + count bytes', () => {
    const r = { flags: F.DATA_BOOL | F.ACTION_TRIGGER, index: 1, start: 1, count: 3, data: hex('010001') };
    const p = encodeSetIrqsRequest(r);
    assertBytes(p, hex('17000000 22000000 01000000 01000000 03000000 010001'));
    const d = decodeSetIrqsRequest(p);
    assert.deepEqual(d, { ...r, argsz: 23 });
    validateSetIrqs(d, counts);
    assert.equal(classifySetIrqs(d), 'trigger');
  });

  it('reply is empty; errors', () => {
    assert.equal(encodeSetIrqsReply().length, 0);
    decodeSetIrqsReply(new Uint8Array(0));
    assertProtocolError(() => decodeSetIrqsReply(new Uint8Array(1)), Errno.EINVAL);
    assertProtocolError(() => decodeSetIrqsRequest(new Uint8Array(19)), Errno.EINVAL);
    assertProtocolError(() => decodeSetIrqsRequest(hex('13000000 24000000 00000000 00000000 01000000')), Errno.EINVAL);
  });

  it('round-trips and is total', () => {
    fc.assert(
      fc.property(fc.integer({ min: 20, max: 0xffffffff }), u32(), u32(), u32(), u32(), fc.uint8Array({ maxLength: 32 }), (argsz, flags, index, start, count, data) => {
        const r = { argsz, flags, index, start, count, data };
        assert.deepEqual(decodeSetIrqsRequest(encodeSetIrqsRequest(r)), r);
      }),
    );
    assertTotal(decodeSetIrqsRequest);
    assertTotal(decodeSetIrqsReply);
  });
});

describe('validateSetIrqs', () => {
  const ok = (r: SetIrqsRequest, fds = 0, c: number[] | null = counts) => validateSetIrqs(r, c ?? undefined, fds);
  const bad = (r: SetIrqsRequest, fds = 0, c: number[] | null = counts) => assertProtocolError(() => validateSetIrqs(r, c ?? undefined, fds), Errno.EINVAL);
  const NT = F.DATA_NONE | F.ACTION_TRIGGER;
  const ET = F.DATA_EVENTFD | F.ACTION_TRIGGER;

  it('disable-all (count 0, NONE|TRIGGER) is accepted on every index, even one with 0 vectors', () => {
    for (let index = 0; index < 5; index++) ok({ flags: NT, index, start: 0, count: 0 });
    ok({ flags: NT, index: 2, start: 0, count: 0 }, 0, [0, 0, 0, 0, 0]);
    assert.equal(classifySetIrqs({ flags: NT, index: 2, start: 0, count: 0 }), 'disable-all');
    bad({ flags: NT, index: 0, start: 1, count: 0 });
    bad({ flags: ET, index: 0, start: 0, count: 0 });
    bad({ flags: F.DATA_NONE | F.ACTION_MASK, index: 0, start: 0, count: 0 });
  });

  it('index, flag bits', () => {
    bad({ flags: NT, index: 5, start: 0, count: 0 });
    ok({ flags: NT, index: 5, start: 0, count: 0 }, 0, [1, 1, 1, 1, 1, 1]);
    bad({ flags: NT | 0x40, index: 0, start: 0, count: 1 });
    bad({ flags: F.ACTION_TRIGGER, index: 0, start: 0, count: 1 }); // no data type
    bad({ flags: F.DATA_NONE, index: 0, start: 0, count: 1 }); // no action
    bad({ flags: F.DATA_NONE | F.DATA_BOOL | F.ACTION_TRIGGER, index: 0, start: 0, count: 1 });
    bad({ flags: F.DATA_NONE | F.ACTION_MASK | F.ACTION_UNMASK, index: 0, start: 0, count: 1 });
  });

  it('BOOL data length must equal count', () => {
    const BT = F.DATA_BOOL | F.ACTION_TRIGGER;
    ok({ flags: BT, index: 1, start: 0, count: 2, data: hex('0101') });
    bad({ flags: BT, index: 1, start: 0, count: 2, data: hex('01') });
    bad({ flags: BT, index: 1, start: 0, count: 2 });
  });

  it('start + count bounds and u32 overflow', () => {
    ok({ flags: ET, index: 1, start: 0, count: 4 });
    ok({ flags: ET, index: 1, start: 3, count: 1 });
    bad({ flags: ET, index: 1, start: 4, count: 1 });
    bad({ flags: ET, index: 1, start: 2, count: 3 });
    bad({ flags: ET, index: 2, start: 0, count: 1 }); // MSI-X has 0 vectors
    bad({ flags: ET, index: 1, start: 0xffffffff, count: 2 }, 0, null);
    ok({ flags: ET, index: 1, start: 0xfffffffe, count: 2 }, 0, null);
  });

  it('ERR/REQ: TRIGGER only, count ≤ 1', () => {
    ok({ flags: ET, index: 3, start: 0, count: 1 }, 1);
    ok({ flags: ET, index: 4, start: 0, count: 1 });
    bad({ flags: F.DATA_EVENTFD | F.ACTION_MASK, index: 3, start: 0, count: 1 });
    bad({ flags: F.DATA_NONE | F.ACTION_UNMASK, index: 4, start: 0, count: 1 });
    bad({ flags: ET, index: 3, start: 0, count: 2 }, 0, [1, 1, 1, 2, 1]);
  });

  it('fds only with EVENTFD, and 0 or count of them', () => {
    ok({ flags: ET, index: 1, start: 0, count: 4 }, 4);
    ok({ flags: ET, index: 1, start: 0, count: 4 }, 0);
    bad({ flags: ET, index: 1, start: 0, count: 4 }, 3);
    bad({ flags: NT, index: 1, start: 0, count: 1 }, 1);
    bad({ flags: F.DATA_BOOL | F.ACTION_TRIGGER, index: 1, start: 0, count: 1, data: hex('01') }, 1);
    // QEMU's INTx resample fd: UNMASK|EVENTFD
    ok({ flags: F.DATA_EVENTFD | F.ACTION_UNMASK, index: 0, start: 0, count: 1 }, 1);
  });

  it('classify', () => {
    assert.equal(classifySetIrqs({ flags: ET, index: 1, start: 0, count: 2 }, 0), 'deassign-eventfds');
    assert.equal(classifySetIrqs({ flags: F.DATA_NONE | F.ACTION_MASK, index: 0, start: 0, count: 1 }), 'mask');
    assert.equal(classifySetIrqs({ flags: F.DATA_BOOL | F.ACTION_UNMASK, index: 0, start: 0, count: 1 }), 'unmask');
    assert.equal(classifySetIrqs({ flags: F.DATA_EVENTFD | F.ACTION_MASK, index: 0, start: 0, count: 1 }, 1), 'mask-eventfd');
    assert.equal(classifySetIrqs({ flags: F.DATA_EVENTFD | F.ACTION_UNMASK, index: 0, start: 0, count: 1 }, 1), 'unmask-eventfd');
  });

  it('never throws anything but EINVAL on arbitrary requests', () => {
    fc.assert(
      fc.property(u32(), fc.integer({ min: 0, max: 8 }), u32(), fc.integer({ min: 0, max: 70 }), fc.uint8Array({ maxLength: 8 }), fc.integer({ min: 0, max: 5 }), (flags, index, start, count, data, fds) => {
        try {
          validateSetIrqs({ flags, index, start, count, data }, counts, fds);
          // accepted requests satisfy the invariants
          assert.ok(index < 5);
          if (count > 0) assert.ok(start + count <= counts[index]!);
        } catch (e) {
          assert.equal((e as { errno?: number }).errno, Errno.EINVAL);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
