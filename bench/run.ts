// Benchmark driver: `node --expose-gc dist/bench/run.js [ring|blk|hot|net|netloops ...] [--quick] [--reps N] [--md FILE]`.
// Prints a table per benchmark; --md also writes them as a markdown section (for bench/RESULTS.md).
import fs from 'node:fs';
import { benchBlk } from './blk';
import { benchHot } from './hot';
import { benchNet } from './net';
import { benchNetLoops } from './net-loops';
import { benchRing } from './ring';
import { type BenchOptions, type Table, machineFacts, renderMarkdown, renderText, since, now } from './util';

const ALL = ['ring', 'blk', 'hot', 'net', 'netloops'] as const;
type Name = (typeof ALL)[number];

const USAGE = `usage: node --expose-gc dist/bench/run.js [ring] [blk] [hot] [net] [netloops] [--quick] [--reps N] [--md FILE]
  ring   submit+complete of 64 B requests: C++ loop, N-API batch, Promise per request, TS split ring
  blk    mock:blk 4 KiB random read/write at depth 1, 32, 128: Node vs C++ loop
  hot    issue 13's set: promise/batch/C++ at depth 32 and 128, the user's loop against fs.promises
  net    mock:net 64 B and 1500 B frames: send and loopback receive rates
  netloops  mock:net 64 B and 1500 B frames: JS send/receive vs native generate/forward/sink
  --quick  small counts, one repetition (CI smoke test, ~15 s)
  --reps N repetitions per measurement, median reported (default 5, quick 1)
  --md F   also write the results as markdown to F`;

function parseArgs(argv: string[]): { names: Name[]; opts: BenchOptions; md: string | undefined } {
  const names: Name[] = [];
  let quick = false;
  let reps: number | undefined;
  let md: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--quick') quick = true;
    else if (a === '--reps') {
      reps = Number(argv[++i]);
      if (!Number.isInteger(reps) || reps < 1) throw new Error('--reps needs a positive integer');
    } else if (a === '--md') {
      md = argv[++i];
      if (!md) throw new Error('--md needs a file name');
    } else if (a === '-h' || a === '--help') {
      console.log(USAGE);
      process.exit(0);
    } else if ((ALL as readonly string[]).includes(a)) names.push(a as Name);
    else throw new Error(`unknown argument ${a}\n${USAGE}`);
  }
  return { names: names.length > 0 ? names : [...ALL], opts: { quick, reps: reps ?? (quick ? 1 : 5) }, md };
}

async function main(): Promise<void> {
  const { names, opts, md } = parseArgs(process.argv.slice(2));
  if (!(globalThis as { gc?: unknown }).gc) console.warn('note: run with --expose-gc for steadier numbers');
  const facts = machineFacts();
  const command = `node --expose-gc dist/bench/run.js ${process.argv.slice(2).join(' ')}`.trim();
  console.log(facts.join(' | '));
  console.log(`command: ${command}\n`);
  const t0 = now();
  const tables: Table[] = [];
  for (const name of names) {
    const t = since(t0);
    const result =
      name === 'ring'
        ? await benchRing(opts)
        : name === 'blk'
          ? await benchBlk(opts)
          : name === 'hot'
            ? await benchHot(opts)
            : name === 'net'
              ? await benchNet(opts)
              : await benchNetLoops(opts);
    for (const table of result) {
      console.log(renderText(table));
      console.log(`  (${name}: ${(since(t0) - t).toFixed(1)} s)\n`);
      tables.push(table);
    }
  }
  console.log(`total ${since(t0).toFixed(1)} s`);
  if (md) {
    const section = [
      `## ${new Date().toISOString().slice(0, 10)}: \`${command}\``,
      '',
      ...facts.map((f) => `- ${f}`),
      `- wall time: ${since(t0).toFixed(1)} s`,
      '',
      ...tables.map((t) => renderMarkdown(t) + '\n'),
    ].join('\n');
    fs.writeFileSync(md, section);
    console.log(`markdown written to ${md}`);
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
