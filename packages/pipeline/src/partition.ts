import { Module, Sequential, Tensor, backward, noGrad, tf, tidy, tensor, type DType } from '@hpdl/core';
import { PartitionError } from './errors.js';

/** How to split layers into stages. */
export type Balance =
  /** Layer counts per stage, in order. */
  | number[]
  /** Contiguous stages of about equal parameter count. */
  | 'params'
  /** About equal layer counts. */
  | 'layers'
  /** Profiled forward + backward time per layer on `sample` (torchgpipe's balance_by_time). */
  | { by: 'time'; sample: Tensor; repeats?: number }
  /** Profiled memory per layer on `sample`: activations kept for backward plus `paramScale` x parameters (torchgpipe's balance_by_size). */
  | { by: 'size'; sample: Tensor; paramScale?: number };

/** A description of an input: a tensor, or its shape and element type. */
export type InputSpec = Tensor | { shape: number[]; dtype?: DType };

/** The layers of a model: a Sequential's children, or a list of modules. */
export function layersOf(model: Module | Module[]): Module[] {
  if (Array.isArray(model)) return model;
  if (model instanceof Sequential) return model.layers;
  throw new PartitionError(`cannot split a ${model.constructor.name} into stages: pass a Sequential or an ordered list of modules`);
}

/**
 * Splits weights into `parts` contiguous non-empty runs minimising the largest run's sum (the
 * linear partition problem, solved exactly by dynamic programming). Returns the run lengths. With a
 * `placement` that puts several stages on one rank (interleaved, V), the largest sum over a rank's
 * stages is minimised instead (exact search with pruning).
 */
export function splitBalanced(weights: number[], parts: number, placement?: readonly number[]): number[] {
  const n = weights.length;
  checkStageCount(n, parts);
  if (placement && new Set(placement).size < placement.length) return splitForRanks(weights, parts, placement);
  const pre = [0];
  for (const w of weights) pre.push(pre.at(-1)! + Math.max(0, w));
  const sum = (i: number, j: number) => pre[j]! - pre[i]!;
  // best[k][j]: the smallest possible largest run when the first j weights form k runs.
  const best = Array.from({ length: parts + 1 }, () => new Array<number>(n + 1).fill(Infinity));
  const cut = Array.from({ length: parts + 1 }, () => new Array<number>(n + 1).fill(0));
  best[0]![0] = 0;
  for (let k = 1; k <= parts; k++) {
    for (let j = k; j <= n - (parts - k); j++) {
      for (let i = k - 1; i < j; i++) {
        const v = Math.max(best[k - 1]![i]!, sum(i, j));
        // Ties go to the later cut, which keeps earlier stages lighter (stage 0 also feeds the data).
        if (v <= best[k]![j]!) {
          best[k]![j] = v;
          cut[k]![j] = i;
        }
      }
    }
  }
  const counts: number[] = [];
  let j = n;
  for (let k = parts; k > 0; k--) {
    const i = cut[k]![j]!;
    counts.unshift(j - i);
    j = i;
  }
  return counts;
}

/**
 * The contiguous split whose busiest rank (the sum over the stages `placement` gives it) is lightest,
 * by depth-first search over the cuts, pruned by the best split found so far. Ties go to the split
 * found first, which puts more layers in earlier stages.
 */
function splitForRanks(weights: number[], parts: number, placement: readonly number[]): number[] {
  const n = weights.length;
  const w = weights.map((x) => Math.max(0, x));
  const pre = [0];
  for (const x of w) pre.push(pre.at(-1)! + x);
  const ranks = Math.max(...placement) + 1;
  const load = new Array<number>(ranks).fill(0);
  const counts: number[] = [];
  let best = Infinity;
  let bestCounts = splitBalanced(weights, parts);
  const visit = (stage: number, at: number, worst: number) => {
    if (worst >= best) return;
    if (stage === parts - 1) {
      const r = placement[stage]!;
      const total = Math.max(worst, load[r]! + pre[n]! - pre[at]!);
      if (total < best) {
        best = total;
        bestCounts = [...counts, n - at];
      }
      return;
    }
    const r = placement[stage]!;
    // Leave at least one layer for each later stage; try the longest run first.
    for (let end = n - (parts - stage - 1); end > at; end--) {
      const add = pre[end]! - pre[at]!;
      load[r]! += add;
      counts.push(end - at);
      visit(stage + 1, end, Math.max(worst, load[r]!));
      counts.pop();
      load[r]! -= add;
    }
  };
  visit(0, 0, 0);
  return bestCounts;
}

