import type { Buf } from '../dtypes.js';
import { CommUsageError } from '../errors.js';
import { addSimd } from './simd.js';

/** Reduction operators, as MPI's MPI_SUM, MPI_MAX, ... (avg divides the sum by the group size). */
export type ReduceOp = 'sum' | 'avg' | 'max' | 'min' | 'prod';
export const REDUCE_OPS: readonly ReduceOp[] = ['sum', 'avg', 'max', 'min', 'prod'];

/** Checks an operator name. */
export function checkOp(op: string): ReduceOp {
  if (!(REDUCE_OPS as readonly string[]).includes(op)) throw new CommUsageError(`unknown reduction '${op}'; expected one of ${REDUCE_OPS.join(', ')}`);
  return op as ReduceOp;
}

/** dst[i] = dst[i] (op) src[i] for i < src.length. avg accumulates as sum. */
export function reduceInto(dst: Buf, src: Buf, op: ReduceOp): void {
  const n = src.length;
  const d = dst as Float64Array;
  const s = src as Float64Array;
  switch (op) {
    case 'sum':
    case 'avg':
      if (dst instanceof Uint8Array) for (let i = 0; i < n; i++) d[i] = (d[i]! + s[i]!) & 0xff;
      else if (!addSimd(d, s)) for (let i = 0; i < n; i++) d[i]! += s[i]!;
      break;
    case 'prod':
      if (dst instanceof Uint8Array) for (let i = 0; i < n; i++) d[i] = (d[i]! * s[i]!) & 0xff;
      else if (dst instanceof Int32Array) for (let i = 0; i < n; i++) d[i] = Math.imul(d[i]!, s[i]!);
      else for (let i = 0; i < n; i++) d[i]! *= s[i]!;
      break;
    case 'max':
      for (let i = 0; i < n; i++) if (s[i]! > d[i]! || Number.isNaN(s[i]!)) d[i] = s[i]!;
      break;
    case 'min':
      for (let i = 0; i < n; i++) if (s[i]! < d[i]! || Number.isNaN(s[i]!)) d[i] = s[i]!;
      break;
  }
}

/** Finishes an average: divides by the number of contributions (integers truncate toward zero). */
export function finishAvg(buf: Buf, count: number): void {
  if (buf instanceof Float32Array || buf instanceof Float64Array) {
    const inv = 1 / count;
    for (let i = 0; i < buf.length; i++) buf[i]! *= inv;
  } else for (let i = 0; i < buf.length; i++) buf[i] = Math.trunc(buf[i]! / count);
}
