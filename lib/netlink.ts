// Generic netlink messages, built and decoded here (pure functions over bytes, unit-tested against
// answers recorded from a real kernel); the addon only carries one request and its answer across a
// socket, on the libuv threadpool. Facts from linux/netlink.h and linux/genetlink.h.
import util from 'node:util';
import { VdpaError } from './errors';
import { native } from './native';

export const NLMSG_HDRLEN = 16;
const GENL_HDRLEN = 4;
const NLA_HDRLEN = 4;
const NLA_TYPE_MASK = 0x3fff; // without NLA_F_NESTED / NLA_F_NET_BYTEORDER

export const NlMsgType = { NOOP: 1, ERROR: 2, DONE: 3 } as const;
export const NlFlag = { REQUEST: 0x1, MULTI: 0x2, ACK: 0x4, DUMP: 0x300, CAPPED: 0x100, ACK_TLVS: 0x200 } as const;
const NLMSGERR_ATTR_MSG = 1;
const NLMSGERR_ATTR_OFFS = 2;

/** The generic netlink controller (linux/genetlink.h). */
export const GenlCtrl = { ID: 0x10, CMD_GETFAMILY: 3, ATTR_FAMILY_ID: 1, ATTR_FAMILY_NAME: 2 } as const;

const align4 = (n: number): number => (n + 3) & ~3;

/** One netlink attribute: its type (flags masked off) and payload. */
export interface NlAttr {
  type: number;
  data: Uint8Array;
}

/** A decoded netlink message header plus what follows it. */
export interface NlMessage {
  type: number;
  flags: number;
  seq: number;
  pid: number;
  /** Everything after the 16-byte header. */
  payload: Uint8Array;
}

// ---- attribute encoders

export function attrBytes(type: number, data: Uint8Array): NlAttr {
  return { type, data };
}
export function attrString(type: number, s: string): NlAttr {
  const b = Buffer.from(`${s}\0`, 'utf8');
  return { type, data: new Uint8Array(b.buffer, b.byteOffset, b.byteLength) };
}
export function attrU16(type: number, v: number): NlAttr {
  const d = new Uint8Array(2);
  new DataView(d.buffer).setUint16(0, v, true);
  return { type, data: d };
}
export function attrU32(type: number, v: number): NlAttr {
  const d = new Uint8Array(4);
  new DataView(d.buffer).setUint32(0, v, true);
  return { type, data: d };
}
export function attrU64(type: number, v: bigint): NlAttr {
  const d = new Uint8Array(8);
  new DataView(d.buffer).setBigUint64(0, v, true);
  return { type, data: d };
}

/** A generic netlink request: nlmsghdr + genlmsghdr + attributes, host (little-endian) byte order. */
export interface GenlRequest {
  family: number;
  cmd: number;
  version: number;
  /** NLM_F_* besides REQUEST; a request that is not a dump gets ACK added. */
  flags: number;
  seq: number;
  attrs: NlAttr[];
}

export function encodeGenl(req: GenlRequest): Uint8Array {
  const len = NLMSG_HDRLEN + GENL_HDRLEN + req.attrs.reduce((n, a) => n + align4(NLA_HDRLEN + a.data.length), 0);
  const out = new Uint8Array(len);
  const dv = new DataView(out.buffer);
  const flags = NlFlag.REQUEST | req.flags | ((req.flags & NlFlag.DUMP) === NlFlag.DUMP ? 0 : NlFlag.ACK);
  dv.setUint32(0, len, true);
  dv.setUint16(4, req.family, true);
  dv.setUint16(6, flags, true);
  dv.setUint32(8, req.seq, true);
  dv.setUint32(12, 0, true); // port: the kernel fills in ours
  out[16] = req.cmd;
  out[17] = req.version;
  let at = NLMSG_HDRLEN + GENL_HDRLEN;
  for (const a of req.attrs) {
    dv.setUint16(at, NLA_HDRLEN + a.data.length, true);
    dv.setUint16(at + 2, a.type, true);
    out.set(a.data, at + NLA_HDRLEN);
    at += align4(NLA_HDRLEN + a.data.length);
  }
  return out;
}

// ---- decoders

function protoError(detail: string): VdpaError {
  return new VdpaError(`EPROTO: malformed netlink answer: ${detail}`, {
    code: 'EPROTO',
    errno: -71,
    syscall: 'recv(netlink)',
  });
}

/** Splits a buffer holding one or more netlink messages. Throws EPROTO on a bad length. */
export function decodeMessages(bytes: Uint8Array): NlMessage[] {
  const out: NlMessage[] = [];
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  while (at + NLMSG_HDRLEN <= bytes.length) {
    const len = dv.getUint32(at, true);
    if (len < NLMSG_HDRLEN || at + len > bytes.length) throw protoError(`message length ${len} at ${at}`);
    out.push({
      type: dv.getUint16(at + 4, true),
      flags: dv.getUint16(at + 6, true),
      seq: dv.getUint32(at + 8, true),
      pid: dv.getUint32(at + 12, true),
      payload: bytes.subarray(at + NLMSG_HDRLEN, at + len),
    });
    at += align4(len);
  }
  return out;
}

