// Vectored file I/O of the NVMe sample's backing file, shared by the
// controller's Namespace and the I/O workers' own descriptor of the same
// file: whole transfers (a short read or write is continued; end of file is
// EIO), never more than IOV_MAX buffers per call, synchronously or on the
// thread pool. Also the SMART counters both keep.
import { readv, readvSync, writev, writevSync } from 'node:fs';

/** Linux's limit on the buffers of one readv/writev: longer vectors go in several calls. */
const IOV_MAX = 1024;

/** The buffers after the first `n` bytes, at most IOV_MAX of them. */
function rest(bufs: readonly Uint8Array[], n: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const b of bufs) {
    if (out.length === IOV_MAX) break;
    if (n >= b.length) {
      n -= b.length;
      continue;
    }
    out.push(n > 0 ? b.subarray(n) : b);
    n = 0;
  }
  return out;
}

const total = (bufs: readonly Uint8Array[]): number => bufs.reduce((n, b) => n + b.length, 0);
const shortTransfer = (): Error => Object.assign(new Error('short transfer (end of file)'), { code: 'EIO' });

/** Fills `bufs` in order from byte `pos` of `fd`. */
export function readFullySync(fd: number, pos: number, bufs: readonly Uint8Array[]): void {
  const want = total(bufs);
  for (let done = 0; done < want; ) {
    const n = readvSync(fd, rest(bufs, done), pos + done);
    if (n === 0) throw shortTransfer();
    done += n;
  }
}

/** Writes `bufs` in order at byte `pos` of `fd`. */
export function writeFullySync(fd: number, pos: number, bufs: readonly Uint8Array[]): void {
  const want = total(bufs);
  for (let done = 0; done < want; ) done += writevSync(fd, rest(bufs, done), pos + done);
}

/** readFullySync on the thread pool. */
export function readFully(fd: number, pos: number, bufs: readonly Uint8Array[]): Promise<void> {
  return vectored(readv, fd, pos, bufs);
}

/** writeFullySync on the thread pool. */
export function writeFully(fd: number, pos: number, bufs: readonly Uint8Array[]): Promise<void> {
  return vectored(writev, fd, pos, bufs);
}

function vectored(op: typeof readv | typeof writev, fd: number, pos: number, bufs: readonly Uint8Array[]): Promise<void> {
  const want = total(bufs);
  return new Promise<void>((resolve, reject) => {
    let done = 0;
    const step = (): void => {
      if (done === want) return resolve();
      (op as typeof readv)(fd, rest(bufs, done), pos + done, (err, n) => {
        if (err) return reject(err);
        if (n === 0) return reject(shortTransfer());
        done += n;
        step();
      });
    };
    step();
  });
}

/** Counters the SMART log shows (the controller's, or one worker's share). */
export interface IoStats {
  readCommands: number;
  writeCommands: number;
  blocksRead: number;
  blocksWritten: number;
}

/** A fresh set of IoStats. */
export const newIoStats = (): IoStats => ({ readCommands: 0, writeCommands: 0, blocksRead: 0, blocksWritten: 0 });

/** Counts one Read or Write of `nlb` blocks. */
export function countIo(st: IoStats, write: boolean, nlb: number): void {
  if (write) {
    st.writeCommands++;
    st.blocksWritten += nlb;
  } else {
    st.readCommands++;
    st.blocksRead += nlb;
  }
}
