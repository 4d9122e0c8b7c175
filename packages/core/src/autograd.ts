import { tf } from './tf.js';
import type * as TF from '@tensorflow/tfjs-core';
import { AutogradError, fmtShape } from './errors.js';
import { installBackward, Tensor } from './tensor.js';

/**
 * A gradient given as the product `multiply(lhs, rhs)` = lhs^T @ rhs of two matrices whose rows are
 * examples (a linear layer's weight gradient x^T dy). Into a parameter with `deferGradProducts`,
 * the factors are kept and the products of several backward passes are computed as one, over all
 * their rows, when `.grad` is read; anywhere else the product is computed at once.
 */
export class GradProduct {
  constructor(
    readonly lhs: TF.Tensor,
    readonly rhs: TF.Tensor,
    readonly multiply: (lhs: TF.Tensor, rhs: TF.Tensor) => TF.Tensor,
  ) {}
  get shape(): number[] {
    return [this.lhs.shape[1]!, this.rhs.shape[1]!];
  }
  dispose(): void {
    this.lhs.dispose();
    this.rhs.dispose();
  }
  /** The product as a tensor; the factors are disposed. */
  compute(): TF.Tensor {
    const g = tf.keep(tf.tidy(() => this.multiply(this.lhs, this.rhs)));
    this.dispose();
    return g;
  }
}

/** What a rule returns for one input: its gradient, a product to be computed, or null. */
export type Grad = TF.Tensor | GradProduct | null;

/**
 * A backward rule: given the gradient of the output, the tensors it saved, and which inputs need a
 * gradient, returns one gradient per input (null where not needed). Runs inside tf.tidy.
 */
export type BackwardFn = (dy: TF.Tensor, saved: TF.Tensor[], needs: boolean[]) => Grad[];

/** A backward rule of an operation with several outputs: one gradient per output (zeros where none flowed). */
export type MultiBackwardFn = (dys: TF.Tensor[], saved: TF.Tensor[], needs: boolean[]) => Grad[];

const asTensor = (g: TF.Tensor | GradProduct): TF.Tensor => (g instanceof GradProduct ? g.compute() : g);

/** Where the gradient of one input goes: output `index` of the node that produced it, or the leaf itself. */
type Edge = { node: Node; index: number } | Tensor | null;

let nextId = 0;

/** One recorded operation: its inputs' edges, what its backward needs, and the rule. */
export class Node {
  readonly id = nextId++;
  /** Saved tensors; emptied once backward no longer needs them. */
  saved: TF.Tensor[];
  released = false;
  constructor(
    readonly name: string,
    readonly edges: Edge[],
    readonly inputShapes: number[][],
    readonly outShapes: number[][],
    saved: TF.Tensor[],
    readonly fn: MultiBackwardFn,
    private readonly onRelease?: () => void,
  ) {
    this.saved = saved;
  }
  /** Frees what this node saved for backward (and whatever its rule still holds). */
  release(): void {
    for (const t of this.saved) t.dispose();
    this.saved = [];
    this.released = true;
    this.onRelease?.();
  }
}

let gradEnabled = true;

/** Whether operations are being recorded for backward. */
export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Runs `fn` without recording operations (inference, optimizer updates). */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/** Enables or disables recording; returns the previous setting. */
export function setGradEnabled(flag: boolean): boolean {
  const prev = gradEnabled;
  gradEnabled = flag;
  return prev;
}

/**
 * Wraps an operation's output. If recording and any input requires a gradient, the node keeps its
 * own references to `save` (clones share storage) until backward has used them.
 */
export function record(name: string, inputs: Tensor[], out: TF.Tensor, save: TF.Tensor[], fn: BackwardFn): Tensor {
  return recordMulti(name, inputs, [out], save, (dys, saved, needs) => fn(dys[0]!, saved, needs))[0]!;
}

// Sets of the leaves that require grad used by operations while `captureLeaves` runs.
const captures: Set<Tensor>[] = [];

/** Runs `fn` and lists the leaves requiring grad (parameters) its operations used, recorded or not. */
export function captureLeaves<T>(fn: () => T): { result: T; leaves: Tensor[] } {
  const seen = new Set<Tensor>();
  captures.push(seen);
  try {
    return { result: fn(), leaves: [...seen] };
  } finally {
    captures.pop();
  }
}

/**
 * Like `record`, for an operation with several outputs. `onRelease` runs when the node frees what
 * it saved (after backward, or when a split backward's weight half is discarded).
 */
