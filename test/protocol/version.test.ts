import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Errno } from '../../src/protocol/errno.js';
import {
  decodeVersion,
  decodeVersionWithCapabilities,
  encodeCapabilities,
  encodeVersion,
  encodeVersionWithCapabilities,
  negotiateMinor,
  parseCapabilities,
  type CapabilitiesInput,
} from '../../src/protocol/version.js';
import { parseJson, stringifyJson } from '../../src/protocol/json.js';
import { assertBytes, assertProtocolError, assertTotal, hex, shifted } from './helpers/util.js';
import { plain } from './helpers/util.js';
import { LVU_CLIENT_VERSION_JSON, QEMU_11_1_3_VERSION_JSON, QEMU_11_1_3_VERSION_REQUEST_HEX } from './helpers/vectors.js';

const enc = new TextEncoder();

describe('VERSION vectors', () => {
  it("QEMU 11.1.3's 198-byte request decodes to its capabilities", () => {
    const p = hex(QEMU_11_1_3_VERSION_REQUEST_HEX);
    assert.equal(p.length, 198);
    const m = decodeVersionWithCapabilities(shifted(p));
    assert.equal(m.major, 0);
    assert.equal(m.minor, 0);
    assert.equal(m.json, QEMU_11_1_3_VERSION_JSON);
    const c = m.capabilities;
    assert.equal(c.maxMsgFds, 16);
    assert.equal(c.maxDataXferSize, 1048576);
    assert.equal(c.pgsizes, 4096);
    assert.equal(c.maxDmaMaps, 65535);
    assert.equal(c.writeMultiple, true);
    assert.deepEqual(c.migration, { pgsize: 4096, maxBitmapSize: 268435456 });
    assert.equal(c.twinSocket, undefined);
    assert.equal(c.extensions, undefined);
    assert.deepEqual([...c.present].sort(), ['max_data_xfer_size', 'max_dma_maps', 'max_msg_fds', 'migration', 'pgsizes', 'write_multiple']);
    // and it re-encodes byte for byte
    assertBytes(encodeVersion({ major: 0, minor: 0, json: QEMU_11_1_3_VERSION_JSON }), p);
  });

  it("the LVU sample client's 0.2 request", () => {
    const p = hex('0000 0200') ;
    const full = new Uint8Array([...p, ...enc.encode(LVU_CLIENT_VERSION_JSON), 0]);
    assertBytes(full.subarray(0, 8), hex('00000200 7b226361'));
    const m = decodeVersionWithCapabilities(full);
    assert.equal(m.major, 0);
    assert.equal(m.minor, 2);
    assert.equal(m.capabilities.maxMsgFds, 32);
    assert.equal(m.capabilities.maxDataXferSize, 1024);
    // defaults for what it did not send
    assert.equal(m.capabilities.pgsizes, 4096);
    assert.equal(m.capabilities.maxDmaMaps, 65535);
    assert.equal(m.capabilities.writeMultiple, false);
    assert.equal(m.capabilities.migration, undefined);
    assert.deepEqual([...m.capabilities.present], ['max_msg_fds', 'max_data_xfer_size']);
    assertBytes(encodeVersionWithCapabilities(0, 2, { maxMsgFds: 32, maxDataXferSize: 1024 }), full);
  });

  it('payload without JSON is exactly 4 bytes', () => {
    assertBytes(encodeVersion({ major: 0, minor: 2 }), hex('0000 0200'));
    assert.deepEqual(decodeVersion(hex('0100 0300')), { major: 1, minor: 3 });
    const c = parseCapabilities(undefined);
    assert.equal(c.maxMsgFds, 1);
    assert.equal(c.present.size, 0);
  });

  it('a compact server reply fits inside QEMU\'s 198-byte request', () => {
    const p = encodeVersionWithCapabilities(0, 0, {
      maxMsgFds: 8,
      maxDataXferSize: 1048576,
      pgsizes: 4096,
      maxDmaMaps: 65535,
      writeMultiple: true,
      migration: { pgsize: 4096, maxBitmapSize: 268435456 },
    });
    assert.ok(p.length <= 198, `${p.length}`);
    const s = new TextDecoder().decode(p.subarray(4, p.length - 1));
    assert.equal(
      s,
      '{"capabilities":{"max_msg_fds":8,"max_data_xfer_size":1048576,"pgsizes":4096,"max_dma_maps":65535,"write_multiple":true,"migration":{"pgsize":4096,"max_bitmap_size":268435456}}}',
    );
    assert.ok(!s.includes(' '));
  });

  it('only the keys given are written', () => {
    assert.equal(encodeCapabilities({}), '{"capabilities":{}}');
    assert.equal(encodeCapabilities({ twinSocket: { supported: true, fdIndex: 0 } }), '{"capabilities":{"twin_socket":{"supported":true,"fd_index":0}}}');
    assert.equal(encodeCapabilities({ pgsizes: (1n << 63n) | 4096n }), `{"capabilities":{"pgsizes":${(1n << 63n) | 4096n}}}`);
  });
});

