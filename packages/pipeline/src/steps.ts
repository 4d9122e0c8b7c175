import { Tensor, backward, backwardInput, checkpoint, fromTf, noGrad, scale, tf, tidy, type WeightGradients } from '@hpdl/core';
import type * as TF from '@tensorflow/tfjs-core';
import type { Communicator, Request } from '@hpdl/comm';
import { PipelineError } from './errors.js';
import { formatAction, type Action } from './ir.js';
import type { Microbatch } from './microbatch.js';
import type { Stage } from './partition.js';

const TAG_SPAN = 65536;
/** The message tag of an activation (dir 0) or gradient (dir 1) leaving `stage` for micro-batch `mb`. */
export const tagOf = (dir: 0 | 1, stage: number, mb: number) => (stage * 2 + dir) * TAG_SPAN + mb;

/** Meta travelling with every activation and gradient. */
interface Meta {
  shape: number[];
  m: number;
}

/** What a step needs of its pipeline. */
export interface StepContext {
  readonly stages: ReadonlyMap<number, Stage>;
  readonly numStages: number;
  /** Rank (in `pp`) of each stage. */
  readonly placement: readonly number[];
  readonly pp: Communicator;
  /** The rank of this process in `pp`. */
  readonly rank: number;
  /** Stages whose forward keeps only its input and is recomputed in backward. */
  readonly recompute: ReadonlySet<number>;
  readonly loss?: (output: Tensor, target: Tensor) => Tensor;
}

/** A stage input: a new leaf holding the values, requiring grad for float activations in training. */
function leafOwned(data: TF.Tensor, grad: boolean): Tensor {
  const t = fromTf(data);
  if (grad && data.dtype === 'float32') t.requireGrad();
  return t;
}

function take<T>(map: Map<number, T>, slot: number, a: Action): T {
  const v = map.get(slot);
  if (v == null) throw new PipelineError(`${formatAction(a)}: nothing to work on (its input was never produced; is the schedule valid?)`);
  map.delete(slot);
  return v;
}

/** State and handlers shared by training and inference steps: receiving activations and sending them on. */
abstract class StepBase {
  /** Activations waiting for a stage's F: received, or handed over by the previous stage on this rank. */
  protected readonly received = new Map<number, Tensor>();
  /** Sends in flight; the step ends when all have left. */
  readonly sends: Request<void>[] = [];
  /** Sum of the weighted micro-batch losses (on the rank of the last stage). */
  lossSum = 0;

  constructor(
    protected readonly ctx: StepContext,
    protected readonly mbs: Microbatch[],
  ) {}

  /** The map key of a stage and micro-batch. */
  protected slot(stage: number, mb: number): number {
    return stage * this.mbs.length + mb;
  }
  protected isLocal(stage: number): boolean {
    return this.ctx.placement[stage] === this.ctx.rank;
  }
  protected stage(s: number): Stage {
    const st = this.ctx.stages.get(s);
    if (!st) throw new PipelineError(`stage ${s} is not held by pipeline rank ${this.ctx.rank}`);
    return st;
  }
  /** The input of a stage's F: the micro-batch for stage 0, else what arrived. */
  protected input(a: Action): Tensor {
    if (a.stage === 0) {
      const x = this.mbs[a.mb]!.input;
      if (!x) throw new PipelineError(`rank ${this.ctx.rank} holds stage 0 and needs the input of micro-batch ${a.mb}`);
      return x;
    }
    return take(this.received, this.slot(a.stage, a.mb), a);
  }

  protected send(data: TF.Tensor, dir: 0 | 1, a: Action, to: number): void {
    const meta: Meta = { shape: data.shape.slice(), m: this.mbs.length };
    this.sends.push(this.ctx.pp.isend(data.dataSync() as Float32Array | Int32Array, this.ctx.placement[to]!, tagOf(dir, a.stage, a.mb), meta));
  }

  protected async receive(dir: 0 | 1, from: number, a: Action, what: string, grad: boolean): Promise<Tensor> {
    const msg = await this.ctx.pp.recvMessage(this.ctx.placement[from]!, tagOf(dir, from, a.mb));
    const meta = msg.meta as Meta | undefined;
    if (meta == null || !Array.isArray(meta.shape)) throw new PipelineError(`${what} came without its shape`);
    if (meta.m !== this.mbs.length) {
      throw new PipelineError(`${what} belongs to a step of ${meta.m} micro-batches, this rank's step has ${this.mbs.length}: every rank must cut the batch the same way`);
    }
    const n = meta.shape.reduce((x, y) => x * y, 1);
    const data = msg.data;
    if (n !== data.length) throw new PipelineError(`${what} has ${data.length} values for shape [${meta.shape}]`);
    const dtype = data instanceof Int32Array ? 'int32' : 'float32';
    return leafOwned(tf.tensor(data as Float32Array, meta.shape, dtype), grad);
  }

