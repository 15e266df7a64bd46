// Shared helpers for the tests under test/vm: they need the QEMU guest of scripts/vm (VDPA_IN_VM=1),
// where scripts/vm/vduse-blk.sh turns an image file into /dev/vhost-vdpa-N.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { rng } from '../helpers/util';

export const IN_VM = process.env.VDPA_IN_VM === '1';
export const SKIP_REASON = 'needs the VM: run npm run test:vm';

/** Repository root (this file runs from dist/test/vm/). */
export const ROOT = path.resolve(__dirname, '..', '..', '..');
export const VDUSE_BLK = path.join(ROOT, 'scripts', 'vm', 'vduse-blk.sh');

/** Writable dir shared with the host (same path on both sides). */
export function resultsDir(): string {
  const d = process.env.VDPA_VM_RESULTS;
  if (!d) throw new Error('VDPA_VM_RESULTS is not set (not started by scripts/vm/run.sh?)');
  return d;
}

/** An image in the results dir; created sparse (all zeroes) when the host did not make it. */
export function image(name: string, size = 64 << 20): string {
  const p = path.join(resultsDir(), name);
  if (!fs.existsSync(p)) {
    fs.closeSync(fs.openSync(p, 'w'));
    fs.truncateSync(p, size);
  }
  return p;
}

/** Starts a VDUSE blk device NAME on IMG; returns /dev/vhost-vdpa-N. */
export function startBlk(name: string, img: string, queues = 1, queueSize = 256): string {
  const out = execFileSync(VDUSE_BLK, ['start', '-q', String(queues), '-s', String(queueSize), name, img], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    // vduse-blk.sh bounds each of its three waits (VDPA_VM_DEVICE_WAIT, 30 s): outlast all of them.
    timeout: 120_000,
  });
  const dev = out.trim().split('\n').pop() ?? '';
  if (!dev.startsWith('/dev/vhost-vdpa-')) throw new Error(`vduse-blk.sh start printed ${JSON.stringify(out)}`);
  return dev;
}

/**
 * qemu-storage-daemon exporting IMG as VDUSE device NAME (1 queue of 64), without adding the vdpa device:
 * that is the caller's (the management API or the CLI) to do.
 */
export function startVduseExport(name: string, img: string): void {
  fs.mkdirSync('/run/vduse-blk', { recursive: true });
  execFileSync(
    'qemu-storage-daemon',
    [
      '--daemonize',
      '--pidfile',
      `/run/vduse-blk/${name}.pid`,
      '--blockdev',
      `driver=file,node-name=f0,filename=${img}`,
      '--export',
      `vduse-blk,id=v0,node-name=f0,name=${name},writable=on,num-queues=1,queue-size=64`,
    ],
    { stdio: 'inherit', timeout: 60_000 },
  );
  const deadline = Date.now() + 30_000;
  while (!fs.existsSync(`/dev/vduse/${name}`)) {
    if (Date.now() > deadline) throw new Error(`/dev/vduse/${name} did not appear within 30 s`);
    execFileSync('sleep', ['0.1']);
  }
}

/** Removes the device and stops its daemon (flushes the image). Bounded in time. */
export function stopBlk(name: string): void {
  execFileSync('timeout', ['-k', '5', '90', VDUSE_BLK, 'stop', name], { stdio: 'inherit' });
}

/** PID of the qemu-storage-daemon serving NAME. */
export function daemonPid(name: string): number {
  return Number(fs.readFileSync(`/run/vduse-blk/${name}.pid`, 'utf8').trim());
}

/** {@link rng} as 32-bit integers, so a seed reproduces the bytes. */
export function prng(seed: number): () => number {
  const next = rng(seed);
  return () => next() * 4294967296;
}

export function fillRandom(next: () => number, buf: Uint8Array): void {
  const n = buf.length & ~3;
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  for (let i = 0; i < n; i += 4) dv.setUint32(i, next(), true);
  for (let i = n; i < buf.length; i++) buf[i] = next() & 0xff;
}

/** Rejects after `ms` unless `p` settles first. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** What a fault child reported: its RESULT line's JSON, how and when it exited, and what it printed. */
export interface FaultChildRun<R> {
  r: R;
  code: number | null;
  /** From the fault (the line sent) to the child's exit. */
  exitMs: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs the compiled child `script` (beside this file) with `args`. The child prints READY when its
 * I/O is running; then `fault()` is called, `message` is written to the child's stdin, and the child
 * exits by itself with a `RESULT <json>` line. Bounded throughout: the child is killed after
 * `hardTimeoutMs`, READY is awaited 60 s, the exit `exitTimeoutMs`.
 */
export async function runFaultChild<R>(
  script: string,
  args: string[],
  message: string,
  fault: () => void,
  { hardTimeoutMs, exitTimeoutMs }: { hardTimeoutMs: number; exitTimeoutMs: number },
): Promise<FaultChildRun<R>> {
  const child = spawn(process.execPath, [path.join(__dirname, script), ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const hardTimeout = setTimeout(() => child.kill('SIGKILL'), hardTimeoutMs);
  try {
    await within(
      new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (d) => {
          stdout += d;
          if (stdout.includes('READY\n')) resolve();
        });
        child.on('exit', () => reject(new Error(`child exited before READY: ${stdout} ${stderr}`)));
      }),
      60_000,
      'child READY',
    );
    fault();
    child.stdin.write(`${message}\n`);
    const t0 = Date.now();
    const code = await within(exited, exitTimeoutMs, `${script}: exit after the fault`);
    const exitMs = Date.now() - t0;
    const line = stdout.split('\n').find((l) => l.startsWith('RESULT '));
    if (!line) throw new Error(`child gave no result (exit ${code}, ${exitMs} ms):\n${stdout}\n${stderr}`);
    return { r: JSON.parse(line.slice(7)) as R, code, exitMs, stdout, stderr };
  } finally {
    clearTimeout(hardTimeout);
    if (child.exitCode === null) child.kill('SIGKILL');
  }
}