function checkStageCount(layers: number, stages: number): void {
  if (!Number.isInteger(stages) || stages < 1) throw new PartitionError(`the number of stages must be a positive integer, found ${stages}`);
  if (stages > layers) {
    throw new PartitionError(`cannot split ${layers} layer${layers === 1 ? '' : 's'} into ${stages} stages: every stage needs at least one layer (use at most ${layers} stages, or a model with more layers)`);
  }
}

/** Checks explicit layer counts against the model. */
export function checkCounts(counts: number[], layers: number, stages: number): void {
  checkStageCount(layers, stages);
  if (counts.length !== stages) throw new PartitionError(`balance lists ${counts.length} stages (${counts.join(', ')}), the pipeline has ${stages}`);
  counts.forEach((c, i) => {
    if (!Number.isInteger(c) || c < 0) throw new PartitionError(`balance: stage ${i} has ${c} layers; counts must be non-negative integers`);
    if (c === 0) throw new PartitionError(`balance [${counts.join(', ')}]: stage ${i} would be empty; every stage needs at least one layer`);
  });
  const total = counts.reduce((a, b) => a + b, 0);
  if (total !== layers) throw new PartitionError(`balance [${counts.join(', ')}] covers ${total} layers, the model has ${layers}`);
}

/** Layer counts giving each stage (each rank, with a placement) about the same number of parameters. */
export function balanceByParams(layers: Module[], stages: number, placement?: readonly number[]): number[] {
  return splitBalanced(layers.map((l) => l.numParameters()), stages, placement);
}

/** Layer counts giving each stage (each rank, with a placement) about the same number of layers. */
export function balanceByLayers(layers: Module[], stages: number, placement?: readonly number[]): number[] {
  return splitBalanced(layers.map(() => 1), stages, placement);
}

function sampleOf(spec: InputSpec): Tensor {
  if (spec instanceof Tensor) return spec.detach();
  const dtype = spec.dtype ?? 'float32';
  const n = spec.shape.reduce((a, b) => a * b, 1);
  return tensor(dtype === 'float32' ? new Float32Array(n).fill(0.1) : new Int32Array(n), spec.shape, dtype);
}