describe('VERSION capabilities parsing', () => {
  const caps = (inner: string) => parseCapabilities(`{"capabilities":${inner}}`);

  it('twin_socket, unknown keys, big pgsizes', () => {
    const c = caps('{"twin_socket":{"supported":true,"fd_index":0},"x_vendor":[1,"a"],"pgsizes":18446744073709547520}');
    assert.deepEqual(c.twinSocket, { supported: true, fdIndex: 0 });
    assert.deepEqual(c.extensions, { x_vendor: [1, 'a'] });
    assert.equal(c.pgsizes, 18446744073709547520n);
    assert.ok(c.present.has('x_vendor'));
  });

  it('a "__proto__" key is kept as data, never as a prototype', () => {
    const c = caps('{"__proto__":{"polluted":1}}');
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.deepEqual(Object.keys(c.extensions ?? {}), ['__proto__']);
    assert.equal(Object.getPrototypeOf(c.extensions), Object.prototype);
    assert.equal(encodeCapabilities({ extensions: c.extensions }), '{"capabilities":{"__proto__":{"polluted":1}}}');
  });

  it('missing capabilities member → defaults; migration without pgsize defaults 4096', () => {
    assert.equal(parseCapabilities('{}').maxDataXferSize, 1048576);
    assert.deepEqual(caps('{"migration":{}}').migration, { pgsize: 4096 });
  });

  it('wrong types and bad values → EINVAL', () => {
    const bad = [
      '{"max_msg_fds":"8"}',
      '{"max_msg_fds":1025}',
      '{"max_msg_fds":-1}',
      '{"max_msg_fds":1.5}',
      '{"max_data_xfer_size":true}',
      '{"max_dma_maps":null}',
      '{"pgsizes":"4096"}',
      '{"pgsizes":-4096}',
      '{"pgsizes":18446744073709551616}',
      '{"write_multiple":1}',
      '{"twin_socket":true}',
      '{"twin_socket":{"supported":"yes"}}',
      '{"twin_socket":{"supported":true,"fd_index":-1}}',
      '{"migration":4096}',
      '{"migration":{"pgsize":"4096"}}',
      '{"migration":{"pgsize":0}}',
      '{"migration":{"pgsize":4096,"max_bitmap_size":false}}',
    ];
    for (const b of bad) assertProtocolError(() => caps(b), Errno.EINVAL);
    for (const b of ['[]', '"x"', '1', '{"capabilities":[]}', '{"capabilities":null}', '{', '{"a":1,}', '{"a" 1}', 'nul', '{} x']) {
      assertProtocolError(() => parseCapabilities(b), Errno.EINVAL);
    }
    assert.equal(caps('{"max_msg_fds":0}').maxMsgFds, 0);
    assert.equal(caps('{"max_msg_fds":1024}').maxMsgFds, 1024);
  });

  it('payload errors → EINVAL', () => {
    assertProtocolError(() => decodeVersion(hex('0000 00')), Errno.EINVAL);
    assertProtocolError(() => decodeVersion(hex('0000 0000 7b7d')), Errno.EINVAL); // "{}" without NUL
    assertProtocolError(() => decodeVersion(hex('0000 0000 ff00')), Errno.EINVAL); // invalid UTF-8
    assertProtocolError(() => decodeVersionWithCapabilities(hex('0000 0000 7b00')), Errno.EINVAL); // "{" unparsable
    // text up to the first NUL is the JSON
    assert.equal(decodeVersion(hex('0000 0000 7b7d 00 00')).json, '{}');
    assert.equal(decodeVersion(hex('0000 0000 00')).json, '');
    assertProtocolError(() => encodeVersion({ major: 0x10000, minor: 0 }), Errno.EINVAL);
    assertProtocolError(() => encodeCapabilities({ maxMsgFds: 2000 }), Errno.EINVAL);
    assertProtocolError(() => encodeCapabilities({ extensions: { pgsizes: 1 } }), Errno.EINVAL);
  });

  it('negotiateMinor', () => {
    assert.equal(negotiateMinor(0, 0), 0);
    assert.equal(negotiateMinor(0, 2), 2);
    assert.equal(negotiateMinor(0, 7), 2);
    assertProtocolError(() => negotiateMinor(1, 0), Errno.EINVAL);
  });
});

