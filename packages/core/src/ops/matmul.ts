import { tf } from '../tf.js';
import type * as TF from '@tensorflow/tfjs-core';
import { GradProduct, record } from '../autograd.js';
import { kernelTraits } from '../backend.js';
import { ShapeError, fmtShape } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { tensorflowOp1 } from './native.js';
import { permute } from './permute.js';
import { broadcastShape, reshapeTo, unbroadcast } from './util.js';

/** Swaps the last two dimensions. */
function swapLast(t: TF.Tensor): TF.Tensor {
  const perm = [...Array(t.rank).keys()];
  perm[t.rank - 1] = t.rank - 2;
  perm[t.rank - 2] = t.rank - 1;
  return permute(t, perm);
}

/**
 * a @ b with either operand transposed, in the form fastest on the active backend. Where matMul with
 * a transpose flag is slow (wasm), the operand is transposed first, and since the transpose itself
 * costs as much as a small product, for matrices the side that transposes fewer elements is taken:
 * a @ b^T = (b @ a^T)^T and a^T @ b = (b^T @ a)^T (a micro-batch of rows against a large weight).
 */
export function mm(a: TF.Tensor, b: TF.Tensor, transA = false, transB = false): TF.Tensor {
  if (!(transA || transB) || kernelTraits().transposeFlags) return tf.matMul(a, b, transA, transB);
  if (a.rank === 2 && b.rank === 2 && transA !== transB) {
    if (transB) {
      const [m, k] = a.shape as [number, number];
      const n = b.shape[0]!;
      if (m * k + m * n < n * k) return tf.tidy(() => tf.transpose(tf.matMul(b, tf.transpose(a))));
    } else {
      const [k, m] = a.shape as [number, number];
      const n = b.shape[1]!;
      if (k * n + n * m < k * m) return tf.tidy(() => tf.transpose(tf.matMul(tf.transpose(b), a)));
    }
  }
  return tf.matMul(transA ? swapLast(a) : a, transB ? swapLast(b) : b);
}

// Products stay with tfjs's matMul (BatchMatMul): TensorFlow's 2-D MatMul op run by name would spare
// its reshapes to 3-D, but mixed into training steps it corrupted the heap under the V8 profiler's
// signals (tfjs-node 4.22 with TensorFlow 2.21; docs/benchmarks.md), and BatchMatMul did not.

/** x + bias over the last dimension (TensorFlow's BiasAdd where it can be run, else a broadcast add). */
export function addBias(x: TF.Tensor, bias: TF.Tensor): TF.Tensor {
  return kernelTraits().tensorflowOps ? tensorflowOp1('BiasAdd', [x, bias], { data_format: 'NHWC' }) : tf.add(x, bias);
}

/**
 * The gradient of a bias added over the last dimension: dy summed over every other one. On
 * tensorflow its BiasAddGrad; elsewhere a row of ones times dy as a matrix, which wasm's matrix
 * product does many times faster than its sum over leading axes.
 */
export function biasGrad(dy: TF.Tensor): TF.Tensor {
  if (kernelTraits().tensorflowOps) return tensorflowOp1('BiasAddGrad', [dy], { data_format: 'NHWC' });
  const c = dy.shape[dy.rank - 1]!;
  const rows = dy.size / c;
  return tf.tidy(() => tf.reshape(tf.matMul(tf.ones([1, rows]), tf.reshape(dy, [rows, c])), [c]));
}

/** Matrix product of the last two dimensions, with batch dimensions broadcast. */
export function matmul(a: Tensor, b: Tensor): Tensor {
  const sa = a.shape;
  const sb = b.shape;
  if (sa.length < 2 || sb.length < 2 || sa[sa.length - 1] !== sb[sb.length - 2]) {
    throw new ShapeError(`matmul: cannot multiply ${fmtShape(sa)} by ${fmtShape(sb)} (inner dimensions must match)`);
  }
  broadcastShape('matmul (batch dimensions)', sa.slice(0, -2), sb.slice(0, -2));
  const y = tf.matMul(a.data, b.data);
  return record('matmul', [a, b], y, [a.data, b.data], (dy, [x, w], needs) => [
    needs[0] ? unbroadcast(mm(dy, w!, false, true), sa) : null,
    needs[1] ? unbroadcast(mm(x!, dy, true, false), sb) : null,
  ]);
}

/** lhs^T @ rhs. */
const transposedProduct = (lhs: TF.Tensor, rhs: TF.Tensor): TF.Tensor => mm(lhs, rhs, true, false);

/**
 * x @ w + b over the last dimension of x (any leading dimensions), as one fused kernel.
 * w has shape [in, out] so that the forward pass needs no transpose; with `transposed`, w has shape
 * [out, in] and x @ w^T + b is computed (an output head that shares the input embedding's table).
 */
export function linear(x: Tensor, w: Tensor, b?: Tensor | null, opts: { transposed?: boolean } = {}): Tensor {
  const sx = x.shape;
  const t = opts.transposed ?? false;
  const [inF, outF] = (t ? [w.shape[1], w.shape[0]] : w.shape) as [number, number];
  if (w.rank !== 2 || sx[sx.length - 1] !== inF) {
    throw new ShapeError(`linear: input of shape ${fmtShape(sx)} does not fit a ${t ? 'transposed ' : ''}weight of shape ${fmtShape(w.shape)} (expected last dimension ${inF})`);
  }
  if (b && (b.rank !== 1 || b.shape[0] !== outF)) {
    throw new ShapeError(`linear: bias of shape ${fmtShape(b.shape)}, expected [${outF}]`);
  }
  const lead = sx.slice(0, -1);
  const rows = lead.reduce((p, q) => p * q, 1);
  const y = tf.tidy(() => {
    const x2 = reshapeTo(x.data, [rows, inF]);
    // tfjs-node's fused matMul is a BatchMatMul on operands reshaped to 3-D and a broadcast Add (two
    // reshapes and an add per call); there a 2-D product and TensorFlow's BiasAdd are fewer ops.
    const fused = !t && !kernelTraits().tensorflowOps;
    const out = fused
      ? tf.fused.matMul({ a: x2 as TF.Tensor2D, b: w.data as TF.Tensor2D, bias: b?.data })
      : b ? addBias(mm(x2, w.data, false, t), b.data) : mm(x2, w.data, false, t);
    return reshapeTo(out, [...lead, outF]);
  });
  const inputs = b ? [x, w, b] : [x, w];
  return record('linear', inputs, y, [x.data, w.data], (dy, [sxv, sw], needs) => {
    const dy2 = reshapeTo(dy, [rows, outF]);
    const x2 = reshapeTo(sxv!, [rows, inF]);
    return [
      needs[0] ? reshapeTo(t ? mm(dy2, sw!) : mm(dy2, sw!, false, true), sx) : null,
      // x^T dy (dy^T x when transposed), computed at once or, into a parameter that defers its
      // products, summed over micro-batches in one product (GradProduct).
      needs[1] ? (t ? new GradProduct(dy2, x2, transposedProduct) : new GradProduct(x2, dy2, transposedProduct)) : null,
      needs[2] ? biasGrad(dy2) : null,
    ];
  });
}
