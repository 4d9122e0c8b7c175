import { Packr } from 'msgpackr';
import { ProtocolError } from '../errors.js';

// One WebSocket message carries one frame: [u32 LE header length][msgpack header][payload].
// A payload too large for one frame is announced by a DATA header with `chunks` > 0 and follows as
// that many raw WebSocket messages, back to back on the connection, so that its bytes are never
// re-encoded or concatenated on the sending side.

const packr = new Packr({ useRecords: false, moreTypes: false });

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

function frame(header: unknown[], payload?: Uint8Array): Buffer {
  const h = packr.pack(header);
  const out = Buffer.allocUnsafe(4 + h.length + (payload?.byteLength ?? 0));
  out.writeUInt32LE(h.length, 0);
  h.copy(out, 4);
  if (payload && payload.byteLength) out.set(payload, 4 + h.length);
  return out;
}

/** Encodes a data frame; pass `chunks` > 0 and no payload to announce a chunked message. */
export function encodeData(comm: string, tag: number, dtype: number, bytes: number, chunks: number, meta: unknown, payload?: Uint8Array): Buffer {
  return frame(meta === undefined ? [Kind.Data, comm, tag, dtype, bytes, chunks] : [Kind.Data, comm, tag, dtype, bytes, chunks, meta], payload);
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
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const hl = dv.getUint32(0, true);
  if (hl === 0 || hl > MAX_HEADER || hl > buf.byteLength - 4) {
    throw new ProtocolError(`frame header length ${hl} is invalid for a frame of ${buf.byteLength} bytes`);
  }
  let h: unknown;
  try {
    h = packr.unpack(buf.subarray(4, 4 + hl));
  } catch (e) {
    throw new ProtocolError(`frame header is not valid msgpack (${(e as Error).message})`);
  }
  if (!Array.isArray(h) || h.length === 0) throw new ProtocolError('frame header is not a non-empty array');
  const payload = buf.subarray(4 + hl);
  const bad = (what: string): never => {
    throw new ProtocolError(`malformed ${what} frame: ${JSON.stringify(h).slice(0, 200)}`);
  };
  const rest = (n: number) => payload.byteLength !== 0 && bad(`control (${n})`);
  switch (h[0]) {
    case Kind.Data: {
      const [, comm, tag, dtype, bytes, chunks, meta] = h;
      if (!isStr(comm, 256) || !isInt(tag, -(2 ** 31), 2 ** 31) || !isInt(dtype, 0, 3) || !isInt(bytes) || !isInt(chunks, 0, 1 << 20) || h.length > 7) bad('data');
      if ((bytes as number) > maxMessageBytes) throw new ProtocolError(`message of ${bytes} bytes exceeds the limit of ${maxMessageBytes}`);
      if (chunks === 0 ? payload.byteLength !== bytes : payload.byteLength !== 0 || bytes === 0) {
        throw new ProtocolError(`data frame declares ${bytes} bytes in ${chunks} chunks but carries ${payload.byteLength}`);
      }
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
