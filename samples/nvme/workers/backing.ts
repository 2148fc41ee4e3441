// A worker's own descriptor of the namespace's backing file: vectored reads
// and writes straight from and to views of guest memory, synchronously for
// small transfers (a page-cache copy costs less than a thread-pool round
// trip) and in the thread pool above. The controller's thread created and
// sized the file; a worker only opens it.
import { closeSync, fdatasync, openSync, readv, readvSync, writev, writevSync } from 'node:fs';

/** Splits a vector so that no single readv/writev exceeds IOV_MAX entries. */
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

/** Counters the SMART log would show, for this worker's share. */
export interface BackingStats {
  readCommands: number;
  writeCommands: number;
  blocksRead: number;
  blocksWritten: number;
}

export class WorkerBacking {
  readonly stats: BackingStats = { readCommands: 0, writeCommands: 0, blocksRead: 0, blocksWritten: 0 };
  private fd: number;

  constructor(
    path: string,
    /** Namespace size in bytes. */
    readonly size: number,
    readonly readOnly: boolean,
  ) {
    this.fd = openSync(path, readOnly ? 'r' : 'r+');
  }

  readSync(pos: number, bufs: readonly Uint8Array[]): void {
    const want = total(bufs);
    for (let done = 0; done < want; ) {
      const n = readvSync(this.fd, rest(bufs, done), pos + done);
      if (n === 0) throw shortTransfer();
      done += n;
    }
  }

  writeSync(pos: number, bufs: readonly Uint8Array[]): void {
    const want = total(bufs);
    for (let done = 0; done < want; ) done += writevSync(this.fd, rest(bufs, done), pos + done);
  }

  read(pos: number, bufs: readonly Uint8Array[]): Promise<void> {
    return this.vectored(readv, pos, bufs);
  }

  write(pos: number, bufs: readonly Uint8Array[]): Promise<void> {
    return this.vectored(writev, pos, bufs);
  }

  private vectored(op: typeof readv | typeof writev, pos: number, bufs: readonly Uint8Array[]): Promise<void> {
    const want = total(bufs);
    return new Promise<void>((resolve, reject) => {
      let done = 0;
      const step = (): void => {
        if (done === want) return resolve();
        (op as typeof readv)(this.fd, rest(bufs, done), pos + done, (err, n) => {
          if (err) return reject(err);
          if (n === 0) return reject(shortTransfer());
          done += n;
          step();
        });
      };
      step();
    });
  }

  flush(): Promise<void> {
    return new Promise((resolve, reject) => fdatasync(this.fd, (e) => (e ? reject(e) : resolve())));
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}
