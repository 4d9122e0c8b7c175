import {
  Module,
  Tensor,
  backward,
  backwardInput,
  manualSeed,
  noGrad,
  scale,
  tf,
  tidy,
  fromTf,
  type Optimizer,
  type Parameter,
  type WeightGradients,
} from '@hpdl/core';
import type * as TF from '@tensorflow/tfjs-core';
import { PeerLostError, type Communicator, type Request } from '@hpdl/comm';
import { PipelineError, StageError } from './errors.js';
import { formatAction, key, splitBackward, withCommunication, type Action, type ScheduleFn, type ScheduleTable } from './ir.js';
import { microbatches, type Microbatch } from './microbatch.js';
import { StageGroup, checkChain, layersOf, partition, resolveBalance, type Balance, type InputSpec, type Stage } from './partition.js';
import { forwardOnly, getSchedule } from './schedules.js';
import type { TraceEvent } from './trace.js';
import { validate } from './validate.js';

/** Options of `Pipeline.create`. */
export interface PipelineOptions {
  /** A communicator holding every rank of the job (usually the World from `init()`). */
  comm: Communicator;
  /** Builds the whole model (a Sequential or an ordered list of modules); called on every rank. */
  model: () => Module | Module[];
  /** Seeds the generator before `model()` so that every rank builds the same weights. */
  seed?: number;
  /** How layers are split into stages (default 'params'). */
  balance?: Balance;
  /** A registered schedule's name, a schedule function, or a fixed table (default '1f1b'). */
  schedule?: string | ScheduleFn | ScheduleTable;
  /** Micro-batches per step (the default for `step` when a whole batch is given). */
  microbatches: number;
  /** Stages per rank (interleaved schedules; default 1). */
  stagesPerRank?: number;
  /** Data-parallel replicas of the pipeline (default 1); the pipeline has comm.size / dataParallel ranks. */
  dataParallel?: number;
  /** The loss of one micro-batch, reduced by mean (as crossEntropy and mseLoss by default). */
  loss?: (output: Tensor, target: Tensor) => Tensor;
  /** Makes the optimizer over this rank's parameters; needed for `step`. */
  optimizer?: (params: Parameter[]) => Optimizer;
  /** One micro-batch's input (or its shape and dtype): stages are checked to chain before training. */
  sampleInput?: InputSpec;
  /** Record every action's time (see `takeTrace`). */
  trace?: boolean;
  /** Called before each action; for progress displays and fault-injection tests. */
  beforeAction?: (action: Action, info: { step: number; rank: number }) => void;
}

/** What a step returns. */
export interface StepResult {
  /** The batch's mean loss (averaged over replicas), on every rank; NaN in forward-only runs. */
  loss: number;
  /** Micro-batches in this step. */
  microbatches: number;
}

/** Counters since creation (or `resetStats`). */
export interface PipelineStats {
  /** Most micro-batches held between their F and B at once on this rank. */
  peakStash: number;
  /** Most micro-batches held between their B and W at once on this rank. */
  peakPendingW: number;
  /** Steps run. */
  steps: number;
}

const TAG_SPAN = 65536;
const tagOf = (dir: 0 | 1, stage: number, mb: number) => (stage * 2 + dir) * TAG_SPAN + mb;

interface StepState {
  mbs: Microbatch[];
  training: boolean;
  split: Set<string>;
  weightOf: number[];
  inputs: Map<string, Tensor>;
  outputs: Map<string, Tensor>;
  grads: Map<string, Tensor>;
  dx: Map<string, Tensor>;
  wpending: Map<string, WeightGradients>;
  sends: Request<void>[];
  lossSum: number;
  results: Tensor[];
  stash: number;
}

/** Meta travelling with every activation and gradient. */
interface Meta {
  shape: number[];
  m: number;
}

/**
 * One rank's part of a pipeline: its stages, its schedule, and the communicators to its neighbours
 * and data-parallel replicas. Every rank of the job creates one with the same options.
 */
