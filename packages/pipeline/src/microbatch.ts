import { Tensor, fromTf, tf } from '@hpdl/core';
import { PipelineError } from './errors.js';

/** One micro-batch: what stage 0 takes and what the loss compares against (each where needed). */
export interface Microbatch {
  input?: Tensor;
  target?: Tensor;
}

/** Sizes of `m` nearly equal parts of `n` (the first n % m parts one larger), as numpy's array_split. */
export function splitSizes(n: number, m: number): number[] {
  if (!Number.isInteger(m) || m < 1) throw new PipelineError(`the number of micro-batches must be a positive integer, found ${m}`);
  if (n < m) throw new PipelineError(`a batch of ${n} sample${n === 1 ? '' : 's'} cannot be cut into ${m} micro-batches: use at most ${n} micro-batches or a larger batch`);
  const base = Math.floor(n / m);
  return Array.from({ length: m }, (_, i) => base + (i < n % m ? 1 : 0));
}

/** Cuts a tensor along its first dimension into `m` nearly equal new tensors (the caller disposes them). */
export function splitBatch(t: Tensor, m: number): Tensor[] {
  const n = t.shape[0];
  if (n == null) throw new PipelineError(`cannot cut a scalar into micro-batches: the batch dimension must be the first`);
  const sizes = splitSizes(n, m);
  return tf.split(t.data, sizes, 0).map((d) => fromTf(d));
}

/**
 * Cuts a batch into micro-batches. Batches that do not divide evenly give parts differing by one
 * sample; the loss of each part is weighted by its size, so a step still equals a full-batch step.
 */
export function microbatches(input: Tensor | undefined, target: Tensor | undefined, m: number): Microbatch[] {
  if (input && target && input.shape[0] !== target.shape[0]) {
    throw new PipelineError(`input and target disagree on the batch size: input shape [${input.shape}], target shape [${target.shape}]`);
  }
  const xs = input ? splitBatch(input, m) : undefined;
  const ys = target ? splitBatch(target, m) : undefined;
  return Array.from({ length: m }, (_, i) => ({ input: xs?.[i], target: ys?.[i] }));
}
