#!/usr/bin/env node
// The `vdpa-node` command line: inspection (list, info), a benchmark, the demo, and the vdpa
// management commands. Arguments are parsed with util.parseArgs; exit status 0 on success, 1 when
// the operation failed, 2 for a usage error. Output for people goes to stdout as aligned tables;
// --json prints JSON instead; errors and progress go to stderr.
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { benchCommand } from './cli-bench';
import { BIN, type Command, type CommandOption, UsageError } from './cli-common';
import { demoCommand } from './cli-demo';
import { inspectionCommands } from './cli-info';
import { managementCommands } from './cli-management';

/** Exit statuses. */
const EXIT_OK = 0;
const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;

const GLOBAL_OPTIONS: Record<string, CommandOption> = {
  help: { type: 'boolean', short: 'h', help: 'show help (of the command, after one) and exit' },
  version: { type: 'boolean', short: 'V', help: "print the package's version and exit" },
  json: { type: 'boolean', help: 'print JSON instead of tables (bigints as "0x..." strings)' },
};

const COMMANDS: Command[] = [...inspectionCommands, benchCommand, demoCommand, ...managementCommands];

function optionLines(options: Record<string, CommandOption>): string[] {
  const flags = Object.entries(options).map(([name, o]) => {
    const long = `--${name}${o.type === 'string' ? ` ${o.arg ?? 'VALUE'}` : ''}`;
    return [o.short ? `-${o.short}, ${long}` : `    ${long}`, o.help];
  });
  const width = Math.max(...flags.map(([f]) => f.length));
  return flags.map(([f, h]) => `  ${f.padEnd(width)}  ${h}`);
}

function mainHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    `usage: ${BIN} COMMAND [ARGS] [--json]`,
    `       ${BIN} help [COMMAND] | --help | --version`,
    '',
    'Drive and manage virtio devices: vhost-vdpa (/dev/vhost-vdpa-N), VFIO virtio-pci (vfio:ADDRESS)',
    'and the built-in mock devices (mock:blk, mock:net).',
    '',
    'Commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Options:',
    ...optionLines(GLOBAL_OPTIONS),
    '',
    'Exit status: 0 success, 1 failure (the error, with its code and a hint, on stderr), 2 usage error.',
    `'${BIN} help COMMAND' or '${BIN} COMMAND --help' shows a command's arguments.`,
  ].join('\n');
}

function commandHelp(c: Command): string {
  return [
    // a synopsis line starting with a space continues the one before
    ...c.synopsis.map(
      (s, i) => `${i === 0 ? 'usage:' : '      '} ${s.startsWith(' ') ? ' '.repeat(BIN.length) : BIN} ${s}`,
    ),
    '',
    c.summary.charAt(0).toUpperCase() + c.summary.slice(1) + '.',
    ...(c.details?.length ? ['', ...c.details] : []),
    '',
    'Options:',
    ...optionLines({ ...(c.options ?? {}), ...GLOBAL_OPTIONS }),
  ].join('\n');
}

function findCommand(name: string): Command {
  const c = COMMANDS.find((x) => x.name === name);
  if (!c) throw new UsageError(`unknown command '${name}' (${COMMANDS.map((x) => x.name).join(', ')}, help)`);
  return c;
}

function version(): string {
  // dist/lib/cli.js -> the package root
  const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

const parseOptions = (options: Record<string, CommandOption>) =>
  Object.fromEntries(
    Object.entries(options).map(([name, o]) => [name, o.short ? { type: o.type, short: o.short } : { type: o.type }]),
  );

/** Parses and runs one command line; resolves to the exit status. */
export async function main(argv: string[], out: (text: string) => void): Promise<number> {
  // The command is the first word; only global options may come before it.
  const { tokens } = parseArgs({ args: argv, options: parseOptions(GLOBAL_OPTIONS), strict: false, tokens: true });
  const first = tokens.find((t) => t.kind === 'positional');
  const before = asUsage(undefined, () =>
    parseArgs({
      args: first ? argv.slice(0, first.index) : argv,
      options: parseOptions(GLOBAL_OPTIONS),
      strict: true,
      allowPositionals: false,
    }),
  ).values;
  if (before.version) return (out(version()), EXIT_OK);
  if (!first) {
    if (before.help) return (out(mainHelp()), EXIT_OK);
    throw new UsageError('no command given');
  }
  const name = argv[first.index];
  if (name === 'help') {
    const topic = argv.slice(first.index + 1).filter((a) => !a.startsWith('-'));
    if (topic.length > 1) throw new UsageError('help takes one COMMAND at most');
    out(topic.length ? commandHelp(findCommand(topic[0])) : mainHelp());
    return EXIT_OK;
  }
  const command = findCommand(name);
  const { values, positionals } = asUsage(name, () =>
    parseArgs({
      args: argv.slice(first.index + 1),
      options: parseOptions({ ...(command.options ?? {}), ...GLOBAL_OPTIONS }),
      strict: true,
      allowPositionals: true,
    }),
  );
  if (values.help || before.help) return (out(commandHelp(command)), EXIT_OK);
  if (values.version) return (out(version()), EXIT_OK);
  const { min, max } = command.positionals ?? { min: 0, max: 0 };
  if (positionals.length < min || positionals.length > max)
    throw new UsageError(
      positionals.length < min
        ? `${name}: missing arguments`
        : `${name}: too many arguments ('${positionals.join(' ')}')`,
      name,
    );
  const json = values.json === true || before.json === true;
  await asUsage(name, () => command.run({ positionals, values, json, out }));
  return EXIT_OK;
}

/**
 * What `fn` throws, with util.parseArgs' errors and the library's RangeErrors (a value it refused,
 * such as a MAC or a device name: the CLI passes them on as given) as usage errors of `command`.
 */
function asUsage<T>(command: string | undefined, fn: () => T): T {
  const wrap = (err: unknown): never => {
    const code = (err as { code?: unknown } | null)?.code;
    if (err instanceof RangeError || (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_')))
      // parseArgs adds a paragraph on `--` to unknown options: the first sentence says it
      throw new UsageError((err as Error).message.replace(/\. To specify a positional[^]*$/, ''), command);
    throw err;
  };
  try {
    const r = fn();
    return (r instanceof Promise ? r.catch(wrap) : r) as T;
  } catch (err) {
    return wrap(err);
  }
}

/** Prints what went wrong and gives the exit status: 2 for usage mistakes, 1 for everything else. */
function report(err: unknown): number {
  process.stderr.write(`${BIN}: ${err instanceof Error ? err.message : String(err)}\n`);
  if (!(err instanceof UsageError)) return EXIT_FAILURE;
  process.stderr.write(`Try '${BIN} ${err.command ? `${err.command} --help` : '--help'}'.\n`);
  return EXIT_USAGE;
}

if (require.main === module) {
  // A reader that went away (`| head -1`) ends the command quietly: nothing more can be said.
  const quietOnEpipe = (err: NodeJS.ErrnoException): void => {
    if (err.code === 'EPIPE') process.exit(EXIT_OK);
    throw err;
  };
  process.stdout.on('error', quietOnEpipe);
  process.stderr.on('error', quietOnEpipe);
  const argv = process.argv.slice(2);
  main(argv, (text) => process.stdout.write(`${text}\n`)).then(
    (status) => (process.exitCode = status),
    (err: unknown) => (process.exitCode = report(err)),
  );
}