export function recordMulti(name: string, inputs: Tensor[], outs: TF.Tensor[], save: TF.Tensor[], fn: MultiBackwardFn, onRelease?: () => void): Tensor[] {
  if (captures.length) for (const t of inputs) if (t.requiresGrad && t.gradFn == null) for (const c of captures) c.add(t);
  const isInputOrOutput = (s: TF.Tensor) => outs.includes(s) || inputs.some((i) => i.data === s);
  if (!gradEnabled || !inputs.some((t) => t.requiresGrad)) {
    for (const s of save) if (!isInputOrOutput(s)) s.dispose();
    return outs.map((o) => new Tensor(o));
  }
  const edges: Edge[] = inputs.map((t) =>
    !t.requiresGrad ? null : t.gradFn ? { node: t.gradFn, index: t.outputIndex } : t,
  );
  // Our own references: the caller may dispose the input or output Tensors before backward runs.
  const saved = save.map((s) => tf.keep(isInputOrOutput(s) ? tf.clone(s) : s));
  const node = new Node(name, edges, inputs.map((t) => t.data.shape.slice()), outs.map((o) => o.shape.slice()), saved, fn, onRelease);
  return outs.map((o, i) => {
    const t = new Tensor(o, true, node);
    t.outputIndex = i;
    return t;
  });
}

// ---------------------------------------------------------------------------------------------
// The engine

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Nodes reachable from `roots`, children before parents (iterative DFS: RNN graphs are deep). */
function topoOrder(roots: Node[]): Node[] {
  const order: Node[] = [];
  const state = new Map<Node, number>(); // 1 = on stack, 2 = done
  const stack: [Node, number][] = [];
  for (const r of roots) {
    if (state.has(r)) continue;
    stack.push([r, 0]);
    state.set(r, 1);
    while (stack.length) {
      const top = stack[stack.length - 1]!;
      const [node, i] = top;
      if (i < node.edges.length) {
        top[1]++;
        const e = node.edges[i];
        if (e != null && !(e instanceof Tensor) && !state.has(e.node)) {
          state.set(e.node, 1);
          stack.push([e.node, 0]);
        }
      } else {
        stack.pop();
        state.set(node, 2);
        order.push(node);
      }
    }
  }
  return order;
}

interface Plan {
  order: Node[]; // children first
  reachesInput: Set<Node>;
  reachesParam: Set<Node>;
  inputs: Map<Tensor, number>;
}

function plan(roots: Node[], inputs: Tensor[]): Plan {
  const order = topoOrder(roots);
  const inputIndex = new Map<Tensor, number>();
  inputs.forEach((t, i) => inputIndex.set(t, i));
  const reachesInput = new Set<Node>();
  const reachesParam = new Set<Node>();
  for (const n of order) {
    for (const e of n.edges) {
      if (e == null) continue;
      if (!(e instanceof Tensor)) {
        if (reachesInput.has(e.node)) reachesInput.add(n);
        if (reachesParam.has(e.node)) reachesParam.add(n);
      } else if (inputIndex.has(e)) reachesInput.add(n);
      else reachesParam.add(n);
    }
  }
  return { order, reachesInput, reachesParam, inputs: inputIndex };
}

function addInto(prev: TF.Tensor | undefined, g: TF.Tensor): TF.Tensor {
  if (prev == null) return g;
  const sum = tf.keep(tf.add(prev, g));
  prev.dispose();
  g.dispose();
  return sum;
}

function accumulate(pending: Map<Node, (TF.Tensor | undefined)[]>, node: Node, index: number, g: TF.Tensor): void {
  let slots = pending.get(node);
  if (slots == null) {
    slots = new Array(node.outShapes.length);
    pending.set(node, slots);
  }
  slots[index] = addInto(slots[index], g);
}

function accumulateLeaf(leaf: Tensor, grad: TF.Tensor | GradProduct): void {
  if (leaf.isDisposed) {
    grad.dispose();
    throw new AutogradError(`backward reached a leaf ${leaf.name ?? ''} of shape ${fmtShape(grad.shape)} that was disposed`);
  }
  if (grad instanceof GradProduct && leaf.deferGradProducts) {
    leaf.deferGradProduct(grad.lhs, grad.rhs, grad.multiply);
    return;
  }
  const g = asTensor(grad);
  if (leaf.grad == null || leaf.grad.isDisposed) {
    leaf.grad = new Tensor(g).keep();
  } else {
    leaf.grad.data = addInto(leaf.grad.data, g);
  }
}

/** Which phase of a backward pass runs: both, input gradients only (B), or weights only (W). */
type Phase = 'full' | 'input' | 'weight';

interface PassState {
  p: Plan;
  pending: Map<Node, (TF.Tensor | undefined)[]>; // node -> gradients of its outputs
  inputGrads: (TF.Tensor | null)[];
  stored: Map<Node, TF.Tensor[]>; // B phase: output gradients kept for W
  retainGraph: boolean;
}