export class Pipeline {
  /** Stages held here, by stage index. */
  readonly stages: Map<number, Stage>;
  /** This rank's stages as one module (for checkpoints: names as in the whole model). */
  readonly module: StageGroup;
  /** Every stage's layer counts (the partition). */
  readonly counts: number[];
  /** Output shape of every stage for `sampleInput`, when given. */
  readonly shapes: number[][] | null;
  readonly optimizer: Optimizer | null;
  readonly stats: PipelineStats = { peakStash: 0, peakPendingW: 0, steps: 0 };
  private readonly tables = new Map<string, ScheduleTable>();
  private events: TraceEvent[] = [];
  private tracing: boolean;

  private constructor(
    private readonly o: PipelineOptions,
    /** All ranks of the job. */
    readonly world: Communicator,
    /** The ranks of this pipeline, in stage order. */
    readonly pp: Communicator,
    /** This rank's peers holding the same stages in other replicas (null without data parallelism). */
    readonly dp: Communicator | null,
    /** Number of stages in the whole pipeline. */
    readonly numStages: number,
    stages: Stage[],
    counts: number[],
    shapes: number[][] | null,
  ) {
    this.stages = new Map(stages.map((s) => [s.index, s]));
    this.module = new StageGroup(stages);
    this.counts = counts;
    this.shapes = shapes;
    this.tracing = o.trace ?? false;
    this.optimizer = o.optimizer ? o.optimizer(this.parameters()) : null;
  }

  /**
   * Builds the model on this rank, splits it, keeps this rank's stages (disposing the rest) and
   * connects to the other stages and replicas. Collective: every rank of `comm` calls it.
   */
  static async create(o: PipelineOptions): Promise<Pipeline> {
    const world = o.comm;
    const dpSize = o.dataParallel ?? 1;
    if (!Number.isInteger(dpSize) || dpSize < 1 || world.size % dpSize !== 0) {
      throw new PipelineError(`dataParallel ${dpSize} must be a positive integer dividing the ${world.size} ranks of the job`);
    }
    const ppSize = world.size / dpSize;
    const v = o.stagesPerRank ?? 1;
    if (!Number.isInteger(v) || v < 1) throw new PipelineError(`stagesPerRank must be a positive integer, found ${v}`);
    const S = ppSize * v;
    // Rank r of the world is stage-rank r % pp of replica floor(r / pp).
    const replica = Math.floor(world.rank / ppSize);
    const ppRank = world.rank % ppSize;

    if (o.seed != null) manualSeed(o.seed);
    const layers = layersOf(o.model());
    // Profiled balances can differ between ranks (timing noise): rank 0's split is everyone's.
    const counts = Array.from(await world.broadcast(Int32Array.from(resolveBalance(layers, S, o.balance)), 0));
    const all = partition(layers, counts);
    let shapes: number[][] | null = null;
    try {
      if (o.sampleInput) shapes = checkChain(all, o.sampleInput);
    } catch (e) {
      for (const st of all) for (const p of st.parameters()) p.dispose();
      throw e;
    }
    const mine = all.filter((st) => st.index % ppSize === ppRank);
    for (const st of all) if (st.index % ppSize !== ppRank) for (const p of st.parameters()) p.dispose();

    const pp = (await world.split(replica, ppRank))!;
    const dp = dpSize > 1 ? (await world.split(ppRank, replica))! : null;
    const pipe = new Pipeline(o, world, pp, dp, S, mine, counts, shapes);
    pipe.table(o.microbatches, true); // validates the schedule before any data moves
    return pipe;
  }

  /** This rank's position in its pipeline. */
  get rank(): number {
    return this.pp.rank;
  }
  /** Which replica this rank belongs to. */
  get replica(): number {
    return Math.floor(this.world.rank / this.pp.size);
  }
  /** Whether this rank holds stage 0 (it needs the inputs). */
  get isFirst(): boolean {
    return this.stages.has(0);
  }
  /** Whether this rank holds the last stage (it needs the targets and sees the outputs). */
  get isLast(): boolean {
    return this.stages.has(this.numStages - 1);
  }

  /** This rank's parameters, in stage order. */
  parameters(): Parameter[] {
    return this.module.parameters();
  }

  /** This rank's parameters and buffers, named as in the whole model. */
  stateDict(): Map<string, TF.Tensor> {
    return this.module.stateDict();
  }

