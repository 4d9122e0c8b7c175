import { fromTf, tf, type Parameter } from '@hpdl/core';
import type { Communicator, Request } from '@hpdl/comm';
import type { Action, ScheduleTable } from './ir.js';
import { key } from './ir.js';
import type { Stage } from './partition.js';

/** One bucket's reduction in flight, and when it ran (for traces). */
export interface Reduction {
  stage: number;
  params: Parameter[];
  flat: Float32Array;
  request: Request<Float32Array>;
  start: number;
  end: number;
}

/**
 * Averages gradients among data-parallel replicas while backward is still running, as DDP's
 * buckets: each stage of this rank is a bucket, reduced (non-blocking) as soon as the last action
 * that adds to its weight gradients in this step has run; stages complete in the table's order, the
 * last stage's first (reverse layer order), the same on every replica. A parameter several stages
 * of this rank share goes with the stage that completes last.
 */
export class GradBuckets {
  /** Actions that add weight gradients still to run, per stage of this rank. */
  private readonly left = new Map<number, number>();
  private readonly buckets = new Map<number, Parameter[]>();
  readonly reductions: Reduction[] = [];

  constructor(
    actions: readonly Action[],
    stages: ReadonlyMap<number, Stage>,
    /** (stage, micro-batch) pairs whose weight gradients come at W rather than at B. */
    private readonly split: ReadonlySet<string>,
    private readonly dp: Communicator,
    private readonly now: () => number,
  ) {
    const last = new Map<number, number>();
    actions.forEach((a, i) => {
      if (this.addsWeightGrads(a)) {
        last.set(a.stage, i);
        this.left.set(a.stage, (this.left.get(a.stage) ?? 0) + 1);
      }
    });
    const owner = new Map<Parameter, number>();
    for (const [s, st] of stages) {
      for (const p of st.parameters()) {
        const o = owner.get(p);
        if (o == null || (last.get(s) ?? -1) > (last.get(o) ?? -1)) owner.set(p, s);
      }
    }
    for (const [p, s] of owner) this.buckets.set(s, [...(this.buckets.get(s) ?? []), p]);
  }

  private addsWeightGrads(a: Action): boolean {
    return a.op === 'W' || (a.op === 'B' && !this.split.has(key(a.stage, a.mb)));
  }

  /** Called after each action of the step: starts the reduction of a bucket that became final. */
  after(a: Action): void {
    if (!this.addsWeightGrads(a)) return;
    const n = this.left.get(a.stage)! - 1;
    this.left.set(a.stage, n);
    if (n > 0) return;
    const params = this.buckets.get(a.stage);
    if (!params?.length) return;
    const flat = flatten(params);
    const r: Reduction = { stage: a.stage, params, flat, request: this.dp.iallreduce(flat, 'avg'), start: this.now(), end: 0 };
    r.request.wait().then(
      () => (r.end = this.now()),
      () => {},
    );
    this.reductions.push(r);
  }

  /** Waits for every reduction and puts the averaged gradients in place. */
  async finish(): Promise<void> {
    for (const r of this.reductions) {
      await r.request.wait();
      unflatten(r.params, r.flat);
    }
  }
}

/** The gradients of `params` in one buffer (zeros for a parameter without one). */
export function flatten(params: Parameter[]): Float32Array {
  const flat = new Float32Array(params.reduce((a, p) => a + p.size, 0));
  let at = 0;
  for (const p of params) {
    if (p.grad) flat.set(p.grad.dataSync() as Float32Array, at);
    at += p.size;
  }
  return flat;
}

/** Sets every parameter's gradient from its part of `flat`. */
export function unflatten(params: Parameter[], flat: Float32Array): void {
  let at = 0;
  for (const p of params) {
    const g = tf.tensor(flat.subarray(at, at + p.size), p.shape);
    p.clearGrad();
    p.grad = fromTf(g).keep();
    at += p.size;
  }
}