describe('VERSION properties', () => {
  const capsArb: fc.Arbitrary<CapabilitiesInput> = fc.record(
    {
      maxMsgFds: fc.integer({ min: 0, max: 1024 }),
      maxDataXferSize: fc.nat(),
      pgsizes: fc.oneof(fc.nat(), fc.bigInt({ min: 1n << 53n, max: (1n << 64n) - 1n })),
      maxDmaMaps: fc.nat(),
      writeMultiple: fc.boolean(),
      twinSocket: fc.record({ supported: fc.boolean(), fdIndex: fc.integer({ min: 0, max: 1024 }) }, { requiredKeys: ['supported'] }),
      migration: fc.record({ pgsize: fc.integer({ min: 1, max: 1 << 30 }), maxBitmapSize: fc.nat() }, { requiredKeys: ['pgsize'] }),
      extensions: fc.dictionary(fc.string().map((s) => `x_${s}`), fc.oneof(fc.string(), fc.integer(), fc.boolean(), fc.constant(null)), { maxKeys: 3 }),
    },
    { requiredKeys: [] },
  );

  it('encodeCapabilities → parseCapabilities round-trips', () => {
    fc.assert(
      fc.property(u16a(), u16a(), capsArb, (major, minor, input) => {
        const p = encodeVersionWithCapabilities(major, minor, input);
        const m = decodeVersionWithCapabilities(p);
        assert.equal(m.major, major);
        assert.equal(m.minor, minor);
        const c = m.capabilities;
        for (const [k, v] of Object.entries(input)) {
          if (k === 'extensions') {
            if (Object.keys(v as object).length === 0) assert.equal(c.extensions, undefined);
            else assert.deepEqual(c.extensions, plain(v));
          } else {
            assert.deepEqual((c as unknown as Record<string, unknown>)[k], plain(v), k);
          }
        }
        const presentKnown = [...c.present].filter((k) => !k.startsWith('x_'));
        assert.equal(presentKnown.length, Object.keys(input).filter((k) => k !== 'extensions').length);
      }),
      { numRuns: 300 },
    );
  });

  it('encodeVersion → decodeVersion round-trips', () => {
    fc.assert(
      fc.property(u16a(), u16a(), fc.option(fc.string().filter((s) => !s.includes('\0')), { nil: undefined }), (major, minor, json) => {
        const m = decodeVersion(encodeVersion({ major, minor, json }));
        assert.deepEqual(m, json === undefined ? { major, minor } : { major, minor, json });
      }),
    );
  });

  it('JSON parser agrees with JSON.parse on JSON.stringify output', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        const s = JSON.stringify(v);
        const ours = parseJson(s);
        const norm = (x: unknown): unknown => JSON.parse(stringifyJson(x));
        assert.deepEqual(norm(ours), JSON.parse(s));
      }),
      { numRuns: 300 },
    );
  });

  it('decoders are total on random bytes', () => {
    assertTotal(decodeVersion);
    assertTotal(decodeVersionWithCapabilities);
    // also random strings through the capability parser
    fc.assert(
      fc.property(fc.string(), (s) => {
        try {
          parseCapabilities(s);
        } catch (e) {
          assert.equal((e as { errno?: number }).errno, Errno.EINVAL);
        }
      }),
    );
  });
});


function u16a(): fc.Arbitrary<number> {
  return fc.integer({ min: 0, max: 0xffff });
}