  /** Loads this rank's stages from a state dict of the whole model (or of these stages). */
  loadStateDict(state: Map<string, TF.Tensor>): void {
    for (const st of this.stages.values()) {
      const own = new Map<string, TF.Tensor>();
      for (const k of st.stateDict().keys()) {
        const t = state.get(k);
        if (t) own.set(k, t);
      }
      st.loadStateDict(own);
    }
  }

  /** Training or evaluation mode for this rank's stages. */
  train(mode = true): this {
    this.module.train(mode);
    return this;
  }
  eval(): this {
    return this.train(false);
  }

  /** Clears this rank's gradients. */
  zeroGrad(): void {
    this.module.zeroGrad();
  }

  /** The validated table (with communication) this pipeline runs for m micro-batches. */
  table(m: number, training = true): ScheduleTable {
    const id = `${training ? 't' : 'f'}${m}`;
    let t = this.tables.get(id);
    if (t) return t;
    const shape = { ranks: this.pp.size, microbatches: m, stagesPerRank: this.numStages / this.pp.size };
    if (!training) {
      t = withCommunication(forwardOnly(shape), { step: false });
      validate(t, { backward: false });
    } else {
      const s = this.o.schedule ?? '1f1b';
      const raw = typeof s === 'string' ? getSchedule(s)(shape) : typeof s === 'function' ? s(shape) : s;
      if (raw.ranks !== shape.ranks || raw.stages !== this.numStages || raw.microbatches !== m) {
        throw new PipelineError(
          `schedule '${raw.name}' has ${raw.ranks} ranks, ${raw.stages} stages and ${raw.microbatches} micro-batches; this pipeline needs ${shape.ranks}, ${this.numStages} and ${m}`,
        );
      }
      raw.placement.forEach((r, st) => {
        if (r !== st % shape.ranks) throw new PipelineError(`schedule '${raw.name}' places stage ${st} on rank ${r}; the runtime places stage s on rank s % ${shape.ranks}`);
      });
      t = withCommunication(raw);
      validate(t);
    }
    this.tables.set(id, t);
    return t;
  }

  /**
   * One training step: forward and backward of every micro-batch under the schedule, gradients
   * allreduced among replicas, then the optimizer. The rank holding stage 0 needs `input`, the one
   * holding the last stage `target`; others may pass them or not. A list of micro-batches (each of
   * any size or sequence length) can be given instead of a batch.
   */
  step(batch: { input?: Tensor; target?: Tensor; microbatches?: Microbatch[] | number }): Promise<StepResult> {
    if (!this.optimizer) return Promise.reject(new PipelineError('step() needs an optimizer: pass `optimizer` to Pipeline.create, or use forwardBackward()'));
    return this.run(batch, true, true);
  }

  /** Forward and backward of every micro-batch; gradients are accumulated (and allreduced among replicas), no optimizer step. */
  forwardBackward(batch: { input?: Tensor; target?: Tensor; microbatches?: Microbatch[] | number }): Promise<StepResult> {
    return this.run(batch, true, false);
  }

  /**
   * Forward only, without recording for backward: the last stage's outputs for the batch, in order
   * (a new tensor on the rank holding the last stage; null elsewhere). With `target`, the mean loss too.
   */
  async predict(batch: { input?: Tensor; target?: Tensor; microbatches?: Microbatch[] | number }): Promise<{ output: Tensor | null; loss: number }> {
    return this.run(batch, false, false, true);
  }

  private cut(batch: { input?: Tensor; target?: Tensor; microbatches?: Microbatch[] | number }): { mbs: Microbatch[]; owned: boolean } {
    if (Array.isArray(batch.microbatches)) return { mbs: batch.microbatches, owned: false };
    const m = batch.microbatches ?? this.o.microbatches;
    return { mbs: microbatches(batch.input, batch.target, m), owned: true };
  }