/** The attributes in `bytes` (a run of nlattr). Throws EPROTO on a length that runs past the end. */
export function decodeAttrs(bytes: Uint8Array): NlAttr[] {
  const out: NlAttr[] = [];
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  while (at + NLA_HDRLEN <= bytes.length) {
    const len = dv.getUint16(at, true);
    if (len < NLA_HDRLEN || at + len > bytes.length) throw protoError(`attribute length ${len} at ${at}`);
    out.push({ type: dv.getUint16(at + 2, true) & NLA_TYPE_MASK, data: bytes.subarray(at + NLA_HDRLEN, at + len) });
    at += align4(len);
  }
  return out;
}

/** A generic netlink message's command and attributes. */
export interface GenlMessage {
  cmd: number;
  version: number;
  attrs: Attrs;
}

export function decodeGenl(msg: NlMessage): GenlMessage {
  if (msg.payload.length < GENL_HDRLEN) throw protoError('generic netlink header missing');
  return {
    cmd: msg.payload[0],
    version: msg.payload[1],
    attrs: new Attrs(decodeAttrs(msg.payload.subarray(GENL_HDRLEN))),
  };
}

/** Typed reads of a message's attributes; absent attributes read as undefined. */
export class Attrs {
  constructor(readonly list: NlAttr[]) {}
  get(type: number): Uint8Array | undefined {
    return this.list.find((a) => a.type === type)?.data;
  }
  has(type: number): boolean {
    return this.get(type) !== undefined;
  }
  string(type: number): string | undefined {
    const d = this.get(type);
    if (!d) return undefined;
    const nul = d.indexOf(0);
    return Buffer.from(d.buffer, d.byteOffset, nul < 0 ? d.length : nul).toString('utf8');
  }
  /** An unsigned integer of whatever width the kernel put (u8/u16/u32); u64 needs {@link u64}. */
  uint(type: number): number | undefined {
    const d = this.get(type);
    if (!d) return undefined;
    const dv = new DataView(d.buffer, d.byteOffset, d.byteLength);
    if (d.length >= 4) return dv.getUint32(0, true);
    if (d.length >= 2) return dv.getUint16(0, true);
    if (d.length >= 1) return d[0];
    return undefined;
  }
  u64(type: number): bigint | undefined {
    const d = this.get(type);
    if (!d) return undefined;
    if (d.length < 8) return this.uint(type) === undefined ? undefined : BigInt(this.uint(type) as number);
    return new DataView(d.buffer, d.byteOffset, 8).getBigUint64(0, true);
  }
}

/** What an NLMSG_ERROR (or an NLMSG_DONE ending a failed dump) says. */
export interface NlError {
  /** Positive errno; 0 for a plain ack. */
  errno: number;
  /** The kernel's extended-ack text (NLMSGERR_ATTR_MSG), when it gave one. */
  message: string | undefined;
  /** Byte offset of the offending attribute in the request (NLMSGERR_ATTR_OFFS). */
  offset: number | undefined;
}

/** Decodes an NLMSG_ERROR or NLMSG_DONE payload: the error code and any extended-ack attributes. */
export function decodeError(msg: NlMessage): NlError {
  const p = msg.payload;
  if (p.length < 4) {
    if (msg.type === NlMsgType.DONE) return { errno: 0, message: undefined, offset: undefined };
    throw protoError('NLMSG_ERROR without an error code');
  }
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const errno = -dv.getInt32(0, true);
  let tlvs = 4;
  if (msg.type === NlMsgType.ERROR) {
    // struct nlmsgerr: the error, then the request's header (and, unless capped, its payload).
    if (p.length < 4 + NLMSG_HDRLEN) throw protoError('NLMSG_ERROR shorter than struct nlmsgerr');
    const reqLen = dv.getUint32(4, true);
    tlvs = 4 + ((msg.flags & NlFlag.CAPPED) !== 0 ? NLMSG_HDRLEN : align4(reqLen));
  }
  let message: string | undefined;
  let offset: number | undefined;
  if ((msg.flags & NlFlag.ACK_TLVS) !== 0 && tlvs <= p.length) {
    const attrs = new Attrs(decodeAttrs(p.subarray(tlvs)));
    message = attrs.string(NLMSGERR_ATTR_MSG);
    offset = attrs.uint(NLMSGERR_ATTR_OFFS);
  }
  return { errno, message, offset };
}

// ---- errors

const errnoMap = util.getSystemErrorMap();

