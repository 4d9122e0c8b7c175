import { tf } from './tf.js';
import type * as TF from '@tensorflow/tfjs-core';
import type { Node } from './autograd.js';
import { AutogradError } from './errors.js';

/** Element types a Tensor can hold (those of TensorFlow.js). */
export type DType = 'float32' | 'int32' | 'bool';

/** A nested array or typed array accepted by `tensor()`. */
export type TensorLike = TF.TensorLike;

// Scopes opened by `tidy`: every Tensor created inside is disposed at the end unless returned or kept.
const scopes: Set<Tensor>[] = [];

/**
 * A tensor that records the operations applied to it (define-by-run), so that gradients flow back
 * through them. It owns one TensorFlow.js tensor, `data`, which must be disposed: use `tidy` or
 * `dispose()`.
 */
export class Tensor {
  /** The values; owned by this Tensor. */
  data: TF.Tensor;
  /** Whether gradients are computed for this tensor. */
  requiresGrad: boolean;
  /** The operation that produced this tensor, or null for a leaf. */
  gradFn: Node | null;
  /**
   * Whether weight gradients given as products (`lhs^T @ rhs`, as a linear layer's) are kept as
   * their factors and summed in one product when `.grad` is read: gradients accumulated over several
   * micro-batches then cost one product over all their rows instead of one product and one addition
   * each. Off by default; the pipeline turns it on where it is faster (see kernelTraits).
   */
  deferGradProducts = false;
  /** Which output of `gradFn` this is (operations with several outputs). */
  outputIndex = 0;
  /** Optional name (parameters carry their path in the module tree). */
  name?: string;
  private storedGrad: Tensor | null = null;
  private pending: PendingProducts | null = null;

  constructor(data: TF.Tensor, requiresGrad = false, gradFn: Node | null = null) {
    this.data = data;
    this.requiresGrad = requiresGrad;
    this.gradFn = gradFn;
    scopes[scopes.length - 1]?.add(this);
  }

  /** Accumulated gradient of a leaf (after backward); deferred products are summed in when read. */
  get grad(): Tensor | null {
    if (this.pending) this.sumPending();
    return this.storedGrad;
  }
  set grad(g: Tensor | null) {
    this.dropPending();
    this.storedGrad = g;
  }

  /** Disposes the gradient, and any deferred products, without computing them. */
  clearGrad(): void {
    this.dropPending();
    this.storedGrad?.dispose();
    this.storedGrad = null;
  }

  /** @internal The gradient as it is, without summing deferred products into it. */
  peekGrad(): Tensor | null {
    return this.storedGrad;
  }

  /** Whether deferred gradient products wait to be summed into `.grad`. */
  get hasPendingGrad(): boolean {
    return this.pending != null;
  }

  /** @internal Adds `lhs^T @ rhs` to the gradient later (autograd, for deferGradProducts). Takes the factors. */
  deferGradProduct(lhs: TF.Tensor, rhs: TF.Tensor, multiply: PendingProducts['multiply']): void {
    if (this.pending) {
      this.pending.lhs.push(lhs);
      this.pending.rhs.push(rhs);
    } else this.pending = { lhs: [lhs], rhs: [rhs], multiply };
  }

  private sumPending(): void {
    const p = this.pending!;
    this.pending = null;
    const prev = this.storedGrad;
    const sum = tf.tidy(() => {
      const cat = (ts: TF.Tensor[]) => (ts.length === 1 ? ts[0]! : tf.concat(ts, 0));
      const product = p.multiply(cat(p.lhs), cat(p.rhs));
      return prev ? tf.add(prev.data, product) : product;
    });
    for (const t of [...p.lhs, ...p.rhs]) t.dispose();
    tf.keep(sum);
    if (prev) {
      prev.data.dispose();
      prev.data = sum;
    } else this.storedGrad = new Tensor(sum).keep();
  }

  private dropPending(): void {
    if (!this.pending) return;
    for (const t of [...this.pending.lhs, ...this.pending.rhs]) t.dispose();
    this.pending = null;
  }

  /** The shape, as a fresh array. */
  get shape(): number[] {
    return this.data.shape.slice();
  }
  /** The number of dimensions. */
  get rank(): number {
    return this.data.rank;
  }
  /** The number of elements. */
  get size(): number {
    return this.data.size;
  }
  /** The element type. */
  get dtype(): DType {
    return this.data.dtype as DType;
  }
  /** Whether this tensor was created by the user rather than by an operation. */
  get isLeaf(): boolean {
    return this.gradFn == null;
  }
  /** Whether `dispose` has been called. */
  get isDisposed(): boolean {
    return this.data.isDisposed;
  }

  /** Values as a flat typed array (synchronous download). */
  dataSync(): Float32Array | Int32Array | Uint8Array {
    return this.data.dataSync() as Float32Array | Int32Array | Uint8Array;
  }
  /** Values as a flat typed array. */
  async values(): Promise<Float32Array | Int32Array | Uint8Array> {
    return (await this.data.data()) as Float32Array | Int32Array | Uint8Array;
  }
  /** Values as nested arrays. */
  arraySync(): unknown {
    return this.data.arraySync();
  }
  /** The single value of a tensor with one element. */
  item(): number {
    if (this.size !== 1) throw new AutogradError(`item() needs a tensor with one element, found shape [${this.shape}]`);
    return this.data.dataSync()[0] as number;
  }