function edgeWanted(phase: Phase, p: Plan, node: Node, e: Edge): boolean {
  if (e == null) return false;
  const toInput = e instanceof Tensor ? p.inputs.has(e) : p.reachesInput.has(e.node);
  const toParam = e instanceof Tensor ? !p.inputs.has(e) : p.reachesParam.has(e.node);
  if (phase === 'full') return toInput || toParam;
  if (phase === 'input') return toInput;
  // weight phase: from a node that reached an input, only edges B did not already follow
  return toParam && !(p.reachesInput.has(node) && toInput);
}

function runPhase(phase: Phase, st: PassState): void {
  const { p, pending } = st;
  for (let k = p.order.length - 1; k >= 0; k--) {
    const node = p.order[k]!;
    if (phase === 'input' && !p.reachesInput.has(node)) continue;
    if (phase === 'weight' && !p.reachesParam.has(node)) continue;
    let dys: TF.Tensor[] | undefined;
    if (phase === 'weight' && st.stored.has(node)) {
      dys = st.stored.get(node);
      st.stored.delete(node);
    } else {
      const slots = pending.get(node);
      pending.delete(node);
      // Outputs no gradient reached get zeros, so that rules need not special-case them.
      if (slots != null) dys = node.outShapes.map((shape, i) => slots[i] ?? tf.keep(tf.zeros(shape)));
    }
    if (dys == null) continue;
    const needs = node.edges.map((e) => edgeWanted(phase, p, node, e));
    const laterWeights =
      phase === 'input' && node.edges.some((e) => edgeWanted('weight', p, node, e));
    if (node.released) {
      dys.forEach((d) => d.dispose());
      throw new AutogradError(
        `backward through '${node.name}' a second time: its saved tensors were already freed (pass retainGraph to keep them)`,
      );
    }
    if (needs.some(Boolean)) {
      // tf.tidy's container type has no null: keep the returned gradients by hand instead.
      let grads: Grad[] = [];
      tf.tidy(() => {
        const raw = node.fn(dys!, node.saved, needs);
        // A rule may hand back dy itself or one tensor twice (add): give each edge its own reference.
        const shared = (t: TF.Tensor) => dys!.includes(t) || node.saved.includes(t);
        const own = (t: TF.Tensor, i: number) => (shared(t) || raw.indexOf(t) !== i ? tf.clone(t) : t);
        // A product's factors are views of the pass's tensors (x, dy): references of their own too.
        const ownFactor = (t: TF.Tensor) => (shared(t) || raw.includes(t) ? tf.clone(t) : t);
        grads = raw.map((g, i) => (g instanceof GradProduct ? new GradProduct(ownFactor(g.lhs), ownFactor(g.rhs), g.multiply) : g && own(g, i)));
        for (const g of grads) {
          if (g instanceof GradProduct) tf.keep(g.lhs), tf.keep(g.rhs);
          else if (g) tf.keep(g);
        }
      });
      for (let i = 0; i < node.edges.length; i++) {
        const g = grads[i];
        if (g == null) continue;
        if (!needs[i]) {
          g.dispose();
          continue;
        }
        if (!sameShape(g.shape, node.inputShapes[i]!)) {
          const msg = `gradient of '${node.name}' for input ${i} has shape ${fmtShape(g.shape)}, expected ${fmtShape(node.inputShapes[i]!)}`;
          grads.forEach((x) => x?.dispose());
          throw new AutogradError(msg);
        }
        const e = node.edges[i]!;
        if (!(e instanceof Tensor)) accumulate(pending, e.node, e.index, asTensor(g));
        else if (p.inputs.has(e)) {
          const j = p.inputs.get(e)!;
          st.inputGrads[j] = addInto(st.inputGrads[j] ?? undefined, asTensor(g));
        } else accumulateLeaf(e, g);
      }
    }
    if (laterWeights) st.stored.set(node, dys);
    else {
      dys.forEach((d) => d.dispose());
      if (!st.retainGraph) node.release();
    }
  }
}

function seed(outputs: Tensor[], gradients: (Tensor | TF.Tensor)[] | undefined, st: PassState): void {
  if (gradients != null && gradients.length !== outputs.length) {
    throw new AutogradError(`backward got ${gradients.length} gradients for ${outputs.length} outputs`);
  }
  outputs.forEach((out, i) => {
    const given = gradients?.[i];
    let g: TF.Tensor;
    if (given == null) {
      if (out.size !== 1) {
        throw new AutogradError(
          `backward from a non-scalar output of shape ${fmtShape(out.shape)} needs an output gradient of that shape`,
        );
      }
      g = tf.keep(tf.onesLike(out.data));
    } else {
      const gd = given instanceof Tensor ? given.data : given;
      if (!sameShape(gd.shape, out.shape)) {
        throw new AutogradError(
          `output gradient ${i} has shape ${fmtShape(gd.shape)}, expected the output's shape ${fmtShape(out.shape)}`,
        );
      }
      g = tf.keep(tf.clone(gd));
    }
    if (!out.requiresGrad) {
      g.dispose();
      throw new AutogradError(`output ${i} of shape ${fmtShape(out.shape)} does not require grad: nothing to backpropagate`);
    }
    if (out.gradFn) accumulate(st.pending, out.gradFn, out.outputIndex, g);
    else if (st.p.inputs.has(out)) {
      st.inputGrads[st.p.inputs.get(out)!] = g;
    } else accumulateLeaf(out, g);
  });
}

