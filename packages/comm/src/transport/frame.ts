import { Packr } from 'msgpackr';
import { CommUsageError, ProtocolError } from '../errors.js';

// One WebSocket message carries one frame: [u32 LE header length][msgpack header][payload].
// A payload too large for one frame is announced by a DATA header with `chunks` > 0 and follows as
// that many raw WebSocket messages, back to back on the connection, so that its bytes are never
// re-encoded or concatenated on the sending side.

const packr = new Packr({ useRecords: false, moreTypes: false, copyBuffers: true });

/** Frame kinds. */
export const enum Kind {
  Data = 0,
  Lost = 2,
  Auth = 3,
  Challenge = 5,
  AuthOk = 6,
  Register = 7,
  Table = 8,
  Bye = 9,
}

/** A plain object as msgpack bytes (sendObject's payload). */
export function packObject(obj: unknown): Uint8Array {
  return packr.pack(obj);
}

/** The object packObject encoded; a ProtocolError if the bytes are not msgpack. */
export function unpackObject(bytes: Uint8Array): unknown {
  try {
    return packr.unpack(bytes);
  } catch (e) {
    throw new ProtocolError(`an object message of ${bytes.byteLength} bytes does not decode: ${(e as Error).message}`);
  }
}

/** Largest header accepted, in bytes. */
export const MAX_HEADER = 64 * 1024;

/** A typed-array message (or its announcement, when chunked), with an optional small object. */
export interface DataFrame {
  kind: Kind.Data;
  comm: string;
  tag: number;
  dtype: number;
  bytes: number;
  chunks: number;
  meta: unknown;
  payload: Uint8Array;
}
/** A peer tells the others that it lost a rank. */
export interface LostFrame { kind: Kind.Lost; rank: number; reason: string }
/** Server to client: prove you know the job token. */
export interface ChallengeFrame { kind: Kind.Challenge; rank: number; nonce: string }
/** Client to server: rank, proof, and a nonce for the server's own proof. */
export interface AuthFrame { kind: Kind.Auth; rank: number; proof: string; nonce: string }
/** Server to client: accepted, with the server's proof. */
export interface AuthOkFrame { kind: Kind.AuthOk; rank: number; proof: string }
/** Rank to rank 0: where I listen. */
export interface RegisterFrame { kind: Kind.Register; host: string; port: number }
/** Rank 0 to all: where everyone listens. */
export interface TableFrame { kind: Kind.Table; table: [string, number][] }
/** Orderly shutdown of a connection. */
export interface ByeFrame { kind: Kind.Bye }

export type Frame = DataFrame | LostFrame | ChallengeFrame | AuthFrame | AuthOkFrame | RegisterFrame | TableFrame | ByeFrame;

/** Bytes reserved in front of every encoded frame for the WebSocket header (see wsFrame). */
export const WS_RESERVE = 14;

function frame(header: unknown[], payload?: Uint8Array): Buffer {
  const h = packr.pack(header);
  const out = Buffer.allocUnsafe(WS_RESERVE + 4 + h.length + (payload?.byteLength ?? 0));
  out.writeUInt32LE(h.length, WS_RESERVE);
  h.copy(out, WS_RESERVE + 4);
  if (payload && payload.byteLength) out.set(payload, WS_RESERVE + 4 + h.length);
  // The frame proper; wsFrame can widen the view backwards over the reserved bytes.
  return out.subarray(WS_RESERVE);
}

/** Bytes of the WebSocket header of a final binary frame of `len` bytes. */
function wsHeaderSize(len: number, masked: boolean): number {
  return (len < 126 ? 2 : len < 65536 ? 4 : 10) + (masked ? 4 : 0);
}

/** The WebSocket header of a final binary frame of `len` bytes; masked frames get an all-zero key. */
export function wsHeader(len: number, masked: boolean, into?: Buffer, at = 0): Buffer {
  const size = wsHeaderSize(len, masked);
  if (!into) {
    const h = Buffer.allocUnsafe(size);
    wsHeaderAt(h, 0, len, masked);
    return h;
  }
  wsHeaderAt(into, at - size, len, masked);
  return into.subarray(at - size, at + len);
}

/**
 * A whole WebSocket frame around an encoded frame, built in the bytes reserved in front of it, so
 * that it leaves in one write (ws writes header and payload separately: two system calls).
 */