  /** Backpropagates from this scalar (or from it with `gradient`), accumulating leaves' `.grad`. */
  backward(gradient?: Tensor | TF.Tensor, opts: { retainGraph?: boolean } = {}): void {
    // Resolved lazily to keep tensor.ts free of a load-order cycle with autograd.ts.
    backwardHook!([this], gradient == null ? undefined : [gradient], { retainGraph: opts.retainGraph });
  }

  /** A new leaf with the same values and no history. */
  detach(): Tensor {
    return new Tensor(tf.clone(this.data), false);
  }

  /** Sets requiresGrad on a leaf and returns it. */
  requireGrad(flag = true): this {
    if (!this.isLeaf && !flag) throw new AutogradError('requireGrad(false) on a non-leaf tensor: use detach()');
    this.requiresGrad = flag;
    return this;
  }

  /** Frees the values (and the gradient); the Tensor must not be used afterwards. */
  dispose(): void {
    this.data.dispose();
    this.clearGrad();
    for (const s of scopes) s.delete(this);
  }

  /** Removes this tensor from the enclosing `tidy` scopes, so it outlives them. */
  keep(): this {
    for (const s of scopes) s.delete(this);
    return this;
  }

  toString(): string {
    return `Tensor(shape=[${this.shape}], dtype=${this.dtype}${this.requiresGrad ? ', requiresGrad' : ''})`;
  }
}

/** Factors of deferred weight-gradient products: the gradient is `multiply(cat(lhs), cat(rhs))`, rows concatenated. */
interface PendingProducts {
  lhs: TF.Tensor[];
  rhs: TF.Tensor[];
  multiply: (lhs: TF.Tensor, rhs: TF.Tensor) => TF.Tensor;
}

type BackwardHook = (
  outputs: Tensor[],
  gradients: (Tensor | TF.Tensor)[] | undefined,
  opts: { retainGraph?: boolean },
) => void;
let backwardHook: BackwardHook | null = null;
/** @internal Installed by autograd.ts. */
export function installBackward(hook: BackwardHook): void {
  backwardHook = hook;
}

function collect(value: unknown, out: Set<Tensor>, seen: Set<unknown>): void {
  if (value instanceof Tensor) {
    out.add(value);
    const g = value.peekGrad();
    if (g) out.add(g);
    return;
  }
  if (value == null || typeof value !== 'object' || seen.has(value)) return;
  seen.add(value);
  if (Array.isArray(value)) for (const v of value) collect(v, out, seen);
  else if (value instanceof Map) for (const v of value.values()) collect(v, out, seen);
  else if (Object.getPrototypeOf(value) === Object.prototype) for (const v of Object.values(value)) collect(v, out, seen);
}

/**
 * Runs `fn` and disposes every Tensor created inside it, except those it returns (found in arrays,
 * maps and plain objects) and those `keep()` was called on. The graph for backward is unaffected:
 * what backward needs is held by the graph itself. Raw TensorFlow.js calls need their own `tf.tidy`.
 */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Tensor>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
    if (result instanceof Promise) throw new AutogradError('tidy() cannot run an async function');
  } catch (e) {
    scopes.pop();
    for (const t of scope) t.dispose();
    throw e;
  }
  scopes.pop();
  const keep = new Set<Tensor>();
  collect(result, keep, new Set());
  const parent = scopes[scopes.length - 1];
  for (const t of scope) {
    if (keep.has(t)) parent?.add(t);
    else t.dispose();
  }
  return result;
}

/** Creates a leaf tensor from values. */
export function tensor(values: TensorLike, shape?: number[], dtype: DType = 'float32'): Tensor {
  return new Tensor(tf.tensor(values, shape, dtype));
}

/** Wraps a TensorFlow.js tensor (taking ownership) as a leaf. */
export function fromTf(t: TF.Tensor, requiresGrad = false): Tensor {
  return new Tensor(t, requiresGrad);
}

/** A tensor of zeros. */
export function zeros(shape: number[], dtype: DType = 'float32'): Tensor {
  return new Tensor(tf.zeros(shape, dtype));
}

/** A tensor of ones. */
export function ones(shape: number[], dtype: DType = 'float32'): Tensor {
  return new Tensor(tf.ones(shape, dtype));
}

/** A tensor filled with one value. */
export function full(shape: number[], value: number, dtype: DType = 'float32'): Tensor {
  return new Tensor(tf.fill(shape, value, dtype));
}

/** Integers [start, stop) as an int32 tensor. */
export function arange(start: number, stop: number, step = 1): Tensor {
  return new Tensor(tf.range(start, stop, step, 'int32'));
}

/** The number of live TensorFlow.js tensors (for leak checks). */
export function liveTensors(): number {
  return tf.memory().numTensors;
}