function timeLayer(layer: Module, x: Tensor, repeats: number): number {
  const times: number[] = [];
  for (let i = 0; i <= repeats; i++) {
    const t0 = performance.now();
    tidy(() => {
      const xi = x.dtype === 'float32' ? x.detach().requireGrad() : x.detach();
      const y = layer.forward(xi);
      const g = tf.onesLike(y.data);
      backward(y, g);
      g.dispose();
    });
    if (i > 0) times.push(performance.now() - t0);
  }
  layer.zeroGrad();
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

/** Runs `sample` through every layer, calling `each(layer, input)` on the way; returns nothing kept. */
function walk(layers: Module[], spec: InputSpec, each: (layer: Module, x: Tensor, i: number) => void): void {
  let x = sampleOf(spec);
  layers.forEach((layer, i) => {
    each(layer, x, i);
    const y = noGrad(() => tidy(() => layer.forward(x)));
    x.dispose();
    x = y;
  });
  x.dispose();
}

/** Layer counts from profiled forward + backward time of each layer on `sample` (median of `repeats`). */
export function balanceByTime(layers: Module[], stages: number, sample: InputSpec, repeats = 3, placement?: readonly number[]): number[] {
  checkStageCount(layers.length, stages);
  const times: number[] = [];
  walk(layers, sample, (layer, x) => times.push(timeLayer(layer, x, repeats)));
  return splitBalanced(times, stages, placement);
}

/** Layer counts from profiled memory: bytes each layer keeps for backward (and its output) plus paramScale x its parameters. */
export function balanceBySize(layers: Module[], stages: number, sample: InputSpec, paramScale = 2, placement?: readonly number[]): number[] {
  checkStageCount(layers.length, stages);
  const sizes: number[] = [];
  walk(layers, sample, (layer, x) => {
    const xi = x.dtype === 'float32' ? x.detach().requireGrad() : x.detach();
    const before = tf.memory().numBytes;
    const y = layer.forward(xi);
    const kept = tf.memory().numBytes - before;
    const g = tf.onesLike(y.data);
    backward(y, g);
    g.dispose();
    y.dispose();
    xi.dispose();
    layer.zeroGrad();
    sizes.push(kept + paramScale * layer.parameters().reduce((a, p) => a + p.size * 4, 0));
  });
  return splitBalanced(sizes, stages, placement);
}

/** Resolves a Balance to layer counts; with a placement, the load of each rank is balanced. */
export function resolveBalance(layers: Module[], stages: number, balance: Balance = 'params', placement?: readonly number[]): number[] {
  let counts: number[];
  if (Array.isArray(balance)) counts = balance;
  else if (balance === 'params') counts = balanceByParams(layers, stages, placement);
  else if (balance === 'layers') counts = balanceByLayers(layers, stages, placement);
  else if (typeof balance === 'object' && balance.by === 'time') counts = balanceByTime(layers, stages, balance.sample, balance.repeats, placement);
  else if (typeof balance === 'object' && balance.by === 'size') counts = balanceBySize(layers, stages, balance.sample, balance.paramScale, placement);
  else throw new PartitionError(`unknown balance ${JSON.stringify(balance)}: use layer counts, 'params', 'layers', {by: 'time', sample} or {by: 'size', sample}`);
  checkCounts(counts, layers.length, stages);
  return counts;
}

/**
 * One pipeline stage: a run of the model's layers, named as in the whole model ('3.weight' stays
 * '3.weight'), so that stage state dicts and the full model's agree.
 */
export class Stage extends Module {
  constructor(
    /** Index of this stage. */
    readonly index: number,
    /** Index in the whole model of the first layer. */
    readonly first: number,
    readonly layers: Module[],
  ) {
    super();
  }
  override namedChildren(): [string, Module][] {
    return this.layers.map((m, i) => [String(this.first + i), m]);
  }
  forward(x: Tensor): Tensor {
    let h = x;
    for (const m of this.layers) h = m.forward(h);
    return h;
  }
  /** Layer indices in the whole model, as 'first-last'. */
  get span(): string {
    const last = this.first + this.layers.length - 1;
    return last === this.first ? `layer ${this.first}` : `layers ${this.first}-${last}`;
  }
}

/**
 * Several stages held by one rank, as one module: parameters and buffers keep their names in the
 * whole model, so checkpoints of it are slices of the model's.
 */
export class StageGroup extends Module {
  constructor(readonly stages: Stage[]) {
    super();
  }
  override namedChildren(): [string, Module][] {
    return this.stages.flatMap((s) => s.namedChildren());
  }
  /** Runs the stages in order (meaningful when they are consecutive). */
  forward(x: Tensor): Tensor {
    let h = x;
    for (const s of this.stages) h = s.forward(h);
    return h;
  }
}

/** Cuts layers into stages of the given counts. */
export function partition(layers: Module[], counts: number[]): Stage[] {
  checkCounts(counts, layers.length, counts.length);
  const out: Stage[] = [];
  let at = 0;
  counts.forEach((c, i) => {
    out.push(new Stage(i, at, layers.slice(at, at + c)));
    at += c;
  });
  return out;
}

const fmt = (s: number[]) => `[${s.join(', ')}]`;

/**
 * Runs one sample through the stages in order (no gradients) and returns each stage's output shape;
 * a stage that cannot take what the previous one gives is a PartitionError naming both.
 */
export function checkChain(stages: Stage[], input: InputSpec): number[][] {
  const shapes: number[][] = [];
  let x = sampleOf(input);
  try {
    for (const st of stages) {
      let y: Tensor;
      try {
        y = noGrad(() => tidy(() => st.forward(x)));
      } catch (e) {
        const from = st.index === 0 ? `the input (shape ${fmt(x.shape)}, ${x.dtype})` : `the output of stage ${st.index - 1} (shape ${fmt(x.shape)}, ${x.dtype})`;
        throw new PartitionError(`stage ${st.index} (${st.span}) cannot take ${from}: ${(e as Error).message}`);
      }
      x.dispose();
      x = y;
      shapes.push(y.shape);
    }
  } finally {
    x.dispose();
  }
  return shapes;
}
