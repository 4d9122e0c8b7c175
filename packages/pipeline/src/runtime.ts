import { Module, fromTf, kernelTraits, manualSeed, scaleGrads, sumOfSquaredGrads, tf, type Optimizer, type Parameter, type Tensor } from '@hpdl/core';
import type * as TF from '@tensorflow/tfjs-core';
import { PeerLostError, type Communicator, type Request } from '@hpdl/comm';
import { PipelineError, StageError } from './errors.js';
import { formatAction, splitBackward, withCommunication, type Action, type ScheduleFn, type ScheduleTable } from './ir.js';
import { microbatches, type Microbatch } from './microbatch.js';
import { StageGroup, checkChain, layersOf, partition, resolveBalance, type Balance, type InputSpec, type Stage } from './partition.js';
import { forwardOnly, getSchedule, scheduleStagesPerRank } from './schedules.js';
import { GradBuckets, flatten, unflatten, type Reduction } from './buckets.js';
import { InferenceStep, TrainingStep, type StepContext } from './steps.js';
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
  /**
   * A registered schedule's name, a schedule function, or a fixed table (default '1f1b'). The table's
   * placement decides which stages each rank holds (s % p for looped schedules, a V for zb-v and
   * dualpipev).
   */
  schedule?: string | ScheduleFn | ScheduleTable;
  /** Micro-batches per step (the default for `step` when a whole batch is given). */
  microbatches: number;
  /** Stages per rank (interleaved schedules; V schedules' default is 2, the others' 1). */
  stagesPerRank?: number;
  /** Data-parallel replicas of the pipeline (default 1); the pipeline has comm.size / dataParallel ranks. */
  dataParallel?: number;
  /** The loss of one micro-batch, reduced by mean (as crossEntropy and mseLoss by default). */
  loss?: (output: Tensor, target: Tensor) => Tensor;
  /** Makes the optimizer over this rank's parameters; needed for `step`. */
  optimizer?: (params: Parameter[]) => Optimizer;
  /** One micro-batch's input (or its shape and dtype): stages are checked to chain before training. */
  sampleInput?: InputSpec;
  /**
   * Activation recomputation: every stage (true) or the stages listed keep only their input during
   * forward and run again during backward (core's `checkpoint`), trading compute for memory.
   */
  recompute?: boolean | number[];
  /**
   * Clip gradients by their global L2 norm before each optimizer step: the norm over the whole
   * model (every stage, a tied parameter counted once), as one process computes it; as torch's
   * clip_grad_norm_. Off by default.
   */
  clipGradNorm?: number;
  /**
   * Sum the weight gradients of linear layers over a step's micro-batches in one product (x^T dy
   * over all their rows, when the gradient is read) instead of one product and one addition per
   * micro-batch: faster where products of few rows are slow, at the cost of keeping each
   * micro-batch's x and dy of those layers until the step's end (core's `deferGradProducts`).
   * Default: on where the backend gains from it (`kernelTraits().batchedWeightGradients`: the
   * tensorflow backend), except for recomputed stages, which keep as little as they can.
   */
  batchWeightGradients?: boolean;
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
  /** With `clipGradNorm`, the global gradient norm before clipping (from `step`; NaN otherwise). */
  gradNorm: number;
}

/** Counters since creation (or `resetStats`). */
export interface PipelineStats {
  /** Most micro-batch-stages held between their F and B at once on this rank. */
  peakStash: number;
  /** Most micro-batch-stages held between their B and W at once on this rank. */
  peakPendingW: number;
  /** Most TensorFlow.js bytes held on this rank after any action of a training step. */
  peakBytes: number;
  /** Steps run. */
  steps: number;
}

/** A batch: the whole one (cut into `microbatches`), or its micro-batches. */
export interface Batch {
  input?: Tensor;
  target?: Tensor;
  microbatches?: Microbatch[] | number;
}

