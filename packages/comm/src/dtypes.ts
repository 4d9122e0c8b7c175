import { CommUsageError } from './errors.js';

/** Typed arrays that communicators move and reduce. */
export type Buf = Float32Array | Float64Array | Int32Array | Uint8Array;

/** Wire codes of the element types. */
export const DTYPES = ['float32', 'float64', 'int32', 'uint8'] as const;
export type DTypeName = (typeof DTYPES)[number];

const CTORS = [Float32Array, Float64Array, Int32Array, Uint8Array] as const;

/** The wire code of a typed array's element type. */
export function dtypeCode(b: Buf): number {
  if (b instanceof Float32Array) return 0;
  if (b instanceof Float64Array) return 1;
  if (b instanceof Int32Array) return 2;
  if (b instanceof Uint8Array) return 3;
  throw new CommUsageError(`unsupported buffer type ${(b as object)?.constructor?.name}; expected Float32Array, Float64Array, Int32Array or Uint8Array`);
}

/** Bytes per element of a wire code. */
export function elementBytes(code: number): number {
  return CTORS[code]!.BYTES_PER_ELEMENT;
}

/** A new typed array of a wire code. */
export function alloc(code: number, length: number): Buf {
  return new CTORS[code]!(length);
}

/** A typed array of a wire code viewing bytes (copied first if they are not aligned). */
export function view(code: number, bytes: Uint8Array): Buf {
  const size = elementBytes(code);
  // A copy into fresh memory when unaligned (not bytes.slice(): on a Buffer that is a view).
  if (bytes.byteOffset % size !== 0) bytes = new Uint8Array(bytes);
  return new CTORS[code]!(bytes.buffer as ArrayBuffer, bytes.byteOffset, bytes.byteLength / size);
}

/** The raw bytes of a typed array, without copying. */
export function bytesOf(b: Buf): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** The name of a wire code, for messages. */
export function dtypeName(code: number): string {
  return DTYPES[code] ?? `code ${code}`;
}

/** The typed-array class of a wire code. */
export function ctorOf(code: number): (typeof CTORS)[number] {
  return CTORS[code]!;
}