  private run(batch: { input?: Tensor; target?: Tensor; microbatches?: Microbatch[] | number }, training: true, withStep: boolean): Promise<StepResult>;
  private run(batch: { input?: Tensor; target?: Tensor; microbatches?: Microbatch[] | number }, training: false, withStep: false, predict: true): Promise<{ output: Tensor | null; loss: number }>;
  private async run(
    batch: { input?: Tensor; target?: Tensor; microbatches?: Microbatch[] | number },
    training: boolean,
    withStep: boolean,
    predict = false,
  ): Promise<StepResult | { output: Tensor | null; loss: number }> {
    if (training && !this.o.loss) throw new PipelineError('training needs a loss: pass `loss` to Pipeline.create');
    const { mbs, owned } = this.cut(batch);
    const m = mbs.length;
    const table = this.table(m, training);
    if (this.isFirst) mbs.forEach((b, i) => { if (!b.input) throw new PipelineError(`rank ${this.world.rank} holds stage 0 and needs the input of micro-batch ${i}`); });
    const withTargets = this.isLast && (training || mbs.every((b) => b.target));
    if (this.isLast && training) mbs.forEach((b, i) => { if (!b.target) throw new PipelineError(`rank ${this.world.rank} holds the last stage and needs the target of micro-batch ${i}`); });
    const totalTargets = withTargets ? mbs.reduce((a, b) => a + b.target!.size, 0) : 0;
    const st: StepState = {
      mbs,
      training,
      split: splitBackward(table),
      weightOf: mbs.map((b) => (withTargets ? b.target!.size / totalTargets : 0)),
      inputs: new Map(),
      outputs: new Map(),
      grads: new Map(),
      dx: new Map(),
      wpending: new Map(),
      sends: [],
      lossSum: 0,
      results: [],
      stash: 0,
    };
    const stepIndex = this.stats.steps;
    let current: Action | null = null;
    try {
      for (const a of table.actions[this.rank]!) {
        if (a.op === 'STEP' && !withStep) continue;
        current = a;
        this.o.beforeAction?.(a, { step: stepIndex, rank: this.world.rank });
        const t0 = this.tracing ? now() : 0;
        await this.exec(a, st);
        if (this.tracing) this.events.push(traceEvent(this.world.rank, a, stepIndex, t0, now()));
        current = null;
      }
      await Promise.all(st.sends.map((r) => r.wait()));
      const loss = await this.shareLoss(withTargets ? st.lossSum : NaN);
      if (training) this.stats.steps++;
      if (predict) {
        const output = this.isLast ? fromTf(tf.concat(st.results.map((r) => r.data), 0)) : null;
        return { output, loss };
      }
      return { loss, microbatches: m };
    } catch (e) {
      throw this.wrap(e, current);
    } finally {
      for (const map of [st.inputs, st.outputs, st.grads, st.dx]) for (const t of map.values()) t.dispose();
      for (const w of st.wpending.values()) w.discard();
      for (const r of st.results) r.dispose();
      if (owned) for (const b of mbs) { b.input?.dispose(); b.target?.dispose(); }
    }
  }

  private wrap(e: unknown, a: Action | null): Error {
    if (e instanceof StageError) return e;
    const where = a ? `${formatAction(a)}${a.op === 'STEP' ? '' : ` (stage ${a.stage}, micro-batch ${a.mb})`}` : 'finishing the step';
    const msg = (e as Error)?.message ?? String(e);
    const lost = e instanceof PeerLostError ? ` (world rank ${e.lostRank} is gone)` : '';
    return new StageError(`pipeline rank ${this.rank} (world rank ${this.world.rank}) failed at ${where}${lost}: ${msg}`, this.world.rank, a ? formatAction(a) : '', e);
  }

  /** The loss from the last stage to every rank of the pipeline, then averaged over replicas. */
  private async shareLoss(local: number): Promise<number> {
    const root = (this.numStages - 1) % this.pp.size;
    const buf = await this.pp.broadcast(new Float64Array([local]), root);
    if (this.dp) await this.dp.allreduce(buf, 'avg');
    return buf[0]!;
  }

  private rankOf(stage: number): number {
    return stage % this.pp.size;
  }

