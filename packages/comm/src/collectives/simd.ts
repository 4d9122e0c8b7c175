// WebAssembly SIMD kernels for element-wise sums, the arithmetic of every large allreduce.
// A JavaScript loop adds Float32Array elements at about 1.9 ns each on our machines (V8 does not
// vectorise it, and widens every element to a double and back); these kernels add four lanes per
// instruction, and with the copies into and out of wasm memory cost about 0.4 ns per element.
// The module is assembled below by hand (it is ~100 bytes); its text form:
//
//   (module
//     (import "env" "memory" (memory 1))
//     (func $add_f32 (param $d i32) (param $s i32) (param $end i32)   ;; d[i] += s[i], 16 bytes a step
//       (block (loop
//         (br_if 1 (i32.ge_u (local.get $d) (local.get $end)))
//         (v128.store (local.get $d) (f32x4.add (v128.load (local.get $d)) (v128.load (local.get $s))))
//         (local.set $d (i32.add (local.get $d) (i32.const 16)))
//         (local.set $s (i32.add (local.get $s) (i32.const 16)))
//         (br 0))))
//     (func $add_f64 ...f64x2.add...) (func $add_i32 ...i32x4.add...)
//     (export "f32" (func 0)) (export "f64" (func 1)) (export "i32" (func 2)))

const leb = (n: number): number[] => {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
};
const ascii = (s: string) => [...s].map((c) => c.charCodeAt(0));
const section = (id: number, bytes: number[]) => [id, ...leb(bytes.length), ...bytes];
const name = (s: string) => [s.length, ...ascii(s)];

function addBody(simdOp: number): number[] {
  const body = [
    0x00, // no locals
    0x02, 0x40, 0x03, 0x40, // block, loop
    0x20, 0, 0x20, 2, 0x4f, 0x0d, 1, // br_if 1 (d >= end)
    0x20, 0, // address of the store
    0x20, 0, 0xfd, 0x00, 4, 0, // v128.load d
    0x20, 1, 0xfd, 0x00, 4, 0, // v128.load s
    0xfd, ...leb(simdOp), // the lane-wise add
    0xfd, 0x0b, 4, 0, // v128.store
    0x20, 0, 0x41, 16, 0x6a, 0x21, 0, // d += 16
    0x20, 1, 0x41, 16, 0x6a, 0x21, 1, // s += 16
    0x0c, 0, // br 0
    0x0b, 0x0b, 0x0b, // end loop, block, function
  ];
  return [...leb(body.length), ...body];
}

/** Bytes of each operand's tile in wasm memory: small enough to stay in the core's cache. */
const TILE_BYTES = 256 * 1024;
const OPS = { f32: 0xe4, f64: 0xf0, i32: 0xae }; // f32x4.add, f64x2.add, i32x4.add

function assemble(): Uint8Array {
  const kinds = Object.keys(OPS) as (keyof typeof OPS)[];
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0,
    ...section(1, [1, 0x60, 3, 0x7f, 0x7f, 0x7f, 0]), // type: (i32, i32, i32) -> ()
    ...section(2, [1, ...name('env'), ...name('memory'), 2, 0, 1]), // import memory (at least one page)
    ...section(3, [kinds.length, ...kinds.map(() => 0)]), // functions of type 0
    ...section(7, [kinds.length, ...kinds.flatMap((k, i) => [...name(k), 0, i])]), // exports
    ...section(10, [kinds.length, ...kinds.flatMap((k) => addBody(OPS[k]))]), // code
  ]);
}

// The part of the WebAssembly API used here (this package's TypeScript libraries do not declare it).
const wasm = (globalThis as unknown as { WebAssembly?: {
  Memory: new (d: { initial: number; maximum: number }) => { buffer: ArrayBuffer };
  Module: new (bytes: Uint8Array) => object;
  Instance: new (m: object, imports: object) => { exports: Record<string, unknown> };
} }).WebAssembly;

type Kernel = (d: number, s: number, end: number) => void;
interface Kernels {
  f32: Kernel;
  f64: Kernel;
  i32: Kernel;
  memory: ArrayBuffer;
}

let compiled: object | null | undefined;