  /** RECV_F: stage s receives its input from stage s-1. */
  protected async recvF(a: Action, grad: boolean): Promise<void> {
    const x = await this.receive(0, a.stage - 1, a, `the activation of micro-batch ${a.mb} from stage ${a.stage - 1}`, grad);
    this.received.set(this.slot(a.stage, a.mb), x);
  }

  /** Frees whatever the step still holds (after an error, or what was never consumed). */
  dispose(): void {
    for (const t of this.received.values()) t.dispose();
    this.received.clear();
  }
}

/** One training step's state, typed by kind, and one handler per action. */
export class TrainingStep extends StepBase {
  /** After F, until B: a stage's input (null for stage 0) and its output (the weighted loss for the last stage). */
  private readonly stash = new Map<number, { input: Tensor | null; output: Tensor }>();
  /** Output gradients waiting for a stage's B: received, or handed over by the next stage on this rank. */
  private readonly outputGrads = new Map<number, Tensor>();
  /** Input gradients computed by B, waiting for SEND_B. */
  private readonly inputGrads = new Map<number, Tensor>();
  /** Weight halves of split backwards, waiting for W. */
  private readonly pendingW = new Map<number, WeightGradients>();
  /** Micro-batches stashed (between F and B) now, and the most at once. */
  stashed = 0;
  peakStash = 0;
  peakPendingW = 0;
  /** Most TensorFlow.js bytes held after any action of this step. */
  peakBytes = 0;

  constructor(
    ctx: StepContext,
    mbs: Microbatch[],
    /** The loss weight of each micro-batch (its share of the batch's targets). */
    private readonly weightOf: number[],
    /** (stage, mb) slots whose backward the table splits into B and W. */
    private readonly split: Set<string>,
  ) {
    super(ctx, mbs);
  }

  /** Runs one action of the table (STEP is the pipeline's). */
  async run(a: Action): Promise<void> {
    switch (a.op) {
      case 'F':
        this.forward(a);
        break;
      case 'SEND_F':
        this.send(this.stashed0(a).output.data, 0, a, a.stage + 1);
        break;
      case 'RECV_F':
        await this.recvF(a, true);
        break;
      case 'B':
        this.backward(a);
        break;
      case 'SEND_B': {
        const dx = take(this.inputGrads, this.slot(a.stage, a.mb), a);
        this.send(dx.data, 1, a, a.stage - 1);
        dx.dispose();
        break;
      }
      case 'RECV_B':
        this.outputGrads.set(this.slot(a.stage, a.mb), await this.receive(1, a.stage + 1, a, `the gradient of micro-batch ${a.mb} from stage ${a.stage + 1}`, false));
        break;
      case 'W':
        take(this.pendingW, this.slot(a.stage, a.mb), a).run();
        break;
      case 'STEP':
        throw new PipelineError('STEP is run by the pipeline, not by a step');
    }
    this.peakBytes = Math.max(this.peakBytes, tf.memory().numBytes);
  }

  private stashed0(a: Action): { input: Tensor | null; output: Tensor } {
    const v = this.stash.get(this.slot(a.stage, a.mb));
    if (!v) throw new PipelineError(`${formatAction(a)}: stage ${a.stage} has no output for micro-batch ${a.mb} (its F has not run)`);
    return v;
  }

  private forward(a: Action): void {
    const stage = this.stage(a.stage);
    const x = this.input(a);
    const run = (t: Tensor) => stage.forward(t);
    let out = this.ctx.recompute.has(a.stage) ? checkpoint(run, x) : tidy(() => run(x));
    const last = a.stage === this.ctx.numStages - 1;
    if (last) {
      const target = this.mbs[a.mb]!.target;
      const lossFn = this.ctx.loss;
      if (!target) throw new PipelineError(`rank ${this.ctx.rank} holds the last stage and needs the target of micro-batch ${a.mb}`);
      if (!lossFn) throw new PipelineError('training needs a loss: pass `loss` to Pipeline.create');
      const l = tidy(() => scale(lossFn(out, target), this.weightOf[a.mb]!));
      out.dispose();
      if (l.size !== 1) {
        l.dispose();
        throw new PipelineError(`the loss must be a scalar (reduce it by mean), found shape [${l.shape}]`);
      }
      this.lossSum += l.item();
      out = l;
    }
    this.stash.set(this.slot(a.stage, a.mb), { input: a.stage === 0 ? null : x, output: out });
    this.peakStash = Math.max(this.peakStash, ++this.stashed);
    // The next stage on this rank takes a new leaf of the same values (no copy).
    if (!last && this.isLocal(a.stage + 1)) this.received.set(this.slot(a.stage + 1, a.mb), leafOwned(tf.clone(out.data), true));
  }

