import { tf } from '../tf.js';
import type * as TF from '@tensorflow/tfjs-core';
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { dirname, basename, join } from 'node:path';
import { CheckpointError } from '../errors.js';

/** One tensor as stored: safetensors dtype, shape and raw values. */
export interface StoredTensor {
  dtype: string;
  shape: number[];
  data: Float32Array | Int32Array | Uint8Array | Float64Array;
}

const BYTES: Record<string, number> = { F32: 4, F64: 8, I32: 4, U8: 1, BOOL: 1, I64: 8, F16: 2, BF16: 2 };
const MAX_HEADER = 100 * 1024 * 1024;

function dtypeOf(t: TF.Tensor): string {
  if (t.dtype === 'float32') return 'F32';
  if (t.dtype === 'int32') return 'I32';
  if (t.dtype === 'bool') return 'BOOL';
  throw new CheckpointError(`cannot store a tensor of dtype ${t.dtype} in safetensors`);
}

/** Serialises tensors (sorted by name) and string metadata in the safetensors format. */
export function encodeSafetensors(tensors: Map<string, TF.Tensor>, metadata: Record<string, string> = {}): Buffer {
  const names = [...tensors.keys()].sort();
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const name of names) {
    const t = tensors.get(name)!;
    const dtype = dtypeOf(t);
    const values = t.dataSync();
    const bytes = dtype === 'BOOL' ? Uint8Array.from(values as ArrayLike<number>) : new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + bytes.byteLength] };
    chunks.push(bytes);
    offset += bytes.byteLength;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const padTo = Math.ceil(json.length / 8) * 8;
  if (padTo !== json.length) json = Buffer.concat([json, Buffer.alloc(padTo - json.length, 0x20)]);
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([head, json, ...chunks]);
}

function toTypedArray(dtype: string, bytes: Uint8Array, where: string): StoredTensor['data'] {
  const copy = bytes.slice(); // aligned copy
  const b = copy.buffer;
  switch (dtype) {
    case 'F32': return new Float32Array(b);
    case 'F64': return new Float64Array(b);
    case 'I32': return new Int32Array(b);
    case 'U8':
    case 'BOOL': return copy;
    case 'I64': {
      const big = new BigInt64Array(b);
      const out = new Int32Array(big.length);
      for (let i = 0; i < big.length; i++) {
        const v = big[i]!;
        if (v > 2147483647n || v < -2147483648n) throw new CheckpointError(`${where}: int64 value ${v} does not fit int32`);
        out[i] = Number(v);
      }
      return out;
    }
    case 'F16':
    case 'BF16': {
      const u16 = new Uint16Array(b);
      const out = new Float32Array(u16.length);
      const view = new DataView(new ArrayBuffer(4));
      for (let i = 0; i < u16.length; i++) {
        const h = u16[i]!;
        if (dtype === 'BF16') {
          view.setUint32(0, h << 16);
          out[i] = view.getFloat32(0);
        } else {
          const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
          out[i] = e === 0 ? s * 2 ** -14 * (f / 1024) : e === 31 ? (f ? NaN : s * Infinity) : s * 2 ** (e - 15) * (1 + f / 1024);
        }
      }
      return out;
    }
    default:
      throw new CheckpointError(`${where}: unsupported dtype ${dtype}`);
  }
}

