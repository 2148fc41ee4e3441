import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Command, commandName, isClientToServerCommand, isCurrentCommand, RESERVED_COMMANDS } from '../../src/protocol/commands.js';
import * as C from '../../src/protocol/constants.js';
import * as P from '../../src/protocol/index.js';
import { decodeDeviceResetRequest, encodeDeviceResetReply } from '../../src/protocol/empty.js';
import { Errno } from '../../src/protocol/errno.js';
import { assertProtocolError } from './helpers/util.js';

describe('commands and constants', () => {
  it('command numbers 1..18', () => {
    assert.deepEqual(
      Object.entries(Command).map(([k, v]) => `${v}:${k}`),
      [
        '1:VERSION', '2:DMA_MAP', '3:DMA_UNMAP', '4:DEVICE_GET_INFO', '5:DEVICE_GET_REGION_INFO', '6:DEVICE_GET_REGION_IO_FDS',
        '7:DEVICE_GET_IRQ_INFO', '8:DEVICE_SET_IRQS', '9:REGION_READ', '10:REGION_WRITE', '11:DMA_READ', '12:DMA_WRITE',
        '13:DEVICE_RESET', '14:DIRTY_PAGES', '15:REGION_WRITE_MULTI', '16:DEVICE_FEATURE', '17:MIG_DATA_READ', '18:MIG_DATA_WRITE',
      ],
    );
    assert.ok(RESERVED_COMMANDS.has(14));
    assert.ok(!isCurrentCommand(14) && !isCurrentCommand(0) && !isCurrentCommand(19));
    assert.ok(isCurrentCommand(15));
    assert.ok(!isClientToServerCommand(11) && !isClientToServerCommand(12) && isClientToServerCommand(13));
    assert.equal(commandName(5), 'VFIO_USER_DEVICE_GET_REGION_INFO');
    assert.equal(commandName(99), 'UNKNOWN(99)');
  });

  it('flag words match <linux/vfio.h> / libvfio-user', () => {
    assert.equal(C.NUM_REGIONS, 9);
    assert.equal(C.NUM_IRQS, 5);
    assert.equal(C.RegionIndex.CONFIG, 7);
    assert.equal(C.IrqIndex.REQ, 4);
    assert.deepEqual(C.RegionInfoFlags, { READ: 1, WRITE: 2, MMAP: 4, CAPS: 8 });
    assert.deepEqual(C.SetIrqsFlags, { DATA_NONE: 1, DATA_BOOL: 2, DATA_EVENTFD: 4, ACTION_MASK: 8, ACTION_UNMASK: 0x10, ACTION_TRIGGER: 0x20 });
    assert.equal(C.SET_IRQS_DATA_TYPE_MASK, 7);
    assert.equal(C.SET_IRQS_ACTION_TYPE_MASK, 0x38);
    assert.deepEqual(C.DmaMapFlags, { READ: 1, WRITE: 2, MMAP: 4, FILE_IO: 8 });
    assert.equal(C.DmaUnmapFlags.ALL, 2);
    assert.deepEqual(C.DeviceFeatureFlags, { MASK: 0xffff, GET: 0x10000, SET: 0x20000, PROBE: 0x40000 });
    assert.deepEqual(C.DeviceFeature, { MIGRATION: 1, MIG_DEVICE_STATE: 2, DMA_LOGGING_START: 6, DMA_LOGGING_STOP: 7, DMA_LOGGING_REPORT: 8 });
    assert.deepEqual(C.MigrationFlags, { STOP_COPY: 1n, P2P: 2n, PRE_COPY: 4n });
    assert.equal(C.DeviceState.PRE_COPY_P2P, 7);
    assert.deepEqual(C.KvmIoeventfdFlags, { DATAMATCH: 1, PIO: 2, DEASSIGN: 4, VIRTIO_CCW_NOTIFY: 8 });
    assert.deepEqual(C.IrqInfoFlags, { EVENTFD: 1, MASKABLE: 2, AUTOMASKED: 4, NORESIZE: 8 });
    assert.deepEqual(C.RegionCapId, { SPARSE_MMAP: 1, TYPE: 2, MSIX_MAPPABLE: 3 });
  });

  it('DEVICE_RESET has no payload', () => {
    assert.equal(encodeDeviceResetReply().length, 0);
    decodeDeviceResetRequest(new Uint8Array(0));
    assertProtocolError(() => decodeDeviceResetRequest(new Uint8Array(1)), Errno.EINVAL);
  });

  it('index re-exports every codec', () => {
    for (const name of ['encodeDmaMapRequest', 'decodeVersion', 'validateSetIrqs', 'bitmapConvert', 'rangeWithin', 'encodeMessage', 'ProtocolError', 'Command', 'decodeMigDataReadRequest']) {
      assert.ok(name in P, name);
    }
  });
});
