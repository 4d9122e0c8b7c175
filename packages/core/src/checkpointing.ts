import { tf } from './tf.js';
import type * as TF from '@tensorflow/tfjs-core';
import { backward, backwardInput, captureLeaves, isGradEnabled, noGrad, recordMulti, setGradEnabled, type WeightGradients } from './autograd.js';
import { AutogradError } from './errors.js';
import { SeedTape, withSeedTape } from './random.js';
import { Tensor, tidy } from './tensor.js';

/** Runs `fn` with recording on (backward may run where recording is off). */
function withGrad<T>(fn: () => T): T {
  const prev = setGradEnabled(true);
  try {
    return fn();
  } finally {
    setGradEnabled(prev);
  }
}

/**
 * Activation checkpointing, as torch.utils.checkpoint: runs `fn(...inputs)` without keeping anything
 * for backward but the inputs, and during backward runs it again with recording on and
 * backpropagates through that. It trades one more forward pass for the memory of every activation
 * inside `fn`.
 *
 * The parameters `fn` uses are found as it runs; their gradients accumulate into `.grad` as usual.
 * It works with a split backward: `backwardInput` recomputes and returns the input gradients, and
 * the weight gradients follow when that pass's `weights.run()` is called. Random operations inside
 * (dropout) draw the same seeds when recomputed, so the recomputation equals the first forward and
 * the gradients equal those without checkpointing. `fn` must be deterministic otherwise.
 */
export function checkpoint(fn: (...inputs: Tensor[]) => Tensor, ...inputs: Tensor[]): Tensor {
  if (!isGradEnabled()) return fn(...inputs);
  const tape = new SeedTape();
  const { result: y, leaves } = captureLeaves(() => noGrad(() => withSeedTape(tape, () => tidy(() => fn(...inputs)))));
  if (!(y instanceof Tensor)) throw new AutogradError(`checkpoint: the function must return one Tensor, found ${String(y)}`);
  const params = leaves.filter((l) => !inputs.includes(l));
  if (!inputs.some((x) => x.requiresGrad) && params.length === 0) return y;
  y.keep(); // its values become the node's output below; the wrapper itself is dropped
  const n = inputs.length;
  // The weight half of a split backward, between backwardInput and its weights.run().
  let pendingWeights: WeightGradients | null = null;

  const rule = (dys: TF.Tensor[], saved: TF.Tensor[], needs: boolean[]): (TF.Tensor | null)[] => {
    const none = needs.map(() => null);
    const wantInput = needs.slice(0, n);
    const wantParams = needs.slice(n).some(Boolean);
    if (pendingWeights) {
      // The weight phase of a split backward: finish what the input phase started.
      if (wantParams) pendingWeights.run();
      else pendingWeights.discard();
      pendingWeights = null;
      return none;
    }
    const xs = saved.map((s, i) => new Tensor(tf.clone(s), wantInput[i]! && s.dtype === 'float32').keep());
    const out = withGrad(() => withSeedTape(tape.replay(), () => tidy(() => fn(...xs)))).keep();
    const wanted = xs.filter((x, i) => wantInput[i] && x.requiresGrad);
    try {
      if (!out.requiresGrad) return none;
      let grads: (Tensor | null)[];
      if (wantParams || params.length === 0) {
        // One whole backward: input gradients returned, parameter gradients accumulated.
        grads = backward(out, dys[0]!, { inputs: wanted });
      } else {
        // The input phase of a split backward: the weights' part waits for the weight phase.
        const r = backwardInput(out, dys[0]!, wanted);
        pendingWeights = r.weights;
        grads = r.inputGrads;
      }
      const byInput = new Map(wanted.map((x, i) => [x, grads[i]?.keep() ?? null]));
      return needs.map((need, i) => (need && i < n ? (byInput.get(xs[i]!)?.data ?? null) : null));
    } finally {
      out.dispose();
      for (const x of xs) x.dispose();
    }
  };
  const onRelease = () => {
    pendingWeights?.discard();
    pendingWeights = null;
  };
  return recordMulti('checkpoint', [...inputs, ...params], [y.data], inputs.map((x) => x.data), rule, onRelease)[0]!;
}
