// Follows a guest's serial console as it arrives and turns the harness's
// markers into events, so that `vfio-user vm` can show each device as soon as
// the guest has reported it and each --run line's output as it is printed.
import { parseGuestReport, type PciDevice } from './report.js';

/** What the stream reports. */
export interface ConsoleEvents {
  /** A PCI function's report block is complete. */
  device?(device: PciDevice): void;
  /** A section of the per-run script started (depth 1 = a --run line of vfio-user vm). */
  sectionBegin?(name: string, depth: number): void;
  /** A line printed inside run.sh (not a marker). */
  output?(line: string, section: string | null): void;
  /** A section ended with the status the guest printed. */
  sectionEnd?(name: string, rc: number, depth: number): void;
  /** The interactive console started: from now on text arrives through raw(). */
  consoleBegin?(): void;
  /** Console text to pass through as it is (prompts have no newline). */
  raw?(text: string): void;
  /** The interactive console ended with the shell's status. */
  consoleEnd?(rc: number): void;
  /** Anything outside the report (firmware, kernel messages). */
  other?(line: string): void;
}

const BEGIN_RE = /^=== BEGIN (.+?) ===$/;
const END_RE = /^=== END (.+?) rc=(-?\d+) ===$/;

/** Incremental console parser; feed() it chunks, end() it once. */
export class ConsoleStream {
  private partial = '';
  private open: string[] = [];
  private pciLines: string[] | null = null;
  private pciName = '';
  private inConsole = false;
  private started = false;
  /** Part of the current console line was already passed through raw(). */
  private midLine = false;

  constructor(private readonly events: ConsoleEvents) {}

  /** Takes the next chunk of console text (CRs are dropped). */
  feed(chunk: string): void {
    let text = this.partial + chunk.replace(/\r/g, '');
    this.partial = '';
    let nl: number;
    let nlSeen = false;
    while ((nl = text.indexOf('\n')) >= 0) {
      nlSeen = true;
      this.line(text.slice(0, nl));
      text = text.slice(nl + 1);
    }
    if (nlSeen) this.midLine = false;
    // A prompt (or an echo) in the console: show it now, it will not get its
    // newline until the user types. What may be the start of a marker waits.
    const maybeMarker = !this.midLine && (text.startsWith('===') || '==='.startsWith(text));
    if (this.inConsole && text !== '' && !maybeMarker) {
      this.events.raw?.(text);
      this.midLine = true;
      text = '';
    }
    this.partial = text;
  }

  /** Flushes a last unterminated line. */
  end(): void {
    if (this.partial !== '') this.line(this.partial);
    this.partial = '';
  }

  private line(line: string): void {
    if (!this.started) {
      if (/^=== HARNESS BEGIN /.test(line)) this.started = true;
      else this.events.other?.(line);
      return;
    }
    if (this.inConsole) {
      const e = END_RE.exec(line);
      if (e && e[1] === 'console') {
        this.inConsole = false;
        this.events.consoleEnd?.(Number(e[2]));
      } else this.events.raw?.(`${line}\n`);
      return;
    }
    const b = BEGIN_RE.exec(line);
    if (b) {
      const name = b[1]!;
      if (this.open.length === 0 && name.startsWith('pci ')) {
        this.pciLines = [line];
        this.pciName = name;
      } else if (this.open.length === 0 && name === 'console') {
        this.inConsole = true;
        this.events.consoleBegin?.();
        return;
      } else if (this.open.length > 0 && this.open[0] === 'run.sh') {
        this.events.sectionBegin?.(name, this.open.length);
      }
      this.open.push(name);
      return;
    }
    const e = END_RE.exec(line);
    const at = e ? this.open.lastIndexOf(e[1]!) : -1;
    if (e && at >= 0) {
      // Sections inside it that never printed their END (a line that ran
      // `exit`) end with it.
      this.open.length = at + 1;
      const name = this.open.pop()!;
      if (this.pciLines && name === this.pciName) {
        this.pciLines.push(line);
        const dev = parseGuestReport(['=== HARNESS BEGIN kernel=? ===', ...this.pciLines].join('\n')).pci[0];
        this.pciLines = null;
        if (dev) this.events.device?.(dev);
      } else if (this.open.length > 0 && this.open[0] === 'run.sh') {
        this.events.sectionEnd?.(name, Number(e[2]), this.open.length);
      }
      return;
    }
    if (this.pciLines) this.pciLines.push(line);
    else if (this.open[0] === 'run.sh') this.events.output?.(line, this.open.length > 1 ? this.open[this.open.length - 1]! : null);
    else if (this.open.length === 0) this.events.other?.(line);
  }
}