export function wsFrame(encoded: Buffer, masked: boolean): Buffer {
  if (encoded.byteOffset < WS_RESERVE) return Buffer.concat([wsHeader(encoded.length, masked), encoded]);
  const whole = Buffer.from(encoded.buffer, encoded.byteOffset - WS_RESERVE, WS_RESERVE + encoded.length);
  return wsHeader(encoded.length, masked, whole, WS_RESERVE);
}

const commCache = new Map<string, Buffer>();
function commBytes(comm: string): Buffer {
  let b = commCache.get(comm);
  if (!b) {
    b = Buffer.from(comm, 'utf8');
    if (commCache.size > 4096) commCache.clear();
    commCache.set(comm, b);
  }
  return b;
}

function be32(out: Uint8Array, o: number, v: number): number {
  out[o] = (v >>> 24) & 0xff;
  out[o + 1] = (v >>> 16) & 0xff;
  out[o + 2] = (v >>> 8) & 0xff;
  out[o + 3] = v & 0xff;
  return o + 4;
}

/**
 * Encodes a data frame; pass `chunks` > 0 and no payload to announce a chunked message.
 * The header is msgpack, [0, comm, tag, dtype, bytes, chunks(, meta)], written by hand in one
 * canonical form (fixarray, fixint, str8, int32, fixint, uint32, uint32): this is the per-message
 * hot path, and msgpackr encodes only the optional object.
 */
export function encodeData(comm: string, tag: number, dtype: number, bytes: number, chunks: number, meta: unknown, payload?: Uint8Array): Buffer {
  return writeData(null, comm, tag, dtype, bytes, chunks, meta, payload);
}

/**
 * encodeData's frame as a whole WebSocket message, header included, in one buffer (one write): a
 * view of `into` when it is large enough, else new memory.
 */
export function wsData(masked: boolean, comm: string, tag: number, dtype: number, bytes: number, chunks: number, meta: unknown, payload?: Uint8Array, into?: Buffer): Buffer {
  return writeData(masked, comm, tag, dtype, bytes, chunks, meta, payload, into);
}

/**
 * A frame as wsFrame makes it, followed by the header of the next frame (`nextLen` bytes), in one
 * buffer: a large message's announcement and its first chunk's header go out as one write.
 */
export function wsFrameThenHeader(encoded: Buffer, masked: boolean, nextLen: number): Buffer {
  const h1 = wsHeaderSize(encoded.length, masked);
  const out = Buffer.allocUnsafe(h1 + encoded.length + wsHeaderSize(nextLen, masked));
  wsHeaderAt(out, 0, encoded.length, masked);
  out.set(encoded, h1);
  wsHeaderAt(out, h1 + encoded.length, nextLen, masked);
  return out;
}

/** Writes the header of a final binary WebSocket frame of `len` bytes (all-zero mask key) at `o`. */
function wsHeaderAt(out: Uint8Array, o: number, len: number, masked: boolean): void {
  out[o] = 0x82;
  let p = o + 2;
  if (len < 126) out[o + 1] = len;
  else if (len < 65536) {
    out[o + 1] = 126;
    out[o + 2] = len >>> 8;
    out[o + 3] = len & 0xff;
    p = o + 4;
  } else {
    out[o + 1] = 127;
    out[o + 2] = out[o + 3] = out[o + 4] = out[o + 5] = 0;
    p = be32(out, o + 6, len);
  }
  if (masked) {
    out[o + 1]! |= 0x80;
    out[p] = out[p + 1] = out[p + 2] = out[p + 3] = 0;
  }
}