/** Name and text of a positive errno ("ENODEV", "No such device"). */
export function errnoInfo(errno: number): { code: string; text: string } {
  // Linux's ENOTSUP is EOPNOTSUPP (95); the kernel and this library say EOPNOTSUPP, libuv says ENOTSUP.
  if (errno === 95) return { code: 'EOPNOTSUPP', text: 'operation not supported' };
  const e = errnoMap.get(-errno);
  return e ? { code: e[0], text: e[1] } : { code: `E${errno}`, text: `error ${errno}` };
}

/** Where a failed request was aimed, for the error: e.g. syscall 'netlink(VDPA_CMD_DEV_NEW)', path 'vdpa0'. */
export interface RequestContext {
  syscall: string;
  path?: string;
  /** Hints for particular errno values, over the generic ones. */
  hints?: Partial<Record<string, string>>;
}

const GENERIC_HINTS: Record<string, string> = {
  EPERM: 'vdpa management needs CAP_NET_ADMIN: run as root',
};

/** The VdpaError for a kernel error answer, its extended-ack text in the message. */
export function netlinkError(err: NlError, ctx: RequestContext): VdpaError {
  const { code, text } = errnoInfo(err.errno);
  const hint = ctx.hints?.[code] ?? GENERIC_HINTS[code];
  const what = err.message ? `${text}: ${err.message}` : text;
  const where = ctx.path === undefined ? ctx.syscall : `${ctx.syscall} '${ctx.path}'`;
  const info = { code, errno: -err.errno, syscall: ctx.syscall, ...(ctx.path !== undefined && { path: ctx.path }) };
  return new VdpaError(`${code}: ${what}, ${where}`, hint === undefined ? info : { ...info, hint });
}

/**
 * The data messages of one complete answer (everything before its NLMSG_DONE / ack), or the
 * VdpaError its NLMSG_ERROR / failed NLMSG_DONE carries.
 */
export function answerMessages(replies: Uint8Array[], ctx: RequestContext): NlMessage[] {
  const out: NlMessage[] = [];
  for (const r of replies) {
    for (const m of decodeMessages(r)) {
      if (m.type === NlMsgType.ERROR || m.type === NlMsgType.DONE) {
        const e = decodeError(m);
        if (e.errno !== 0) throw netlinkError(e, ctx);
        return out;
      }
      if (m.type !== NlMsgType.NOOP) out.push(m);
    }
  }
  throw protoError('answer ended without NLMSG_DONE or an ack');
}

// ---- transport

/** How long one request may wait for the kernel. */
export const NETLINK_TIMEOUT_MS = 5000;

let nextSeq = (Date.now() & 0x7fffffff) >>> 0;

/** Sends `req` and resolves with the raw messages of its answer (for recording fixtures). */
export function rawTransact(req: Omit<GenlRequest, 'seq'>, timeoutMs = NETLINK_TIMEOUT_MS): Promise<Uint8Array[]> {
  nextSeq = (nextSeq + 1) >>> 0;
  return native.netlinkTransact(encodeGenl({ ...req, seq: nextSeq }), timeoutMs);
}

/** Sends `req` and resolves with its decoded answer (no messages for a plain ack). */
export async function genlTransact(req: Omit<GenlRequest, 'seq'>, ctx: RequestContext): Promise<GenlMessage[]> {
  let replies: Uint8Array[];
  try {
    replies = await rawTransact(req);
  } catch (e) {
    if (e instanceof VdpaError && e.path === undefined && ctx.path !== undefined) e.path = ctx.path;
    throw e;
  }
  return answerMessages(replies, ctx).map(decodeGenl);
}

/** Decodes CTRL_CMD_GETFAMILY's answer: the family id. */
export function decodeFamilyId(msgs: GenlMessage[]): number | undefined {
  for (const m of msgs) {
    const id = m.attrs.uint(GenlCtrl.ATTR_FAMILY_ID);
    if (id !== undefined) return id;
  }
  return undefined;
}

/** The id the kernel gave generic netlink family `name` (it is assigned when the module loads). */
export async function resolveFamily(name: string, hint: string): Promise<number> {
  let msgs: GenlMessage[];
  try {
    msgs = await genlTransact(
      {
        family: GenlCtrl.ID,
        cmd: GenlCtrl.CMD_GETFAMILY,
        version: 1,
        flags: 0,
        attrs: [attrString(GenlCtrl.ATTR_FAMILY_NAME, name)],
      },
      { syscall: 'netlink(CTRL_CMD_GETFAMILY)', path: name },
    );
  } catch (e) {
    if (e instanceof VdpaError && e.code === 'ENOENT')
      throw new VdpaError(`ENOENT: no generic netlink family '${name}', netlink(CTRL_CMD_GETFAMILY) '${name}'`, {
        code: 'ENOENT',
        errno: -2,
        syscall: 'netlink(CTRL_CMD_GETFAMILY)',
        path: name,
        hint,
      });
    throw e;
  }
  const id = decodeFamilyId(msgs);
  if (id === undefined) throw protoError('CTRL_CMD_GETFAMILY answer without a family id');
  return id;
}
