// What the timer sample does with guest memory after its interrupt: writes
// 4 x 1 KiB of 'A'..'D', reads it back as 2 x 2 KiB and compares CRCs,
// either directly through a view (marked dirty) or through DMA messages.
import type { DeviceContext } from '../../src/server/context.js';
import type { DmaRegionInfo } from '../../src/server/dma-table.js';
import { crc32 } from '../../src/util/crc32.js';
import type { Logger } from '../../src/util/logger.js';

/** Bytes per DMA write of the round. */
export const DMA_CHUNK = 1024;

/** One write-and-read-back round into `region`; false (and `onMismatch`) when the bytes differ. */
export async function dmaRound(
  ctx: DeviceContext,
  region: DmaRegionInfo,
  viaMessages: boolean,
  log: Logger,
  onMismatch?: (what: string) => void,
): Promise<boolean> {
  const written = new Uint8Array(4 * DMA_CHUNK);
  for (let i = 0; i < 4; i++) {
    const data = new Uint8Array(DMA_CHUNK).fill(0x41 + i);
    written.set(data, i * DMA_CHUNK);
    const iova = region.iova + BigInt(i * DMA_CHUNK);
    if (viaMessages || !region.mapped) await ctx.dma.write(iova, data, { viaMessages: true });
    else {
      const v = ctx.dma.view(iova, DMA_CHUNK, { write: true });
      v.bytes.set(data);
      v.release();
    }
  }
  const back = new Uint8Array(4 * DMA_CHUNK);
  for (let i = 0; i < 2; i++) {
    const iova = region.iova + BigInt(i * 2 * DMA_CHUNK);
    const part = viaMessages || !region.mapped ? await ctx.dma.read(iova, 2 * DMA_CHUNK, { viaMessages: true }) : ctx.dma.readSync(iova, 2 * DMA_CHUNK);
    back.set(part, i * 2 * DMA_CHUNK);
  }
  const how = viaMessages ? 'messages' : 'direct';
  if (crc32(back) !== crc32(written)) {
    const what = `DMA ${how} at 0x${region.iova.toString(16)}: read-back CRC mismatch`;
    log.error(what);
    onMismatch?.(what);
    return false;
  }
  log.info(`DMA ${how} at 0x${region.iova.toString(16)}: ${written.length} bytes written and read back, CRC ${crc32(back).toString(16)}`);
  return true;
}
