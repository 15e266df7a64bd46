// Frames for segmentation-offload tests: TCP or UDP over IPv4 or IPv6 (optionally behind a VLAN
// tag, with IPv4 or TCP options), every length and checksum computed here from the fields, and the
// segments a large frame must become, built the same way from each segment's own fields (an
// oracle that shares no code with the C++ segmentation).

/** What {@link buildFrame} puts in a frame. */
export interface FrameSpec {
  ipv6?: boolean;
  udp?: boolean;
  vlan?: boolean;
  /** Bytes of IPv4 options (a multiple of 4, at most 40) or TCP options (the same). */
  ipOptions?: number;
  tcpOptions?: number;
  payload: Uint8Array;
  /** TCP flags byte (default ACK). */
  flags?: number;
  seq?: number;
  /** IPv4 identification. */
  id?: number;
  /** Leave the transport checksum partial (the pseudo-header sum, as a driver does for offload). */
  partial?: boolean;
}

/** A built frame and where its transport header is. */
export interface BuiltFrame {
  frame: Uint8Array;
  /** Offset of the TCP or UDP header: checksum.start. */
  l4: number;
  /** Offset of the payload: hdr_len. */
  headerLength: number;
}

export const TCP_ACK = 0x10;
export const TCP_PSH = 0x08;
export const TCP_FIN = 0x01;
export const TCP_CWR = 0x80;

function sum(bytes: Uint8Array, from: number, to: number, acc = 0): number {
  let s = acc;
  for (let i = from; i < to; i += 2) s += ((bytes[i] as number) << 8) | (i + 1 < to ? (bytes[i + 1] as number) : 0);
  return s;
}
function fold(s: number): number {
  let x = s;
  while (x > 0xffff) x = (x & 0xffff) + Math.floor(x / 0x10000);
  return x;
}

/** An Ethernet frame of `spec`, with correct IP and transport checksums (or a partial one). */
export function buildFrame(spec: FrameSpec): BuiltFrame {
  const ipOpt = spec.ipv6 ? 0 : (spec.ipOptions ?? 0);
  const tcpOpt = spec.udp ? 0 : (spec.tcpOptions ?? 0);
  const eth = spec.vlan ? 18 : 14;
  const ipLen = spec.ipv6 ? 40 : 20 + ipOpt;
  const l4Len = (spec.udp ? 8 : 20 + tcpOpt) + spec.payload.length;
  const l4 = eth + ipLen;
  const f = new Uint8Array(l4 + l4Len);
  const v = new DataView(f.buffer);
  f.set([0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01]);
  if (spec.vlan) v.setUint32(12, 0x81000005);
  v.setUint16(eth - 2, spec.ipv6 ? 0x86dd : 0x0800);
  const proto = spec.udp ? 17 : 6;
  let pseudo: number;
  if (spec.ipv6) {
    v.setUint32(eth, 0x60000000);
    v.setUint16(eth + 4, l4Len);
    f[eth + 6] = proto;
    f[eth + 7] = 64;
    // fe80::1 -> fe80::2
    f.set([0xfe, 0x80], eth + 8);
    f[eth + 23] = 1;
    f.set([0xfe, 0x80], eth + 24);
    f[eth + 39] = 2;
    pseudo = sum(f, eth + 8, eth + 40) + proto + l4Len;
  } else {
    f[eth] = 0x40 | (ipLen / 4);
    v.setUint16(eth + 2, ipLen + l4Len);
    v.setUint16(eth + 4, spec.id ?? 0x1234);
    v.setUint16(eth + 6, 0x4000); // DF
    f[eth + 8] = 64;
    f[eth + 9] = proto;
    f.set([169, 254, 0, 1, 169, 254, 0, 2], eth + 12);
    for (let i = 0; i < ipOpt; i++) f[eth + 20 + i] = i === ipOpt - 1 ? 0 : 1; // NOPs, then end of options
    v.setUint16(eth + 10, ~fold(sum(f, eth, eth + ipLen)) & 0xffff);
    pseudo = sum(f, eth + 12, eth + 20) + proto + l4Len;
  }
  let at: number;
  if (spec.udp) {
    v.setUint16(l4, 40000);
    v.setUint16(l4 + 2, 9);
    v.setUint16(l4 + 4, l4Len);
    at = l4 + 6;
  } else {
    v.setUint16(l4, 40000);
    v.setUint16(l4 + 2, 9);
    v.setUint32(l4 + 4, (spec.seq ?? 0xfffff000) >>> 0);
    v.setUint32(l4 + 8, 0x01020304);
    f[l4 + 12] = ((20 + tcpOpt) / 4) << 4;
    f[l4 + 13] = spec.flags ?? TCP_ACK;
    v.setUint16(l4 + 14, 0xffff);
    for (let i = 0; i < tcpOpt; i++) f[l4 + 20 + i] = 1; // NOPs
    at = l4 + 16;
  }
  const headerLength = f.length - spec.payload.length;
  f.set(spec.payload, headerLength);
  if (spec.partial) v.setUint16(at, fold(pseudo));
  else {
    let c = ~fold(sum(f, l4, f.length, pseudo)) & 0xffff;
    if (spec.udp && c === 0) c = 0xffff;
    v.setUint16(at, c);
  }
  return { frame: f, l4, headerLength };
}

/**
 * The frames a device must make of `spec` segmented at `size` payload bytes: each built from its
 * own fields (sequence number advanced, identification one more each, FIN and PSH on the last
 * segment only, CWR on the first only).
 */
export function expectedSegments(spec: FrameSpec, size: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  const n = Math.max(1, Math.ceil(spec.payload.length / size));
  const flags = spec.flags ?? TCP_ACK;
  for (let i = 0; i < n; i++) {
    let fl = flags;
    if (i < n - 1) fl &= ~(TCP_FIN | TCP_PSH);
    if (i > 0) fl &= ~TCP_CWR;
    out.push(
      buildFrame({
        ...spec,
        partial: false,
        payload: spec.payload.subarray(i * size, (i + 1) * size),
        seq: ((spec.seq ?? 0xfffff000) + i * size) >>> 0,
        id: ((spec.id ?? 0x1234) + i) & 0xffff,
        flags: fl,
      }).frame,
    );
  }
  return out;
}
