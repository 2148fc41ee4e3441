// Parses the serial console of a guest booted by bootGuest(): the report that
// vm/guest-init.sh prints between "=== BEGIN name ===" / "=== END name rc=N ==="
// markers (PCI functions, the per-run script and its nested sections,
// /proc/interrupts). Pure functions, no I/O.

/** One non-empty line of a function's sysfs `resource` file. */
export interface PciResource {
  /** Line number: the BAR number for 0-5, 6 = ROM, 7+ = bridge windows. */
  index: number;
  start: bigint;
  end: bigint;
  flags: bigint;
}

/** A PCI function as the guest's sysfs showed it. */
export interface PciDevice {
  bdf: string;
  vendor: number;
  device: number;
  subsystemVendor: number;
  subsystemDevice: number;
  /** 24-bit class code (base class, subclass, prog-if). */
  class: number;
  revision: number;
  irq: number;
  enable: number;
  driver: string | null;
  /** The sysfs modalias ("pci:v...d...sv...sd...bc..sc..i.."). */
  modalias: string;
  /** Linux IRQ numbers of the MSI/MSI-X vectors in use. */
  msiIrqs: number[];
  resources: PciResource[];
  configSize: number;
  /** The config bytes the guest dumped (256, or all of them for non-Intel devices). */
  config: Buffer;
  /** Every key=value line as printed. */
  fields: Record<string, string>;
}

/** A `section NAME CMD` block of the per-run script (or run.sh itself). */
export interface GuestSection {
  name: string;
  /** Exit status printed at the END marker; null if the section never ended. */
  rc: number | null;
  /** Lines between the markers (nested sections' markers included). */
  lines: string[];
  output: string;
  /** 0 for run.sh and the harness's own sections, 1+ for nested ones. */
  depth: number;
}

/** One parsed line of /proc/interrupts. */
export interface InterruptLine {
  /** "21", "NMI", "LOC", ... */
  irq: string;
  counts: number[];
  /** Chip, hwirq/trigger and action names. */
  info: string;
}

/** Everything parseGuestReport() found on the console. */
export interface GuestReport {
  /** The guest's /init started. */
  started: boolean;
  /** The guest's /init reached its end (then it powers off). */
  done: boolean;
  kernelVersion: string | null;
  pci: PciDevice[];
  /** Command sections: run.sh and every section nested in it, in order. */
  sections: GuestSection[];
  /** Status of the per-run script; null if it did not run or did not finish. */
  runRc: number | null;
  /** "BDF MODALIAS -> MODULE" lines of drivers loaded by modalias (autoload on). */
  autoload: string[];
  /** Exit status of the interactive console shell; null without --console. */
  consoleRc: number | null;
  /** /proc/interrupts after the script, as printed. */
  interruptLines: string[];
  interrupts: InterruptLine[];
}

const BEGIN_RE = /^=== BEGIN (.+?) ===$/;
const END_RE = /^=== END (.+?) rc=(-?\d+) ===$/;

function num(s: string | undefined): number {
  if (s === undefined || s === '') return NaN;
  return Number(s);
}

