import os from 'node:os';

/** Properties a {@link VdpaError} carries, in the shape of Node's own fs errors. */
export interface VdpaErrorInfo {
  /** Symbolic errno name, e.g. `'EACCES'`, `'ENODEV'`, `'EPROTO'`. */
  code: string;
  /** Negative errno value, as in Node's fs errors (`-13` for EACCES). */
  errno: number;
  /** What failed: a system call such as `'ioctl(VHOST_SET_FEATURES)'`, or a virtio step. */
  syscall: string;
  /** The device the operation was aimed at. */
  path?: string;
  /** A known fix, when there is one (e.g. "run as root", "bind the device to vfio-pci"). */
  hint?: string;
}

/**
 * The error every device operation fails with, built like Node's fs errors: `code`, `errno`,
 * `syscall`, `path`, plus a `hint` where a fix is known. Bad arguments throw TypeError/RangeError
 * instead, before anything reaches native code.
 */
export class VdpaError extends Error implements VdpaErrorInfo {
  code: string;
  errno: number;
  syscall: string;
  path?: string;
  hint?: string;

  constructor(message: string, info: VdpaErrorInfo) {
    super(info.hint ? `${message} (hint: ${info.hint})` : message);
    this.name = 'VdpaError';
    this.code = info.code;
    this.errno = info.errno;
    this.syscall = info.syscall;
    if (info.path !== undefined) this.path = info.path;
    if (info.hint !== undefined) this.hint = info.hint;
  }
}

/** An errno name Node knows (`os.constants.errno`), e.g. `'EBADF'`. */
export type ErrnoCode = keyof typeof os.constants.errno;

/** Builds a VdpaError for a failure detected in TypeScript (closed device, device status, ...). */
export function vdpaError(code: ErrnoCode, syscall: string, path: string, detail: string, hint?: string): VdpaError {
  const info: VdpaErrorInfo = { code, errno: -os.constants.errno[code], syscall, path };
  if (hint !== undefined) info.hint = hint;
  return new VdpaError(`${code}: ${detail}, ${syscall} '${path}'`, info);
}

/**
 * A request cancelled through its `signal`, shaped like Node core's: `name` `'AbortError'`, `code`
 * `'ABORT_ERR'`, `cause` the signal's reason.
 */
export class AbortError extends Error {
  readonly code = 'ABORT_ERR';

  constructor(message = 'The operation was aborted', options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AbortError';
  }
}