function writeData(masked: boolean | null, comm: string, tag: number, dtype: number, bytes: number, chunks: number, meta: unknown, payload?: Uint8Array, into?: Buffer): Buffer {
  const c = commBytes(comm);
  const m = meta === undefined ? null : packr.pack(meta);
  const hl = 1 + 1 + 2 + c.length + 5 + 1 + 5 + 5 + (m ? m.length : 0);
  // The receiver refuses a larger header: refuse it here, where the caller can be told.
  if (hl > MAX_HEADER) {
    throw new CommUsageError(`a message header of ${hl} bytes (its object packs to ${m!.length}) exceeds the ${MAX_HEADER}-byte limit: send large data as the payload, or objects with sendObject`);
  }
  const pl = payload?.byteLength ?? 0;
  const len = 4 + hl + pl;
  const hs = masked == null ? WS_RESERVE : wsHeaderSize(len, masked);
  const out = into && into.length >= hs + len ? into.subarray(0, hs + len) : Buffer.allocUnsafe(hs + len);
  if (masked != null) wsHeaderAt(out, 0, len, masked);
  // Plain byte stores: Buffer's write methods inline into a graph several times larger, and this
  // function's optimisation is part of every job's warm-up.
  let o = hs;
  out[o++] = hl & 0xff;
  out[o++] = (hl >>> 8) & 0xff;
  out[o++] = (hl >>> 16) & 0xff;
  out[o++] = hl >>> 24;
  out[o++] = m ? 0x97 : 0x96;
  out[o++] = Kind.Data;
  out[o++] = 0xd9; // str8
  out[o++] = c.length;
  for (let i = 0; i < c.length; i++) out[o++] = c[i]!;
  out[o++] = 0xd2; // int32, big-endian
  o = be32(out, o, tag);
  out[o++] = dtype;
  out[o++] = 0xce; // uint32
  o = be32(out, o, bytes);
  out[o++] = 0xce;
  o = be32(out, o, chunks);
  if (m) {
    out.set(m, o);
    o += m.length;
  }
  if (pl) out.set(payload!, o);
  return masked == null ? out.subarray(WS_RESERVE) : out;
}

// The last communicator name decoded: consecutive messages nearly always share it.
let lastCommBytes = Buffer.alloc(0);
let lastComm = '';
function commName(b: Uint8Array, at: number, len: number): string {
  if (len === lastCommBytes.length) {
    let same = true;
    for (let i = 0; i < len; i++) if (b[at + i] !== lastCommBytes[i]) { same = false; break; }
    if (same) return lastComm;
  }
  lastCommBytes = Buffer.from(b.subarray(at, at + len));
  lastComm = lastCommBytes.toString('utf8');
  return lastComm;
}

/** Decodes the canonical data header written by encodeData, or returns null for anything else. */
function fastData(buf: Uint8Array, hl: number, maxMessageBytes: number): DataFrame | null {
  const b = buf;
  if (!(b[4] === 0x96 || b[4] === 0x97) || b[5] !== Kind.Data || b[6] !== 0xd9) return null;
  const cl = b[7]!;
  let o = 8 + cl;
  if (o + 16 > 4 + hl || b[o] !== 0xd2 || b[o + 5]! > 3 || b[o + 6] !== 0xce || b[o + 11] !== 0xce) return null;
  const comm = commName(b, 8, cl);
  const tag = ((b[o + 1]! << 24) | (b[o + 2]! << 16) | (b[o + 3]! << 8) | b[o + 4]!) | 0;
  const dtype = b[o + 5]!;
  const bytes = (b[o + 7]! * 2 ** 24 + ((b[o + 8]! << 16) | (b[o + 9]! << 8) | b[o + 10]!));
  const chunks = (b[o + 12]! * 2 ** 24 + ((b[o + 13]! << 16) | (b[o + 14]! << 8) | b[o + 15]!));
  o += 16;
  let meta: unknown;
  if (b[4] === 0x97) {
    if (o >= 4 + hl) return null;
    try {
      meta = packr.unpack(b.subarray(o, 4 + hl));
    } catch (e) {
      throw new ProtocolError(`frame header object is not valid msgpack (${(e as Error).message})`);
    }
  } else if (o !== 4 + hl) return null;
  const payload = b.subarray(4 + hl);
  checkData(bytes, chunks, payload, maxMessageBytes);
  return { kind: Kind.Data, comm, tag, dtype, bytes, chunks, meta, payload };
}

function checkData(bytes: number, chunks: number, payload: Uint8Array, maxMessageBytes: number): void {
  if (bytes > maxMessageBytes) throw new ProtocolError(`message of ${bytes} bytes exceeds the limit of ${maxMessageBytes}`);
  if (chunks > 1 << 20 || (chunks === 0 ? payload.byteLength !== bytes : payload.byteLength !== 0 || bytes === 0)) {
    throw new ProtocolError(`data frame declares ${bytes} bytes in ${chunks} chunks but carries ${payload.byteLength}`);
  }
}

/** Encodes a control frame. */
export function encodeControl(f: Exclude<Frame, DataFrame>): Buffer {
  switch (f.kind) {
    case Kind.Lost: return frame([f.kind, f.rank, f.reason]);
    case Kind.Challenge: return frame([f.kind, f.rank, f.nonce]);
    case Kind.Auth: return frame([f.kind, f.rank, f.proof, f.nonce]);
    case Kind.AuthOk: return frame([f.kind, f.rank, f.proof]);
    case Kind.Register: return frame([f.kind, f.host, f.port]);
    case Kind.Table: return frame([f.kind, f.table]);
    case Kind.Bye: return frame([f.kind]);
  }
}

