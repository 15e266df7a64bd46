// What every command of the CLI shares: its name, the command shape, usage errors, tables, JSON and
// the parsing of sizes and durations.

/**
 * The CLI's executable name. Not `vdpa`: iproute2 installs `/usr/sbin/vdpa`, and npm's global bin
 * directory comes first on root's PATH, so a `vdpa` bin would shadow it for every script on the system.
 */
export const BIN = 'vdpa-node';

/** Values of the options `util.parseArgs` found (strings, booleans, or absent). */
export type OptionValues = Record<string, string | boolean | undefined>;

/** What a command gets to run with. */
export interface CommandContext {
  /** Words after the command name (the subcommand too, for `dev`). */
  positionals: string[];
  values: OptionValues;
  json: boolean;
  /** Writes to stdout (a closed stdout ends the process quietly, see cli.ts). */
  out: (text: string) => void;
}

/** One option of a command, for `util.parseArgs` and for its help. */
export interface CommandOption {
  type: 'string' | 'boolean';
  short?: string;
  /** Placeholder of the value in the help (`SIZE`), string options only. */
  arg?: string;
  help: string;
}

/** A command of the CLI: its usage, help, options and what it does. */
export interface Command {
  name: string;
  /** Usage lines, each after `vdpa-node `. */
  synopsis: string[];
  /** One line for the command list. */
  summary: string;
  /** More lines for `vdpa-node help COMMAND`. */
  details?: string[];
  options?: Record<string, CommandOption>;
  /** Positional words it takes (subcommands check their own). */
  positionals?: { min: number; max: number };
  run(ctx: CommandContext): Promise<void>;
}

/** A mistake in how the CLI was called: exit status 2, with a pointer to the help. */
export class UsageError extends Error {
  constructor(
    message: string,
    /** The command whose help explains it. */
    readonly command?: string,
  ) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Renders rows as columns padded to their widest cell (the last column is not padded). */
export function table(header: string[], rows: string[][]): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return all
    .map((r) =>
      r
        .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i])))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** JSON with bigints as hex strings (feature masks), byte arrays as arrays, undefined fields left out. */
export function toJson(v: unknown): string {
  return JSON.stringify(
    v,
    (_, x: unknown) => {
      if (typeof x === 'bigint') return `0x${x.toString(16)}`;
      if (x instanceof Uint8Array) return Array.from(x);
      return x;
    },
    2,
  );
}

/** `0x...` for a mask, `-` when there is none. */
export const hex = (v: bigint | number | undefined): string => (v === undefined ? '-' : `0x${v.toString(16)}`);

/** `52:54:00:12:34:56` */
export const macString = (mac: Uint8Array): string => Array.from(mac, (b) => b.toString(16).padStart(2, '0')).join(':');

const SIZE_UNITS: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

/** A byte count such as `4096`, `4k`, `64KiB`, `1M` (binary units). */
export function parseSize(text: string, what: string, command: string): number {
  const m = /^(\d+)\s*([kmgt]?)(i?b)?$/i.exec(text.trim());
  const n = m ? Number(m[1]) * SIZE_UNITS[m[2].toLowerCase()] : NaN;
  if (!Number.isSafeInteger(n) || n <= 0)
    throw new UsageError(`${what} must be a size such as 4096, 4k or 1M, got '${text}'`, command);
  return n;
}

/** A duration in seconds: `10`, `0.5`, `500ms`, `10s`, `2m`. */
export function parseSeconds(text: string, what: string, command: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim());
  const n = m ? Number(m[1]) * (m[2] === 'ms' ? 1e-3 : m[2] === 'm' ? 60 : 1) : NaN;
  if (!(n > 0 && n <= 86400))
    throw new UsageError(
      `${what} must be a duration such as 10, 0.5, 500ms or 2m (at most a day), got '${text}'`,
      command,
    );
  return n;
}

/** A whole number in [min, max]. */
export function parseInteger(text: string, what: string, command: string, min: number, max: number): number {
  const n = /^\d+$/.test(text.trim()) ? Number(text) : NaN;
  if (!(Number.isSafeInteger(n) && n >= min && n <= max))
    throw new UsageError(`${what} must be a whole number from ${min} to ${max}, got '${text}'`, command);
  return n;
}

/** `1.5 GiB`-style size for people. */
export function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : 1).replace(/\.?0+$/, '')} ${units[i]}`;
}