  private async exec(a: Action, st: StepState): Promise<void> {
    const k = key(a.stage, a.mb);
    const last = this.numStages - 1;
    switch (a.op) {
      case 'F': {
        const stage = this.stages.get(a.stage)!;
        const x = a.stage === 0 ? st.mbs[a.mb]!.input! : take(st.inputs, k, a);
        if (a.stage !== 0) st.inputs.delete(k);
        let out = st.training ? tidy(() => stage.forward(x)) : noGrad(() => tidy(() => stage.forward(x)));
        if (a.stage === last && st.training) {
          const target = st.mbs[a.mb]!.target!;
          const lossFn = this.o.loss;
          if (!lossFn) throw new PipelineError('training needs a loss: pass `loss` to Pipeline.create');
          const l = tidy(() => scale(lossFn(out, target), st.weightOf[a.mb]!));
          if (l.size !== 1) throw new PipelineError(`the loss must be a scalar (reduce it by mean), found shape [${l.shape}]`);
          st.lossSum += l.item();
          out.dispose();
          out = l;
        }
        if (!st.training) {
          if (a.stage !== 0) x.dispose();
          if (a.stage === last) {
            st.results[a.mb] = out;
            const target = st.mbs[a.mb]?.target;
            if (target && this.o.loss) {
              const l = noGrad(() => tidy(() => this.o.loss!(out, target)));
              st.lossSum += l.item() * st.weightOf[a.mb]!;
              l.dispose();
            }
            return;
          }
        } else {
          if (a.stage !== 0) st.inputs.set(`in:${k}`, x);
          st.outputs.set(k, out);
          st.stash++;
          this.stats.peakStash = Math.max(this.stats.peakStash, st.stash);
        }
        if (a.stage < last && this.rankOf(a.stage + 1) === this.rank) {
          st.inputs.set(key(a.stage + 1, a.mb), leaf(out.data, st.training));
          if (!st.training) out.dispose();
        } else if (!st.training && a.stage < last) {
          st.outputs.set(k, out);
        }
        return;
      }
      case 'SEND_F': {
        const out = st.outputs.get(k)!;
        const meta: Meta = { shape: out.shape, m: st.mbs.length };
        st.sends.push(this.pp.isend(out.data.dataSync(), this.rankOf(a.stage + 1), tagOf(0, a.stage, a.mb), meta));
        if (!st.training) {
          out.dispose();
          st.outputs.delete(k);
        }
        return;
      }
      case 'RECV_F': {
        const msg = await this.pp.recvMessage(this.rankOf(a.stage - 1), tagOf(0, a.stage - 1, a.mb));
        st.inputs.set(k, this.fromMessage(msg.data, msg.meta as Meta, st, `the activation of micro-batch ${a.mb} from stage ${a.stage - 1}`, st.training));
        return;
      }
      case 'B': {
        const out = take(st.outputs, k, a);
        const x = a.stage === 0 ? null : take(st.inputs, `in:${k}`, a);
        let g: Tensor | undefined;
        if (a.stage < last) {
          g = take(st.grads, k, a);
          if (g.shape.join() !== out.shape.join()) {
            throw new PipelineError(`a gradient of shape [${g.shape}] arrived for stage ${a.stage}'s output of shape [${out.shape}] (micro-batch ${a.mb})`);
          }
        }
        st.outputs.delete(k);
        st.inputs.delete(`in:${k}`);
        st.grads.delete(k);
        const wantInput = x != null && x.requiresGrad;
        const inputs = wantInput ? [x] : [];
        let dx: Tensor | null = null;
        try {
          if (st.split.has(k)) {
            const r = backwardInput(out, g, inputs);
            st.wpending.set(k, r.weights);
            this.stats.peakPendingW = Math.max(this.stats.peakPendingW, st.wpending.size);
            dx = r.inputGrads[0] ?? null;
          } else {
            dx = backward(out, g, { inputs })[0] ?? null;
          }
        } finally {
          out.dispose();
          g?.dispose();
        }
        st.stash--;
        if (wantInput) {
          dx ??= fromTf(tf.zerosLike(x.data));
          if (this.rankOf(a.stage - 1) === this.rank) st.grads.set(key(a.stage - 1, a.mb), dx);
          else st.dx.set(k, dx);
        }
        x?.dispose();
        return;
      }
      case 'SEND_B': {
        const dx = take(st.dx, k, a);
        st.dx.delete(k);
        const meta: Meta = { shape: dx.shape, m: st.mbs.length };
        st.sends.push(this.pp.isend(dx.data.dataSync(), this.rankOf(a.stage - 1), tagOf(1, a.stage, a.mb), meta));
        dx.dispose();
        return;
      }
      case 'RECV_B': {
        const msg = await this.pp.recvMessage(this.rankOf(a.stage + 1), tagOf(1, a.stage + 1, a.mb));
        st.grads.set(k, this.fromMessage(msg.data, msg.meta as Meta, st, `the gradient of micro-batch ${a.mb} from stage ${a.stage + 1}`, false));
        return;
      }
      case 'W': {
        const w = st.wpending.get(k);
        if (!w) throw new PipelineError(`${formatAction(a)} has no backward-input pass to complete`);
        st.wpending.delete(k);
        w.run();
        return;
      }
      case 'STEP':
        await this.allreduceGrads();
        this.optimizer!.step();
        this.zeroGrad();
        return;
    }
  }