function freeAll(st: PassState): void {
  for (const slots of st.pending.values()) for (const g of slots) g?.dispose();
  st.pending.clear();
}

/** Options of `backward`. */
export interface BackwardOptions {
  /** Tensors whose gradients are returned rather than accumulated into their `.grad`. */
  inputs?: Tensor[];
  /** Keep saved tensors so that backward can run through the same graph again. */
  retainGraph?: boolean;
}

/**
 * Backpropagates from `outputs` (scalars, or with `gradients` of their shapes). Gradients of
 * `opts.inputs` are returned (null where an input is not reached); those of every other leaf that
 * requires grad are added into its `.grad`.
 */
export function backward(
  outputs: Tensor | Tensor[],
  gradients?: Tensor | TF.Tensor | (Tensor | TF.Tensor)[],
  opts: BackwardOptions = {},
): (Tensor | null)[] {
  const outs = Array.isArray(outputs) ? outputs : [outputs];
  const grads = gradients == null ? undefined : Array.isArray(gradients) ? gradients : [gradients];
  const inputs = opts.inputs ?? [];
  const st: PassState = {
    p: plan(outs.map((o) => o.gradFn).filter((n): n is Node => n != null), inputs),
    pending: new Map(),
    inputGrads: inputs.map(() => null),
    stored: new Map(),
    retainGraph: opts.retainGraph ?? false,
  };
  try {
    seed(outs, grads, st);
    runPhase('full', st);
  } finally {
    freeAll(st);
  }
  return st.inputGrads.map((g) => (g ? new Tensor(g) : null));
}

/** The deferred weight-gradient half of a split backward pass (zero-bubble schedules' W). */
export class WeightGradients {
  private done = false;
  constructor(private readonly st: PassState | null) {}
  /** Whether `run` or `discard` has been called. */
  get finished(): boolean {
    return this.done;
  }
  /** Computes the parameter gradients (accumulated into `.grad`) and frees what was kept for them. */
  run(): void {
    if (this.done) throw new AutogradError('weight gradients of this backward pass were already computed');
    this.done = true;
    if (this.st == null) return;
    try {
      runPhase('weight', this.st);
    } finally {
      this.discardState();
    }
  }
  /** Frees what was kept without computing the weight gradients. */
  discard(): void {
    this.done = true;
    this.discardState();
  }
  private discardState(): void {
    if (this.st == null) return;
    freeAll(this.st);
    for (const gs of this.st.stored.values()) gs.forEach((g) => g.dispose());
    this.st.stored.clear();
    if (!this.st.retainGraph) for (const n of this.st.p.order) if (!n.released) n.release();
  }
}

/**
 * The first half of a split backward pass (zero-bubble B): computes and returns only the gradients
 * of `inputs`, keeping what the parameter gradients need; call `.weights.run()` later for those.
 */
export function backwardInput(
  outputs: Tensor | Tensor[],
  gradients: Tensor | TF.Tensor | (Tensor | TF.Tensor)[] | undefined,
  inputs: Tensor[],
): { inputGrads: (Tensor | null)[]; weights: WeightGradients } {
  const outs = Array.isArray(outputs) ? outputs : [outputs];
  const grads = gradients == null ? undefined : Array.isArray(gradients) ? gradients : [gradients];
  const st: PassState = {
    p: plan(outs.map((o) => o.gradFn).filter((n): n is Node => n != null), inputs),
    pending: new Map(),
    inputGrads: inputs.map(() => null),
    stored: new Map(),
    retainGraph: false,
  };
  try {
    seed(outs, grads, st);
    runPhase('input', st);
  } catch (e) {
    freeAll(st);
    new WeightGradients(st).discard();
    throw e;
  }
  // Gradients pending for parameter-only nodes are handed to the W phase.
  return { inputGrads: st.inputGrads.map((g) => (g ? new Tensor(g) : null)), weights: new WeightGradients(st) };
}

installBackward((outputs, gradients, opts) => {
  backward(outputs, gradients, { retainGraph: opts.retainGraph });
});
