// The asynchronous sysfs steps of binding: attribute writes (fs.promises: the libuv threadpool, never
// the JS thread), bounded waits for what the kernel creates, and "is it in use" probes that turn what
// would be a kernel-side hang (unbinding a device someone holds open) into EBUSY up front.
import fs from 'node:fs';
import path from 'node:path';
import { VdpaError } from './errors';
import { errnoInfo } from './netlink';

/** Default bound on each wait for the kernel (binding, device nodes appearing or going). */
export const BIND_TIMEOUT_MS = 30_000;

function errnoOf(e: unknown): number {
  const n = (e as NodeJS.ErrnoException).errno;
  return typeof n === 'number' ? Math.abs(n) : 5; // EIO
}

/** A VdpaError from an errno value, fs-style: "CODE: text, syscall 'path'". */
export function sysError(errno: number, syscall: string, path: string, detail?: string, hint?: string): VdpaError {
  const { code, text } = errnoInfo(errno);
  const info = { code, errno: -errno, syscall, path };
  return new VdpaError(
    `${code}: ${detail ?? text}, ${syscall} '${path}'`,
    hint === undefined ? info : { ...info, hint },
  );
}

function timeoutError(what: string, path: string, ms: number, hint?: string): VdpaError {
  return sysError(110, 'wait', path, `${what}: not done within ${ms} ms`, hint);
}

/** Rejects with ETIMEDOUT unless `p` settles within `ms`. */
export async function bounded<T>(p: Promise<T>, ms: number, what: string, path: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(timeoutError(what, path, ms, 'the kernel is still at it: see dmesg; the write may finish later')),
      ms,
    );
  });
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Writes `value` to a sysfs attribute in one write(2). Errors become VdpaErrors with
 * syscall 'write' and the attribute's path; `hints` adds a fix for particular codes.
 */
export async function sysfsWrite(
  file: string,
  value: string,
  timeoutMs: number,
  hints: Partial<Record<string, string>> = {},
): Promise<void> {
  const run = async (): Promise<void> => {
    let step = 'open';
    try {
      const h = await fs.promises.open(file, fs.constants.O_WRONLY | fs.constants.O_TRUNC);
      try {
        step = 'write';
        await h.write(value);
      } finally {
        await h.close();
      }
    } catch (e) {
      const errno = errnoOf(e);
      const { code } = errnoInfo(errno);
      const hint = hints[code] ?? (code === 'EACCES' || code === 'EPERM' ? 'binding drivers needs root' : undefined);
      throw sysError(errno, step, file, `${errnoInfo(errno).text} (writing '${value.trim()}')`, hint);
    }
  };
  await bounded(run(), timeoutMs, `writing '${value.trim()}'`, file);
}

/** Polls `check` (every 50 ms) until it returns a value; ETIMEDOUT naming `what` after `timeoutMs`. */
export async function waitFor<T>(
  check: () => T | undefined | Promise<T | undefined>,
  timeoutMs: number,
  what: string,
  path: string,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() >= deadline) throw timeoutError(what, path, timeoutMs);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function exists(p: string): Promise<boolean> {
  try {
    await fs.promises.stat(p);
    return true;
  } catch {
    return false;
  }
}

/** ENODEV with the modprobe hint unless `busDir`/drivers/`driver` exists (the driver's module is loaded). */
export async function assertDriverLoaded(busDir: string, driver: string): Promise<void> {
  const dir = path.join(busDir, 'drivers', driver);
  if (!(await exists(dir))) throw sysError(19, 'bind', dir, `driver ${driver} is not loaded`, `modprobe ${driver}`);
}

export async function readLinkName(p: string): Promise<string | undefined> {
  try {
    const t = await fs.promises.readlink(p);
    return t.slice(t.lastIndexOf('/') + 1);
  } catch {
    return undefined;
  }
}

export async function readText(p: string): Promise<string | undefined> {
  try {
    return (await fs.promises.readFile(p, 'utf8')).trim();
  } catch {
    return undefined;
  }
}

/**
 * Throws EBUSY when `node` is held: a vhost-vdpa char device or a VFIO group (both allow one open
 * at a time) or a block device (O_EXCL fails while mounted or claimed). Unbinding or deleting a
 * held device would block in the kernel until it is let go.
 */
export async function assertNotInUse(node: string, kind: 'exclusive-open' | 'block', what: string): Promise<void> {
  const flags =
    kind === 'block' ? fs.constants.O_RDONLY | fs.constants.O_EXCL | fs.constants.O_NONBLOCK : fs.constants.O_RDWR;
  let h: fs.promises.FileHandle;
  try {
    h = await fs.promises.open(node, flags);
  } catch (e) {
    const errno = errnoOf(e);
    if (errnoInfo(errno).code === 'EBUSY')
      throw sysError(16, 'open', node, `${what} is in use`, 'close it (or unmount it) in the process that holds it');
    return; // gone, or not ours to open: the kernel step itself will tell
  }
  await h.close();
}

/**
 * Throws EBUSY while network interface `netdev` is up: taking its device away would cut whatever
 * runs over it (on a VM host, perhaps its own connection).
 */
export async function assertNetdevDown(netdev: string, what: string): Promise<void> {
  const flags = Number.parseInt((await readText(`/sys/class/net/${netdev}/flags`)) ?? '0', 16);
  if (flags & 0x1)
    throw sysError(16, 'unbind', `/sys/class/net/${netdev}`, `${what} is up`, `ip link set ${netdev} down first`);
}
