// One NVMe namespace backed by a regular file: 512-byte LBAs, size fixed at
// creation. Data moves between the file and guest memory with vectored,
// asynchronous file I/O straight from/to the DMA views (no copy in JS).
import { closeSync, constants, fdatasync, fstatSync, ftruncateSync, openSync, readSync, writeSync } from 'node:fs';
import { native } from '../../src/native/binding.js';
import { VfioUserError } from '../../src/protocol/errors.js';
import { newIoStats, readFully, readFullySync, writeFully, writeFullySync, type IoStats } from './file-io.js';

export const LBA_SHIFT = 9;
export const LBA_SIZE = 1 << LBA_SHIFT;

export interface NamespaceOptions {
  path: string;
  /** Bytes; a multiple of 512. The file is created or grown to this size (never shrunk). */
  size: number;
  readOnly?: boolean;
  /** flock the file (exclusive; shared when read-only) before growing it; BackingFileInUseError if held elsewhere. */
  lock?: boolean;
}

/** Another process (another `vfio-user nvme`, say) holds a lock on the backing file. */
export class BackingFileInUseError extends VfioUserError {
  readonly path: string;
  constructor(path: string) {
    super('ERR_NVME_BACKING_FILE_IN_USE', `backing file ${path} is in use by another process (it holds a lock on it)`);
    this.path = path;
  }
}

/** A file-backed namespace (NSID 1). */
export class Namespace {
  readonly path: string;
  readonly size: number;
  readonly blocks: number;
  readonly readOnly: boolean;
  private fd: number;
  /** Counters for the SMART log. */
  readonly stats: IoStats = newIoStats();

  constructor(opts: NamespaceOptions) {
    if (!Number.isSafeInteger(opts.size) || opts.size <= 0 || opts.size % LBA_SIZE !== 0) {
      throw new RangeError(`namespace size ${opts.size} must be a positive multiple of ${LBA_SIZE}`);
    }
    this.path = opts.path;
    this.size = opts.size;
    this.blocks = opts.size / LBA_SIZE;
    this.readOnly = opts.readOnly ?? false;
    // Created if missing, never truncated on open; with `lock`, locked before
    // it is grown, so no second server (or anything else that flocks it)
    // shares or resizes an image in use: a writer holds it exclusively,
    // readers shared.
    this.fd = openSync(opts.path, this.readOnly ? constants.O_RDONLY : constants.O_RDWR | constants.O_CREAT, 0o644);
    if (opts.lock && !native.flock(this.fd, this.readOnly ? 1 : 2)) {
      closeSync(this.fd);
      this.fd = -1;
      throw new BackingFileInUseError(opts.path);
    }
    if (!this.readOnly && fstatSync(this.fd).size < opts.size) ftruncateSync(this.fd, opts.size);
  }

  /** Reads `bufs` (filled in order) from byte `pos`. */
  read(pos: number, bufs: Uint8Array[]): Promise<void> {
    return readFully(this.fd, pos, bufs);
  }

  write(pos: number, bufs: Uint8Array[]): Promise<void> {
    return writeFully(this.fd, pos, bufs);
  }

  /** Synchronous variants for small transfers (a page-cache hit costs less than a thread-pool round trip). */
  readSync(pos: number, bufs: Uint8Array[]): void {
    readFullySync(this.fd, pos, bufs);
  }

  writeSync(pos: number, bufs: Uint8Array[]): void {
    writeFullySync(this.fd, pos, bufs);
  }

  /** Reads `len` bytes at byte `pos` into `buf` from `off` (one pread unless it comes back short). */
  readAt(pos: number, buf: Uint8Array, off: number, len: number): void {
    while (len > 0) {
      const n = readSync(this.fd, buf, off, len, pos);
      if (n === 0) throw Object.assign(new Error('short read (end of file)'), { code: 'EIO' });
      off += n;
      pos += n;
      len -= n;
    }
  }

  /** Writes `len` bytes of `buf` from `off` at byte `pos`. */
  writeAt(pos: number, buf: Uint8Array, off: number, len: number): void {
    while (len > 0) {
      const n = writeSync(this.fd, buf, off, len, pos);
      off += n;
      pos += n;
      len -= n;
    }
  }

  flush(): Promise<void> {
    return new Promise((resolve, reject) => fdatasync(this.fd, (e) => (e ? reject(e) : resolve())));
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}

