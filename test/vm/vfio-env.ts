// Helpers for test/vm/vfio.test.ts: the virtio-pci functions of the guest (scripts/vm/test-vm.sh boots
// with two virtio-blk-pci, one split and one packed, and a --net-pair), found and bound by
// scripts/vm/guest-tests.sh, which exports their addresses:
//   VDPA_VFIO_BLK_SPLIT=0000:00:03.0  VDPA_VFIO_BLK_PACKED=0000:00:04.0  VDPA_VFIO_NET="bdf0 bdf1"
// The blk functions carry a serial (vfio-split / vfio-packed) that names their image in the results dir.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

export const PCI = '/sys/bus/pci/devices';
const BDF_RE = /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/;

export interface VfioFunctions {
  split: string;
  packed: string;
  net: [string, string];
}

/** The functions guest-tests.sh found; throws with the reason when it did not export them. */
export function vfioFunctions(): VfioFunctions {
  const env = (name: string): string => {
    const v = process.env[name];
    if (!v) throw new Error(`${name} is not set: scripts/vm/guest-tests.sh exports it after binding the functions`);
    return v.trim();
  };
  const split = env('VDPA_VFIO_BLK_SPLIT');
  const packed = env('VDPA_VFIO_BLK_PACKED');
  const net = env('VDPA_VFIO_NET').split(/\s+/);
  for (const b of [split, packed, ...net]) if (!BDF_RE.test(b)) throw new Error(`not a PCI address: '${b}'`);
  if (net.length !== 2) throw new Error(`VDPA_VFIO_NET must name two functions, got '${net.join(' ')}'`);
  return { split, packed, net: [net[0] as string, net[1] as string] };
}

/** Name of the driver FUNCTION is bound to, or undefined. */
export function driverOf(bdf: string): string | undefined {
  try {
    return fs.readlinkSync(`${PCI}/${bdf}/driver`).split('/').pop();
  } catch {
    return undefined;
  }
}

function write(file: string, text: string): void {
  // a child with a timeout: an unbind can block for as long as some process holds the device
  execFileSync('timeout', ['-k', '5', '60', 'sh', '-c', 'printf "%s\\n" "$1" > "$2"', 'sh', text, file], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
}

/** Binds FUNCTION to vfio-pci (driver_override, unbind, drivers_probe); no-op when it already is. */
export function bindVfio(bdf: string): void {
  if (driverOf(bdf) === 'vfio-pci') return;
  write(`${PCI}/${bdf}/driver_override`, 'vfio-pci');
  if (driverOf(bdf)) write(`${PCI}/${bdf}/driver/unbind`, bdf);
  write('/sys/bus/pci/drivers_probe', bdf);
  if (driverOf(bdf) !== 'vfio-pci') throw new Error(`${bdf} did not bind to vfio-pci (driver: ${driverOf(bdf)})`);
}

/** Gives FUNCTION back to its kernel driver (virtio-pci): clears driver_override, unbinds, probes. */
export function bindKernel(bdf: string): void {
  write(`${PCI}/${bdf}/driver_override`, '');
  if (driverOf(bdf)) write(`${PCI}/${bdf}/driver/unbind`, bdf);
  write('/sys/bus/pci/drivers_probe', bdf);
  if (driverOf(bdf) !== 'virtio-pci') throw new Error(`${bdf} did not bind to virtio-pci (driver: ${driverOf(bdf)})`);
}

// Resets a virtio-pci function behind its driver's back: writes 0 to device_status (offset 0x14 of
// the common configuration structure, virtio vendor capability cfg_type 1) through the PCI
// configuration access capability (cfg_type 5), a window onto the BARs in config space, with plain
// sysfs config writes (mmap of resourceN is refused while vfio-pci holds the BAR). Then waits until
// the status reads back 0 (reset complete).
export function resetFunction(bdf: string): { before: number; after: number } {
  const fd = fs.openSync(`${PCI}/${bdf}/config`, 'r+');
  try {
    const cfg = Buffer.alloc(256);
    fs.readSync(fd, cfg, 0, 256, 0);
    const caps = new Map<number, number>();
    for (let p = cfg[0x34] as number, n = 0; p && n < 48; p = cfg[p + 1] as number, n++)
      if (cfg[p] === 9 && !caps.has(cfg[p + 3] as number)) caps.set(cfg[p + 3] as number, p);
    const c = caps.get(1);
    const w = caps.get(5);
    if (c === undefined || w === undefined)
      throw new Error(`${bdf}: no virtio common cfg (${c}) or pci cfg access (${w}) capability`);
    const bar = cfg[c + 4] as number;
    const off = cfg.readUInt32LE(c + 8) + 0x14;
    const put = (at: number, b: Buffer): void => void fs.writeSync(fd, b, 0, b.length, at);
    const u32 = (v: number): Buffer => {
      const b = Buffer.alloc(4);
      b.writeUInt32LE(v);
      return b;
    };
    const windowAt = (): void => {
      put(w + 4, Buffer.from([bar]));
      put(w + 8, u32(off));
      put(w + 12, u32(1));
    };
    const status = (): number => {
      windowAt();
      const b = Buffer.alloc(4);
      fs.readSync(fd, b, 0, 4, w + 16);
      return b[0] as number;
    };
    const before = status();
    windowAt();
    put(w + 16, u32(0));
    const t0 = Date.now();
    let after = status();
    while (after !== 0 && Date.now() - t0 < 5_000) after = status();
    return { before, after };
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The virtio-net-pci functions with these MACs (run.sh --net-pair: NIC i is 52:54:00:12:34:5i), read
 * while virtio-pci still has them, each then bound to vfio-pci. Once guest-tests.sh bound them, take
 * its VDPA_VFIO_NET instead.
 */
export function nicsByMac(macs: readonly string[]): string[] {
  const found = macs.map((mac) => {
    for (const bdf of fs.readdirSync(PCI)) {
      const dir = `${PCI}/${bdf}`;
      for (const v of fs.readdirSync(dir).filter((n) => n.startsWith('virtio'))) {
        const netDir = `${dir}/${v}/net`;
        if (!fs.existsSync(netDir)) continue;
        for (const nic of fs.readdirSync(netDir))
          if (fs.readFileSync(`${netDir}/${nic}/address`, 'utf8').trim() === mac) return bdf;
      }
    }
    throw new Error(`no virtio-net-pci function with MAC ${mac}: boot with run.sh --net-pair`);
  });
  for (const bdf of found) bindVfio(bdf);
  return found;
}