const isInt = (v: unknown, min = 0, max = Number.MAX_SAFE_INTEGER): v is number => Number.isInteger(v) && (v as number) >= min && (v as number) <= max;
const isStr = (v: unknown, max = 4096): v is string => typeof v === 'string' && v.length <= max;

/**
 * Decodes and validates one frame. Anything malformed is a ProtocolError saying what is wrong;
 * nothing is trusted before it is checked (lengths, kinds, field types, ranges).
 */
export function decodeFrame(buf: Uint8Array, maxMessageBytes: number): Frame {
  if (buf.byteLength < 4) throw new ProtocolError(`frame of ${buf.byteLength} bytes is shorter than its 4-byte header length`);
  const hl = (buf[0]! | (buf[1]! << 8) | (buf[2]! << 16)) + buf[3]! * 2 ** 24;
  if (hl === 0 || hl > MAX_HEADER || hl > buf.byteLength - 4) {
    throw new ProtocolError(`frame header length ${hl} is invalid for a frame of ${buf.byteLength} bytes`);
  }
  const fast = fastData(buf, hl, maxMessageBytes);
  if (fast) return fast;
  let h: unknown;
  try {
    h = packr.unpack(buf.subarray(4, 4 + hl));
  } catch (e) {
    throw new ProtocolError(`frame header is not valid msgpack (${(e as Error).message})`);
  }
  if (!Array.isArray(h) || h.length === 0) throw new ProtocolError('frame header is not a non-empty array');
  const payload = buf.subarray(4 + hl);
  const bad = (what: string): never => {
    const shown = JSON.stringify(h, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v)) ?? String(h);
    throw new ProtocolError(`malformed ${what} frame: ${shown.slice(0, 200)}`);
  };
  const rest = (n: number) => payload.byteLength !== 0 && bad(`control (${n})`);
  switch (h[0]) {
    case Kind.Data: {
      const [, comm, tag, dtype, bytes, chunks, meta] = h;
      if (!isStr(comm, 256) || !isInt(tag, -(2 ** 31), 2 ** 31) || !isInt(dtype, 0, 3) || !isInt(bytes) || !isInt(chunks, 0, 1 << 20) || h.length > 7) bad('data');
      checkData(bytes as number, chunks as number, payload, maxMessageBytes);
      return { kind: Kind.Data, comm: comm as string, tag: tag as number, dtype: dtype as number, bytes: bytes as number, chunks: chunks as number, meta, payload };
    }
    case Kind.Lost:
      if (!isInt(h[1]) || !isStr(h[2])) bad('lost');
      rest(Kind.Lost);
      return { kind: Kind.Lost, rank: h[1], reason: h[2] };
    case Kind.Challenge:
      if (!isInt(h[1]) || !isStr(h[2], 128)) bad('challenge');
      rest(Kind.Challenge);
      return { kind: Kind.Challenge, rank: h[1], nonce: h[2] };
    case Kind.Auth:
      if (!isInt(h[1]) || !isStr(h[2], 128) || !isStr(h[3], 128)) bad('auth');
      rest(Kind.Auth);
      return { kind: Kind.Auth, rank: h[1], proof: h[2], nonce: h[3] };
    case Kind.AuthOk:
      if (!isInt(h[1]) || !isStr(h[2], 128)) bad('auth-ok');
      rest(Kind.AuthOk);
      return { kind: Kind.AuthOk, rank: h[1], proof: h[2] };
    case Kind.Register:
      if (!isStr(h[1], 255) || !isInt(h[2], 1, 65535)) bad('register');
      rest(Kind.Register);
      return { kind: Kind.Register, host: h[1], port: h[2] };
    case Kind.Table: {
      const t = h[1];
      if (!Array.isArray(t) || t.length > 1 << 16 || !t.every((e) => Array.isArray(e) && e.length === 2 && isStr(e[0], 255) && isInt(e[1], 0, 65535))) bad('table');
      rest(Kind.Table);
      return { kind: Kind.Table, table: t as [string, number][] };
    }
    case Kind.Bye:
      rest(Kind.Bye);
      return { kind: Kind.Bye };
    default:
      throw new ProtocolError(`unknown frame kind ${JSON.stringify(h[0])}`);
  }
}