/** Parses the console of a guest booted by bootGuest (see vm/guest-init.sh). */
export function parseGuestReport(consoleText: string): GuestReport {
  const lines = consoleText.replace(/\r/g, '').split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  const report: GuestReport = {
    started: false,
    done: false,
    kernelVersion: null,
    pci: [],
    sections: [],
    runRc: null,
    autoload: [],
    consoleRc: null,
    interruptLines: [],
    interrupts: [],
  };
  const open: { name: string; lines: string[]; depth: number; section: GuestSection | null }[] = [];
  const allSections: { name: string; rc: number | null; lines: string[] }[] = [];

  for (const line of lines) {
    const hb = /^=== HARNESS BEGIN kernel=(\S+)/.exec(line);
    if (hb) {
      report.started = true;
      report.kernelVersion = hb[1] ?? null;
      continue;
    }
    if (line.startsWith('=== HARNESS DONE')) {
      report.done = true;
      continue;
    }
    if (!report.started) continue;
    const b = BEGIN_RE.exec(line);
    if (b) {
      for (const o of open) o.lines.push(line);
      const name = b[1] ?? '';
      const inRun = open.some((o) => o.name === 'run.sh');
      const isCommand = name === 'run.sh' || inRun;
      const depth = open.length;
      const section: GuestSection | null = isCommand ? { name, rc: null, lines: [], output: '', depth } : null;
      if (section) report.sections.push(section);
      open.push({ name, lines: [], depth, section });
      continue;
    }
    const e = END_RE.exec(line);
    const at = e ? open.map((o) => o.name).lastIndexOf(e[1]!) : -1;
    if (e && at >= 0) {
      // Sections inside it that never printed their END (a command that ran
      // `exit`) end with it, their status unknown.
      for (const inner of open.splice(at + 1)) {
        if (inner.section) {
          inner.section.lines = inner.lines;
          inner.section.output = inner.lines.join('\n');
        }
        allSections.push({ name: inner.name, rc: null, lines: inner.lines });
      }
      const o = open.pop()!;
      for (const p of open) p.lines.push(line);
      const rc = Number(e[2]);
      if (o.section) {
        o.section.rc = rc;
        o.section.lines = o.lines;
        o.section.output = o.lines.join('\n');
      }
      allSections.push({ name: o.name, rc, lines: o.lines });
      continue;
    }
    for (const o of open) o.lines.push(line);
  }
  // Sections cut off by the end of the console keep what they had.
  for (const o of open) {
    if (o.section) {
      o.section.lines = o.lines;
      o.section.output = o.lines.join('\n');
    }
    allSections.push({ name: o.name, rc: null, lines: o.lines });
  }

  for (const s of allSections) {
    if (s.name.startsWith('pci ')) report.pci.push(parsePci(s.name.slice(4), s.lines));
    else if (s.name === 'interrupts') {
      report.interruptLines = s.lines;
      report.interrupts = parseInterrupts(s.lines);
    } else if (s.name === 'run.sh') report.runRc = s.rc;
    else if (s.name === 'autoload') report.autoload = s.lines.filter((l) => / -> /.test(l));
    else if (s.name === 'console') report.consoleRc = s.rc;
  }
  report.pci.sort((a, b) => (a.bdf < b.bdf ? -1 : a.bdf > b.bdf ? 1 : 0));
  return report;
}

function parsePci(bdf: string, lines: string[]): PciDevice {
  const fields: Record<string, string> = {};
  const resources: PciResource[] = [];
  const config: number[] = [];
  for (const line of lines) {
    const r = /^resource (\d+) (0x[0-9a-f]+) (0x[0-9a-f]+) (0x[0-9a-f]+)$/.exec(line);
    if (r) {
      resources.push({ index: Number(r[1]), start: BigInt(r[2]!), end: BigInt(r[3]!), flags: BigInt(r[4]!) });
      continue;
    }
    const c = /^config ([0-9a-f]+):((?: [0-9a-f]{2})+)$/.exec(line);
    if (c) {
      const off = parseInt(c[1]!, 16);
      const bytes = c[2]!.trim().split(' ').map((h) => parseInt(h, 16));
      bytes.forEach((v, i) => (config[off + i] = v));
      continue;
    }
    const kv = /^([a-z_]+)=(.*)$/.exec(line);
    if (kv) fields[kv[1]!] = kv[2]!;
  }
  return {
    bdf,
    vendor: num(fields.vendor),
    device: num(fields.device),
    subsystemVendor: num(fields.subsystem_vendor),
    subsystemDevice: num(fields.subsystem_device),
    class: num(fields.class),
    revision: num(fields.revision),
    irq: num(fields.irq),
    enable: num(fields.enable),
    driver: fields.driver === undefined || fields.driver === '-' ? null : fields.driver,
    modalias: fields.modalias ?? '',
    msiIrqs: (fields.msi_irqs ?? '').split(/\s+/).filter(Boolean).map(Number),
    resources,
    configSize: num(fields.config_size),
    config: Buffer.from(Array.from(config, (v) => v ?? 0)),
    fields,
  };
}

function parseInterrupts(lines: string[]): InterruptLine[] {
  const out: InterruptLine[] = [];
  for (const line of lines) {
    const m = /^\s*([^\s:]+):\s*(.*)$/.exec(line);
    if (!m) continue; // the "CPU0" header
    const rest = m[2]!.split(/\s+/);
    const counts: number[] = [];
    while (rest.length > 0 && /^\d+$/.test(rest[0]!)) counts.push(Number(rest.shift()));
    out.push({ irq: m[1]!, counts, info: rest.join(' ') });
  }
  return out;
}

/** The command section called `name` (the first one, or the nth with index). */
export function findSection(report: GuestReport, name: string, index = 0): GuestSection | undefined {
  return report.sections.filter((s) => s.name === name)[index];
}

/**
 * QEMU stderr lines every vfio-user guest prints and that mean nothing is
 * wrong: QEMU 11.1 notes each vfio-user-pci device without an option ROM.
 */
export const HARMLESS_QEMU_LINES: readonly RegExp[] = [/Device ROM size is zero/];

/** QEMU stderr lines that indicate a problem (every line counts unless allowed). */
export function qemuProblems(stderr: string, allowed: readonly RegExp[] = []): string[] {
  return stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !allowed.some((re) => re.test(l)));
}