/** Parses a safetensors buffer, checking every bound; `source` names it in errors. */
export function decodeSafetensors(buf: Uint8Array, source = 'buffer'): { tensors: Map<string, StoredTensor>; metadata: Record<string, string> } {
  if (buf.byteLength < 8) throw new CheckpointError(`${source}: ${buf.byteLength} bytes is too short for a safetensors file (needs an 8-byte header length)`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const n = Number(view.getBigUint64(0, true));
  if (n > MAX_HEADER || 8 + n > buf.byteLength) {
    throw new CheckpointError(`${source}: header length ${n} exceeds the file (${buf.byteLength} bytes): truncated or not safetensors`);
  }
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(Buffer.from(buf.buffer, buf.byteOffset + 8, n).toString('utf8'));
  } catch (e) {
    throw new CheckpointError(`${source}: header is not valid JSON (${(e as Error).message}): not a safetensors file`);
  }
  if (header == null || typeof header !== 'object' || Array.isArray(header)) throw new CheckpointError(`${source}: header is not a JSON object`);
  const dataStart = 8 + n;
  const dataLen = buf.byteLength - dataStart;
  const tensors = new Map<string, StoredTensor>();
  let metadata: Record<string, string> = {};
  const spans: [number, number, string][] = [];
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (entry == null || typeof entry !== 'object' || Object.values(entry).some((v) => typeof v !== 'string')) {
        throw new CheckpointError(`${source}: __metadata__ must map strings to strings`);
      }
      metadata = entry as Record<string, string>;
      continue;
    }
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const where = `${source}: tensor '${name}'`;
    if (typeof e?.dtype !== 'string' || !(e.dtype in BYTES)) throw new CheckpointError(`${where} has unsupported dtype ${JSON.stringify(e?.dtype)}`);
    if (!Array.isArray(e.shape) || e.shape.some((d) => !Number.isInteger(d) || d < 0)) throw new CheckpointError(`${where} has an invalid shape`);
    const offs = e.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isInteger(o)) || offs[0] < 0 || offs[1] < offs[0] || offs[1] > dataLen) {
      throw new CheckpointError(`${where} has data offsets ${JSON.stringify(offs)} outside the ${dataLen}-byte data section: truncated file`);
    }
    const shape = e.shape as number[];
    const want = shape.reduce((a, b) => a * b, 1) * BYTES[e.dtype]!;
    if (offs[1] - offs[0] !== want) throw new CheckpointError(`${where}: ${offs[1] - offs[0]} bytes stored, shape [${shape}] of ${e.dtype} needs ${want}`);
    spans.push([offs[0], offs[1], name]);
    const bytes = new Uint8Array(buf.buffer, buf.byteOffset + dataStart + offs[0], want);
    tensors.set(name, { dtype: e.dtype, shape, data: toTypedArray(e.dtype, bytes, where) });
  }
  spans.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < spans.length; i++) {
    if (spans[i]![0] < spans[i - 1]![1]) throw new CheckpointError(`${source}: tensors '${spans[i - 1]![2]}' and '${spans[i]![2]}' overlap`);
  }
  return { tensors, metadata };
}

/** Converts a stored tensor to a TensorFlow.js tensor (float types as float32, integers as int32). */
export function toTf(t: StoredTensor): TF.Tensor {
  if (t.dtype === 'BOOL') return tf.tensor(t.data as Uint8Array, t.shape, 'bool');
  if (t.dtype === 'I32' || t.dtype === 'I64' || t.dtype === 'U8') return tf.tensor(Int32Array.from(t.data as ArrayLike<number>), t.shape, 'int32');
  return tf.tensor(t.data instanceof Float32Array ? t.data : Float32Array.from(t.data as ArrayLike<number>), t.shape, 'float32');
}

/**
 * Writes a file atomically: to a temporary file beside it, flushed to disk, then renamed over the
 * target, so a failed or interrupted save never destroys the previous file.
 */
export function writeFileAtomic(path: string, data: Uint8Array): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${Date.now()}.tmp`);
  let fd: number | null = null;
  try {
    fd = openSync(tmp, 'w');
    let off = 0;
    while (off < data.byteLength) off += writeSync(fd, data, off, data.byteLength - off);
    fsyncSync(fd);
    closeSync(fd);
    fd = null;
    renameSync(tmp, path);
  } catch (e) {
    if (fd != null) closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      /* already gone */
    }
    throw e;
  }
}

/** Saves tensors and string metadata to a safetensors file (atomically). */
export function saveSafetensors(path: string, tensors: Map<string, TF.Tensor>, metadata: Record<string, string> = {}): void {
  writeFileAtomic(path, encodeSafetensors(tensors, metadata));
}

/** Loads a safetensors file as TensorFlow.js tensors (the caller owns them). */
export function loadSafetensors(path: string): { tensors: Map<string, TF.Tensor>; metadata: Record<string, string> } {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (e) {
    throw new CheckpointError(`cannot read checkpoint ${path}: ${(e as Error).message}`);
  }
  const { tensors, metadata } = decodeSafetensors(buf, path);
  const out = new Map<string, TF.Tensor>();
  for (const [k, t] of tensors) out.set(k, toTf(t));
  return { tensors: out, metadata };
}
