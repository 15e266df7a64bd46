// Runs a script in a separate Node process (with the compiled library at hand) and reports how it
// ended. A child that outlives `timeoutMs` is killed: a hang then fails the test instead of the run.
import { spawn } from 'node:child_process';
import { LIB_PATH } from './util';

export interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Runs `script` with `node -e`; `LIB` inside the script is the library's absolute path. */
export function runChild(script: string, timeoutMs: number, nodeArgs: string[] = []): Promise<ChildResult> {
  const code = `const LIB = ${JSON.stringify(LIB_PATH)};\n${script}`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...nodeArgs, '-e', code], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut });
    });
  });
}

/** A one-line summary for assertion messages. */
export function describeExit(r: ChildResult): string {
  const how = r.timedOut
    ? 'was killed after the time limit'
    : r.signal
      ? `died of ${r.signal}`
      : `exited with ${r.code}`;
  return `child ${how}; stdout: ${JSON.stringify(r.stdout.slice(-500))}; stderr: ${JSON.stringify(r.stderr.slice(-800))}`;
}
