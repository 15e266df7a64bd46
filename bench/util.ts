// Shared helpers for the benchmarks: timing, medians, tables, command-line options.
import os from 'node:os';
import fs from 'node:fs';

export interface BenchOptions {
  /** CI smoke mode: small counts, one repetition. */
  quick: boolean;
  /** Repetitions per measurement (median reported). */
  reps: number;
}

/** One printed table: a title, column headers, rows of cells, and notes under it. */
export interface Table {
  title: string;
  headers: string[];
  rows: string[][];
  notes: string[];
}

export function now(): bigint {
  return process.hrtime.bigint();
}

/** Seconds since `t0`. */
export function since(t0: bigint): number {
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/** Collects samples under a key, so interleaved runs can be reduced to medians afterwards. */
export class Samples {
  private readonly map = new Map<string, number[]>();
  add(key: string, value: number): void {
    let a = this.map.get(key);
    if (!a) this.map.set(key, (a = []));
    a.push(value);
  }
  median(key: string): number {
    return median(this.map.get(key) ?? []);
  }
  /**
   * The median of the per-round ratios a[i] / b[i] of two keys sampled in the same interleaved rounds:
   * a slow drift of the machine's load moves both sides of a round alike and cancels out.
   */
  pairedRatio(a: string, b: string): number {
    const x = this.map.get(a) ?? [];
    const y = this.map.get(b) ?? [];
    const n = Math.min(x.length, y.length);
    const r: number[] = [];
    for (let i = 0; i < n; i++) r.push((x[i] as number) / (y[i] as number));
    return median(r);
  }
  /** max/min spread of a key's samples, as a percentage of the median (noise indicator). */
  spread(key: string): number {
    const a = this.map.get(key) ?? [];
    if (a.length < 2) return 0;
    return ((Math.max(...a) - Math.min(...a)) / this.median(key)) * 100;
  }
}

export function gc(): void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) g();
}

export function fmt(x: number, digits = 2): string {
  if (!Number.isFinite(x)) return '-';
  return x.toFixed(digits);
}

export function fmtInt(x: number): string {
  if (!Number.isFinite(x)) return '-';
  return Math.round(x).toLocaleString('en-US');
}

export function ratio(x: number): string {
  return Number.isFinite(x) ? `${x.toFixed(2)}x` : '-';
}

/** Plain-text table for the terminal. */
export function renderText(t: Table): string {
  const widths = t.headers.map((h, i) => Math.max(h.length, ...t.rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number))).join('  ');
  const out = [`== ${t.title}`, line(t.headers), widths.map((w) => '-'.repeat(w)).join('  ')];
  for (const r of t.rows) out.push(line(r));
  for (const n of t.notes) out.push(`  ${n}`);
  return out.join('\n');
}

/** The same table as markdown. */
export function renderMarkdown(t: Table): string {
  const out = [
    `### ${t.title}`,
    '',
    `| ${t.headers.join(' | ')} |`,
    `|${t.headers.map((_, i) => (i === 0 ? ' --- ' : ' ---: ')).join('|')}|`,
  ];
  for (const r of t.rows) out.push(`| ${r.join(' | ')} |`);
  if (t.notes.length > 0) {
    out.push('');
    for (const n of t.notes) out.push(`- ${n}`);
  }
  return out.join('\n');
}

/** Machine facts for the report. */
export function machineFacts(): string[] {
  let cpu = 'unknown';
  try {
    const m = /^model name\s*:\s*(.*)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) cpu = (m[1] as string).trim();
  } catch {
    cpu = os.cpus()[0]?.model ?? 'unknown';
  }
  return [
    `nproc: ${os.availableParallelism()}`,
    `CPU: ${cpu}`,
    `node: ${process.version} (${process.arch})`,
    `date: ${new Date().toISOString()}`,
  ];
}

/** A small deterministic PRNG (xorshift32) so runs pick the same "random" blocks. */
export class XorShift {
  private s: number;
  constructor(seed = 0x9e3779b9) {
    this.s = seed >>> 0 || 1;
  }
  /** Uniform integer in [0, n). */
  below(n: number): number {
    let x = this.s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.s = x >>> 0;
    return this.s % n;
  }
}