/** The kernels on a memory of `pages` 64 KiB pages, or null where WebAssembly SIMD or the memory is not available. */
function instantiate(pages: number): Kernels | null {
  if (compiled === undefined) {
    try {
      if (!wasm) throw new Error('no WebAssembly');
      compiled = new wasm.Module(assemble());
    } catch {
      compiled = null; // no WebAssembly, or no SIMD: loops everywhere
    }
  }
  if (!compiled || !wasm) return null;
  try {
    const memory = new wasm.Memory({ initial: pages, maximum: pages });
    const instance = new wasm.Instance(compiled, { env: { memory } });
    const e = instance.exports as unknown as Omit<Kernels, 'memory'>;
    return { f32: e.f32, f64: e.f64, i32: e.i32, memory: memory.buffer };
  } catch {
    return null; // too large for a WebAssembly memory: the caller uses ordinary memory
  }
}

const kindOf = (a: unknown) => (a instanceof Float32Array ? 'f32' : a instanceof Float64Array ? 'f64' : a instanceof Int32Array ? 'i32' : null);

/**
 * Scratch memory that is WebAssembly memory: a collective receives into it and sums into it in
 * place, so that a reduction step costs no copies when both operands are here, and one (through a
 * tile) when the other is the caller's array. A fixed-size memory: views of it never detach.
 */
export class Arena {
  readonly buffer: ArrayBuffer;
  private readonly k: Kernels;
  private readonly tileAt: number;

  private constructor(readonly bytes: number, k: Kernels, tileAt: number) {
    this.k = k;
    this.buffer = k.memory;
    this.tileAt = tileAt;
  }

  /** Whether arenas can be made here (WebAssembly with SIMD). */
  static available(): boolean {
    if (compiled === undefined) instantiate(1);
    return !!compiled;
  }

  /** An arena with `bytes` usable bytes, or null where WebAssembly SIMD is not available. */
  static create(bytes: number): Arena | null {
    if (compiled === null) return null;
    const tileAt = Math.ceil(bytes / 16) * 16;
    const k = instantiate(Math.ceil((tileAt + TILE_BYTES) / 65536));
    return k ? new Arena(bytes, k, tileAt) : null;
  }

  /**
   * dst[i] += src[i] for i < src.length, dst a view into this arena and src of the same type
   * anywhere. Returns false (doing nothing) for other element types.
   */
  add(dst: Summable, src: Summable): boolean {
    const kind = kindOf(dst);
    if (!kind || src.constructor !== dst.constructor || dst.buffer !== this.buffer) return false;
    const n = src.length;
    const E = dst.BYTES_PER_ELEMENT;
    const whole = n - (n % (16 / E));
    const run = this.k[kind];
    if (src.buffer === this.buffer) run(dst.byteOffset, src.byteOffset, dst.byteOffset + whole * E);
    else {
      const per = TILE_BYTES / E;
      const ctor = dst.constructor as new (b: ArrayBuffer, o: number, n: number) => Summable;
      const tile = new ctor(this.buffer, this.tileAt, per);
      for (let o = 0; o < whole; o += per) {
        const m = Math.min(per, whole - o);
        tile.set(src.subarray(o, o + m) as never);
        run(dst.byteOffset + o * E, this.tileAt, dst.byteOffset + (o + m) * E);
      }
    }
    for (let i = whole; i < n; i++) dst[i]! += src[i]!;
    return true;
  }
}

/** Arrays shorter than this are added by the plain loop (a wasm call and two copies cost more). */
const MIN_ELEMENTS = 256;

export type Summable = Float32Array | Float64Array | Int32Array;

/**
 * dst[i] += src[i] for i < src.length with SIMD, for Float32Array, Float64Array and Int32Array
 * (integers wrap, as the loop's store does). Returns false when it did nothing: another element
 * type, a short array, or no WebAssembly SIMD; the caller then runs its loop.
 */
export function addSimd(dst: Summable, src: Summable): boolean {
  const n = src.length;
  if (n < MIN_ELEMENTS || !kindOf(dst) || src.constructor !== dst.constructor) return false;
  // dst goes through one tile of a shared arena; Arena.add brings src in through its own tile.
  if (shared === undefined) shared = Arena.create(TILE_BYTES);
  if (!shared) return false;
  const ctor = dst.constructor as new (b: ArrayBuffer, o: number, n: number) => Summable;
  const per = TILE_BYTES / dst.BYTES_PER_ELEMENT;
  const d = new ctor(shared.buffer, 0, per);
  for (let o = 0; o < n; o += per) {
    const m = Math.min(per, n - o);
    const tile = d.subarray(0, m) as Summable;
    tile.set(dst.subarray(o, o + m) as never);
    shared.add(tile, src.subarray(o, o + m) as Summable);
    dst.set(tile as never, o);
  }
  return true;
}

let shared: Arena | null | undefined;