  private fromMessage(data: ArrayLike<number> & { length: number }, meta: Meta, st: StepState, what: string, grad: boolean): Tensor {
    if (meta == null || !Array.isArray(meta.shape)) throw new PipelineError(`${what} came without its shape`);
    if (meta.m !== st.mbs.length) {
      throw new PipelineError(`${what} belongs to a step of ${meta.m} micro-batches, this rank's step has ${st.mbs.length}: every rank must cut the batch the same way`);
    }
    const n = meta.shape.reduce((a, b) => a * b, 1);
    if (n !== data.length) throw new PipelineError(`${what} has ${data.length} values for shape [${meta.shape}]`);
    const dtype = data instanceof Int32Array ? 'int32' : 'float32';
    return leafOwned(tf.tensor(data as Float32Array, meta.shape, dtype), grad);
  }

  /** Averages this rank's gradients over the replicas, in one buffer (as DDP's buckets). */
  private async allreduceGrads(): Promise<void> {
    if (!this.dp) return;
    const params = this.parameters();
    const total = params.reduce((a, p) => a + p.size, 0);
    const flat = new Float32Array(total);
    let at = 0;
    for (const p of params) {
      if (p.grad) flat.set(p.grad.dataSync() as Float32Array, at);
      at += p.size;
    }
    await this.dp.allreduce(flat, 'avg');
    at = 0;
    for (const p of params) {
      const g = tf.tensor(flat.subarray(at, at + p.size), p.shape);
      p.grad?.dispose();
      p.grad = fromTf(g).keep();
      at += p.size;
    }
  }

  /** Turns tracing on or off. */
  setTracing(on: boolean): void {
    this.tracing = on;
  }

  /** This rank's recorded actions since the last call, and clears them. */
  takeTrace(): TraceEvent[] {
    const out = this.events;
    this.events = [];
    return out;
  }

  /** Resets the peak counters. */
  resetStats(): void {
    this.stats.peakStash = 0;
    this.stats.peakPendingW = 0;
  }
}

function take<T>(map: Map<string, T>, k: string, a: Action): T {
  const v = map.get(k);
  if (v == null) throw new PipelineError(`${formatAction(a)}: nothing to work on (its input was never produced; is the schedule valid?)`);
  return v;
}

/** A stage input: a new leaf holding a copy of `data`, requiring grad for float activations in training. */
function leaf(data: TF.Tensor, grad: boolean): Tensor {
  return leafOwned(tf.clone(data), grad);
}
function leafOwned(data: TF.Tensor, grad: boolean): Tensor {
  const t = fromTf(data);
  if (grad && data.dtype === 'float32') t.requireGrad();
  return t;
}

const now = () => (performance.timeOrigin + performance.now()) * 1000;

function traceEvent(rank: number, a: Action, step: number, t0: number, t1: number): TraceEvent {
  const compute = a.op === 'F' || a.op === 'B' || a.op === 'W' || a.op === 'STEP';
  return { rank, name: formatAction(a), op: a.op, stage: a.stage, mb: a.mb, step, track: compute ? 'compute' : 'comm', start: t0, end: t1 };
}