/**
 * Parameters one model uses in stages on different ranks (an embedding tied to the output head):
 * each holding rank keeps a copy, and the copies' gradients are summed over `comm` before every
 * optimizer step, so that they stay identical.
 */
interface TiedGroup {
  comm: Communicator;
  params: Parameter[];
}

/** Resolves the schedule option to a function (or a fixed table) and its stages per rank. */
function scheduleOf(o: PipelineOptions): { fn: ScheduleFn | null; fixed: ScheduleTable | null; v: number } {
  const s = o.schedule ?? '1f1b';
  if (typeof s === 'object') return { fn: null, fixed: s, v: o.stagesPerRank ?? s.stages / s.ranks };
  const fn = typeof s === 'string' ? getSchedule(s) : s;
  return { fn, fixed: null, v: o.stagesPerRank ?? scheduleStagesPerRank(fn) };
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
  readonly stats: PipelineStats = { peakStash: 0, peakPendingW: 0, peakBytes: 0, steps: 0 };
  private readonly tables = new Map<string, ScheduleTable>();
  private readonly recompute: Set<number>;
  private events: TraceEvent[] = [];
  private tracing: boolean;
  /** Training calls whose gradients are accumulated here and not yet reduced or applied. */
  private pendingCalls = 0;

  private constructor(
    private readonly o: PipelineOptions,
    /** All ranks of the job. */
    readonly world: Communicator,
    /** The ranks of this pipeline, in stage order. */
    readonly pp: Communicator,
    /** This rank's peers holding the same stages in other replicas (null without data parallelism). */
    readonly dp: Communicator | null,
    /** Rank (in `pp`) of each stage. */
    readonly placement: readonly number[],
    stages: Stage[],
    counts: number[],
    shapes: number[][] | null,
    private readonly tied: TiedGroup[],
    private readonly schedule: { fn: ScheduleFn | null; fixed: ScheduleTable | null; v: number },
  ) {
    this.stages = new Map(stages.map((st) => [st.index, st]));
    this.module = new StageGroup(stages);
    this.counts = counts;
    this.shapes = shapes;
    this.tracing = o.trace ?? false;
    const r = o.recompute ?? false;
    this.recompute = new Set(r === true ? placement.map((_, st) => st) : r === false ? [] : r);
    const batchW = kernelTraits().batchedWeightGradients;
    for (const st of stages) {
      const defer = o.batchWeightGradients ?? (batchW && !this.recompute.has(st.index));
      for (const p of st.parameters()) p.deferGradProducts = defer;
    }
    this.optimizer = o.optimizer ? o.optimizer(this.parameters()) : null;
    if (o.clipGradNorm != null && !(o.clipGradNorm > 0)) throw new PipelineError(`clipGradNorm must be a positive number, found ${o.clipGradNorm}`);
  }

  /**
   * Builds the model on this rank, splits it, keeps the stages the schedule places here (disposing
   * the rest), and connects to the other stages and replicas. Collective: every rank of `comm` calls it.
   */
  static async create(o: PipelineOptions): Promise<Pipeline> {
    const world = o.comm;
    const dpSize = o.dataParallel ?? 1;
    if (!Number.isInteger(dpSize) || dpSize < 1 || world.size % dpSize !== 0) {
      throw new PipelineError(`dataParallel ${dpSize} must be a positive integer dividing the ${world.size} ranks of the job`);
    }
    const ppSize = world.size / dpSize;
    const schedule = scheduleOf(o);
    const v = schedule.v;
    if (!Number.isInteger(v) || v < 1) throw new PipelineError(`stagesPerRank must be a positive integer, found ${v}`);
    // The training table decides the placement of stages on ranks.
    const first = schedule.fixed ?? schedule.fn!({ ranks: ppSize, microbatches: o.microbatches, stagesPerRank: v });
    const S = first.stages;
    if (first.ranks !== ppSize) throw new PipelineError(`schedule '${first.name}' has ${first.ranks} ranks; this pipeline has ${ppSize}`);
    const placement = first.placement.slice();
    for (let r = 0; r < ppSize; r++) {
      if (!placement.includes(r)) throw new PipelineError(`schedule '${first.name}' places no stage on rank ${r}; every rank must hold at least one`);
    }
    const recompute = o.recompute;
    if (Array.isArray(recompute)) {
      for (const st of recompute) if (!Number.isInteger(st) || st < 0 || st >= S) throw new PipelineError(`recompute lists stage ${st}; stages are 0..${S - 1}`);
    }
    // Rank r of the world is stage-rank r % pp of replica floor(r / pp).
    const replica = Math.floor(world.rank / ppSize);
    const ppRank = world.rank % ppSize;

    if (o.seed != null) manualSeed(o.seed);
    const layers = layersOf(o.model());
    // Profiled balances can differ between ranks (timing noise): rank 0's split is everyone's.
    const counts = Array.from(await world.broadcast(Int32Array.from(resolveBalance(layers, S, o.balance, placement)), 0));
    const all = partition(layers, counts);
    const mine = all.filter((st) => placement[st.index] === ppRank);
    const kept = new Set(mine.flatMap((st) => st.parameters()));
    const dropOthers = () => {
      for (const p of new Set(all.flatMap((st) => st.parameters()))) if (!kept.has(p)) p.dispose();
    };
    let shapes: number[][] | null = null;
    try {
      if (o.sampleInput) shapes = checkChain(all, o.sampleInput);
    } catch (e) {
      for (const p of new Set(all.flatMap((st) => st.parameters()))) p.dispose();
      throw e;
    }
    // Parameters used by stages on several ranks: each such set of ranks sums their gradients.
    const ranksOf = new Map<Parameter, Set<number>>();
    for (const st of all) for (const p of st.parameters()) ranksOf.set(p, (ranksOf.get(p) ?? new Set()).add(placement[st.index]!));
    const order = new StageGroup(all).parameters(); // the same order on every rank
    const groups = new Map<string, Parameter[]>();
    for (const p of order) {
      const rs = [...ranksOf.get(p)!].sort((a, b) => a - b);
      if (rs.length > 1) groups.set(rs.join(','), [...(groups.get(rs.join(',')) ?? []), p]);
    }
    dropOthers();

    const pp = (await world.split(replica, ppRank))!;
    const dp = dpSize > 1 ? (await world.split(ppRank, replica))! : null;
    const tied: TiedGroup[] = [];
    for (const [ranks, params] of groups) {
      const members = ranks.split(',').map(Number);
      const comm = await pp.split(members.includes(ppRank) ? 0 : null, ppRank);
      if (comm) tied.push({ comm, params: params.filter((p) => kept.has(p)) });
    }
    const pipe = new Pipeline(o, world, pp, dp, placement, mine, counts, shapes, tied, schedule);
    pipe.table(o.microbatches, true); // validates the schedule before any data moves
    return pipe;
  }

  /** Number of stages in the whole pipeline. */
  get numStages(): number {
    return this.placement.length;
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
  /** The rank (in `pp`) holding the last stage. */
  get lastRank(): number {
    return this.placement[this.numStages - 1]!;
  }

  /**
   * A value known on the rank of the last stage (an accuracy, a sampled token), given to every rank
   * of the pipeline: in place, and returned. Collective over the pipeline's ranks.
   */
  fromLastStage<T extends Float32Array | Float64Array | Int32Array | Uint8Array>(values: T): Promise<T> {
    return this.pp.broadcast(values, this.lastRank);
  }

  /** This rank's parameters, in stage order, each once. */
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
      for (const [k] of st.namedParameters(false)) {
        const t = state.get(k);
        if (t) own.set(k, t);
      }
      for (const [k] of st.namedBuffers()) {
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

  /** Clears this rank's gradients (and forgets the training calls they accumulated). */
  zeroGrad(): void {
    this.module.zeroGrad();
    this.pendingCalls = 0;
  }

  /** The validated table (with communication) this pipeline runs for m micro-batches. */
  table(m: number, training = true): ScheduleTable {
    const id = `${training ? 't' : 'f'}${m}`;
    let t = this.tables.get(id);
    if (t) return t;
    const p = this.pp.size;
    const v = this.schedule.v;
    if (!training) {
      t = withCommunication(forwardOnly({ ranks: p, microbatches: m, stagesPerRank: v, placement: this.placement.slice() }), { step: false });
      validate(t, { backward: false });
    } else {
      const raw = this.schedule.fixed ?? this.schedule.fn!({ ranks: p, microbatches: m, stagesPerRank: v });
      if (raw.ranks !== p || raw.stages !== this.numStages || raw.microbatches !== m) {
        throw new PipelineError(
          `schedule '${raw.name}' has ${raw.ranks} ranks, ${raw.stages} stages and ${raw.microbatches} micro-batches; this pipeline needs ${p}, ${this.numStages} and ${m}`,
        );
      }
      raw.placement.forEach((r, st) => {
        if (r !== this.placement[st]) throw new PipelineError(`schedule '${raw.name}' places stage ${st} on rank ${r} for ${m} micro-batches; this pipeline holds it on rank ${this.placement[st]}`);
      });
      t = withCommunication(raw);
      validate(t);
    }
    this.tables.set(id, t);
    return t;
  }

  /**
   * One training step: forward and backward of every micro-batch under the schedule, then (at the
   * table's STEP) `optimizerStep()`. The rank holding stage 0 needs `input`, the one holding the
   * last stage `target`; others may pass them or not. A list of micro-batches (each of any size or
   * sequence length) can be given instead of a batch. Gradients accumulated by `forwardBackward`
   * calls before it are part of the step, as one more call each.
   */
  step(batch: Batch): Promise<StepResult> {
    if (!this.optimizer) return Promise.reject(new PipelineError('step() needs an optimizer: pass `optimizer` to Pipeline.create, or use forwardBackward()'));
    return this.runTraining(batch, true);
  }

  /**
   * Forward and backward of every micro-batch, adding the gradients of the batch's mean loss to
   * this rank's `.grad`s; nothing travels between replicas (as DDP's no_sync). Several calls, then
   * `optimizerStep()` (or a `step`), train on their batches together: the step averages the
   * accumulated gradients over the calls and the replicas once.
   */
  forwardBackward(batch: Batch): Promise<StepResult> {
    return this.runTraining(batch, false);
  }

  /**
   * Gradients of the calls since the last step made whole: tied copies summed across their ranks,
   * then averaged over the calls and the replicas. Collective over the job's ranks; a no-op when
   * nothing has accumulated. `optimizerStep` does it first; call it alone to read the gradients.
   */
  syncGradients(): Promise<void> {
    return this.sync(false);
  }

  /** syncGradients; `averaged`: the replicas' average is in place already (a step's buckets). */
  private async sync(averaged: boolean): Promise<void> {
    if (this.pendingCalls === 0) return;
    const calls = this.pendingCalls;
    this.pendingCalls = 0;
    for (const g of this.tied) await this.reduceGrads(g.params, g.comm, 'sum');
    if (this.dp && !averaged) await this.reduceGrads(this.parameters(), this.dp, 'avg');
    if (calls > 1) scaleGrads(this.parameters(), 1 / calls);
  }

  /**
   * The optimizer step over what the training calls since the last one accumulated:
   * `syncGradients`, clipping by the global norm (`clipGradNorm`), the optimizer, `zeroGrad`.
   * Returns the global norm before clipping (NaN without `clipGradNorm`). Collective.
   */
  optimizerStep(): Promise<number> {
    return this.applyStep(false);
  }

  private async applyStep(averaged: boolean): Promise<number> {
    if (!this.optimizer) throw new PipelineError('optimizerStep() needs an optimizer: pass `optimizer` to Pipeline.create');
    await this.sync(averaged);
    const norm = this.o.clipGradNorm != null ? await this.clipGradients(this.o.clipGradNorm) : NaN;
    this.optimizer.step();
    this.zeroGrad();
    return norm;
  }

  /** Scales every gradient so that the global norm is at most `maxNorm`; returns the norm before. */
  private async clipGradients(maxNorm: number): Promise<number> {
    // Each parameter counted once over the pipeline: a tied copy by the first rank of its group.
    const copies = new Set(this.tied.filter((g) => g.comm.rank !== 0).flatMap((g) => g.params));
    const sq = new Float64Array([sumOfSquaredGrads(this.parameters().filter((p) => !copies.has(p)))]);
    await this.pp.allreduce(sq, 'sum'); // replicas hold equal gradients after syncGradients
    const norm = Math.sqrt(sq[0]!);
    const coef = maxNorm / (norm + 1e-6);
    if (coef < 1) scaleGrads(this.parameters(), coef);
    return norm;
  }

  /**
   * Forward only, without recording for backward: the last stage's outputs for the batch, in order
   * (a new tensor on the rank holding the last stage; null elsewhere). With `target`, the mean loss too.
   */
  async predict(batch: Batch): Promise<{ output: Tensor | null; loss: number }> {
    const { mbs, owned } = this.cut(batch);
    const table = this.table(mbs.length, false);
    const withTargets = this.isLast && mbs.every((b) => b.target);
    const st = new InferenceStep(this.context(), mbs, this.weightsOf(mbs, withTargets));
    try {
      await this.runActions(table, st, (a) => st.run(a), false);
      const loss = await this.shareLoss(withTargets ? st.lossSum : NaN);
      const output = this.isLast ? fromTf(tf.concat(st.results.map((r) => r.data), 0)) : null;
      return { output, loss };
    } finally {
      st.dispose();
      if (owned) for (const b of mbs) (b.input?.dispose(), b.target?.dispose());
    }
  }

  private context(): StepContext {
    return { stages: this.stages, numStages: this.numStages, placement: this.placement, pp: this.pp, rank: this.rank, recompute: this.recompute, loss: this.o.loss };
  }

  private cut(batch: Batch): { mbs: Microbatch[]; owned: boolean } {
    if (Array.isArray(batch.microbatches)) return { mbs: batch.microbatches, owned: false };
    const m = batch.microbatches ?? this.o.microbatches;
    return { mbs: microbatches(batch.input, batch.target, m), owned: true };
  }

  /** Each micro-batch's share of the batch's targets (its loss weight), or zeros without targets. */
  private weightsOf(mbs: Microbatch[], withTargets: boolean): number[] {
    const total = withTargets ? mbs.reduce((a, b) => a + b.target!.size, 0) : 0;
    return mbs.map((b) => (withTargets ? b.target!.size / total : 0));
  }

  private async runTraining(batch: Batch, withStep: boolean): Promise<StepResult> {
    if (!this.o.loss) throw new PipelineError('training needs a loss: pass `loss` to Pipeline.create');
    const { mbs, owned } = this.cut(batch);
    const table = this.table(mbs.length, true);
    const split = splitBackward(table);
    const st = new TrainingStep(this.context(), mbs, this.weightsOf(mbs, this.isLast), split);
    // A step among replicas averages each stage's gradients as soon as they are final, beside the
    // backward work still to run; the optimizer step waits for them.
    const buckets = withStep && this.dp ? new GradBuckets(table.actions[this.rank]!, this.stages, split, this.dp, now) : null;
    let gradNorm = NaN;
    const stepHere = async () => {
      if (!withStep) return;
      await buckets?.finish();
      gradNorm = await this.applyStep(buckets != null);
    };
    const run = async (a: Action) => {
      if (a.op === 'STEP') return stepHere();
      await st.run(a);
      buckets?.after(a);
    };
    try {
      this.pendingCalls++;
      await this.runActions(table, st, run, true);
      if (buckets && this.tracing) for (const r of buckets.reductions) this.events.push(reductionEvent(this.world.rank, r, this.stats.steps));
      const loss = await this.shareLoss(this.isLast ? st.lossSum : NaN);
      this.stats.steps++;
      this.stats.peakStash = Math.max(this.stats.peakStash, st.peakStash);
      this.stats.peakPendingW = Math.max(this.stats.peakPendingW, st.peakPendingW);
      this.stats.peakBytes = Math.max(this.stats.peakBytes, st.peakBytes);
      return { loss, microbatches: mbs.length, gradNorm };
    } finally {
      st.dispose();
      if (owned) for (const b of mbs) (b.input?.dispose(), b.target?.dispose());
    }
  }

  /** Runs this rank's list of the table, tracing each action; failures name the action. */
  private async runActions(table: ScheduleTable, st: { sends: Request<void>[] }, run: (a: Action) => Promise<void>, training: boolean): Promise<void> {
    const stepIndex = this.stats.steps;
    let current: Action | null = null;
    try {
      for (const a of table.actions[this.rank]!) {
        current = a;
        this.o.beforeAction?.(a, { step: stepIndex, rank: this.world.rank });
        const t0 = this.tracing ? now() : 0;
        await run(a);
        if (this.tracing) this.events.push(traceEvent(this.world.rank, a, stepIndex, t0, now()));
      }
      current = null;
      await Promise.all(st.sends.map((r) => r.wait()));
    } catch (e) {
      throw this.wrap(e, current, training);
    }
  }

  private wrap(e: unknown, a: Action | null, training: boolean): Error {
    if (e instanceof StageError) return e;
    const where = a ? `${formatAction(a)}${a.op === 'STEP' ? '' : ` (stage ${a.stage}, micro-batch ${a.mb})`}` : `finishing the ${training ? 'step' : 'forward pass'}`;
    const msg = (e as Error)?.message ?? String(e);
    const lost = e instanceof PeerLostError ? ` (world rank ${e.lostRank} is gone)` : '';
    return new StageError(`pipeline rank ${this.rank} (world rank ${this.world.rank}) failed at ${where}${lost}: ${msg}`, this.world.rank, a ? formatAction(a) : '', e);
  }

  /** The loss from the last stage to every rank of the pipeline, then averaged over replicas. */
  private async shareLoss(local: number): Promise<number> {
    const buf = await this.fromLastStage(new Float64Array([local]));
    if (this.dp) await this.dp.allreduce(buf, 'avg');
    return buf[0]!;
  }

  /** Allreduces the gradients of `params` over `comm` in one buffer. */
  private async reduceGrads(params: Parameter[], comm: Communicator, op: 'sum' | 'avg'): Promise<void> {
    const flat = flatten(params);
    await comm.allreduce(flat, op);
    unflatten(params, flat);
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
    this.stats.peakBytes = 0;
  }
}

const now = () => (performance.timeOrigin + performance.now()) * 1000;

/** A bucket's reduction among replicas, on its own track. */
function reductionEvent(rank: number, r: Reduction, step: number): TraceEvent {
  return { rank, name: `ALLREDUCE ${r.stage}`, op: 'REDUCE', stage: r.stage, mb: -1, step, track: 'reduce', start: r.start, end: r.end || r.start };
}

function traceEvent(rank: number, a: Action, step: number, t0: number, t1: number): TraceEvent {
  const compute = a.op === 'F' || a.op === 'B' || a.op === 'W' || a.op === 'STEP';
  return { rank, name: formatAction(a), op: a.op, stage: a.stage, mb: a.mb, step, track: compute ? 'compute' : 'comm', start: t0, end: t1 };
}