  private backward(a: Action): void {
    const k = this.slot(a.stage, a.mb);
    const { input: x, output: out } = take(this.stash, k, a);
    let dy: Tensor | undefined;
    try {
      if (a.stage < this.ctx.numStages - 1) {
        dy = take(this.outputGrads, k, a);
        if (dy.shape.join() !== out.shape.join()) {
          throw new PipelineError(`a gradient of shape [${dy.shape}] arrived for stage ${a.stage}'s output of shape [${out.shape}] (micro-batch ${a.mb})`);
        }
      }
      const inputs = x != null && x.requiresGrad ? [x] : [];
      let dx: Tensor | null;
      if (this.split.has(`${a.stage}:${a.mb}`)) {
        const r = backwardInput(out, dy, inputs);
        this.pendingW.set(k, r.weights);
        this.peakPendingW = Math.max(this.peakPendingW, this.pendingW.size);
        dx = r.inputGrads[0] ?? null;
      } else {
        dx = backward(out, dy, { inputs })[0] ?? null;
      }
      this.stashed--;
      if (inputs.length) {
        dx ??= fromTf(tf.zerosLike(x!.data));
        if (this.isLocal(a.stage - 1)) this.outputGrads.set(this.slot(a.stage - 1, a.mb), dx);
        else this.inputGrads.set(k, dx);
      }
    } finally {
      out.dispose();
      dy?.dispose();
      x?.dispose();
    }
  }

  override dispose(): void {
    super.dispose();
    for (const { input, output } of this.stash.values()) (input?.dispose(), output.dispose());
    for (const map of [this.outputGrads, this.inputGrads]) for (const t of map.values()) t.dispose();
    for (const w of this.pendingW.values()) w.discard();
    this.stash.clear();
    this.outputGrads.clear();
    this.inputGrads.clear();
    this.pendingW.clear();
  }
}

/** One forward-only step (evaluation, prediction): nothing is recorded for backward. */
export class InferenceStep extends StepBase {
  /** Outputs of stages that send them on, until SEND_F. */
  private readonly outputs = new Map<number, Tensor>();
  /** The last stage's output per micro-batch. */
  readonly results: Tensor[] = [];

  constructor(
    ctx: StepContext,
    mbs: Microbatch[],
    private readonly weightOf: number[],
  ) {
    super(ctx, mbs);
  }

  async run(a: Action): Promise<void> {
    switch (a.op) {
      case 'F':
        this.forward(a);
        break;
      case 'SEND_F': {
        const out = take(this.outputs, this.slot(a.stage, a.mb), a);
        this.send(out.data, 0, a, a.stage + 1);
        out.dispose();
        break;
      }
      case 'RECV_F':
        await this.recvF(a, false);
        break;
      default:
        throw new PipelineError(`${formatAction(a)} in a forward-only step`);
    }
  }

  private forward(a: Action): void {
    const x = this.input(a);
    const stage = this.stage(a.stage);
    const out = noGrad(() => tidy(() => stage.forward(x)));
    if (a.stage !== 0) x.dispose();
    if (a.stage === this.ctx.numStages - 1) {
      this.results[a.mb] = out;
      const target = this.mbs[a.mb]?.target;
      const lossFn = this.ctx.loss;
      if (target && lossFn) {
        const l = noGrad(() => tidy(() => lossFn(out, target)));
        this.lossSum += l.item() * this.weightOf[a.mb]!;
        l.dispose();
      }
    } else if (this.isLocal(a.stage + 1)) {
      this.received.set(this.slot(a.stage + 1, a.mb), out);
    } else {
      this.outputs.set(this.slot(a.stage, a.mb), out);
    }
  }

  override dispose(): void {
    super.dispose();
    for (const t of this.outputs.values()) t.dispose();
    for (const t of this.results) t?.dispose();
    this.outputs.clear();
  }
}
