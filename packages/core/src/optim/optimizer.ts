import { tf } from '../tf.js';
import type * as TF from '@tensorflow/tfjs-core';
import { noGrad } from '../autograd.js';
import { CheckpointError, fmtShape } from '../errors.js';
import type { Parameter } from '../nn/module.js';

/** An optimizer's state for saving: tensors by `<param>.<slot>` and plain settings. */
export interface OptimizerState {
  tensors: Map<string, TF.Tensor>;
  meta: { kind: string; lr: number; step: number; [k: string]: unknown };
}

/**
 * Base class: holds the parameters, per-parameter state tensors (slots such as momentum), the
 * learning rate and the step count. `step()` applies one update from the parameters' `.grad`.
 */
export abstract class Optimizer {
  lr: number;
  /** Completed steps. */
  stepCount = 0;
  protected readonly slots: Map<string, TF.Tensor>[];

  constructor(readonly params: Parameter[], lr: number) {
    if (!(lr >= 0)) throw new Error(`learning rate must be a non-negative number, found ${lr}`);
    this.lr = lr;
    this.slots = params.map(() => new Map());
  }

  /** Clears every parameter's gradient. */
  zeroGrad(): void {
    for (const p of this.params) {
      p.clearGrad();
    }
  }

  /** Computes a parameter's new value from its value, gradient and slots (inside tf.tidy). */
  protected abstract update(p: TF.Tensor, g: TF.Tensor, slots: Map<string, TF.Tensor>, step: number): TF.Tensor;

  /** Applies one update to every parameter that has a gradient. */
  step(): void {
    this.stepCount++;
    noGrad(() => {
      this.params.forEach((p, i) => {
        if (p.grad == null) return;
        const slots = this.slots[i]!;
        const before = new Map(slots);
        const next = tf.tidy(() => {
          const v = this.update(p.data, p.grad!.data, slots, this.stepCount);
          for (const t of slots.values()) tf.keep(t);
          return v;
        });
        for (const [k, old] of before) if (slots.get(k) !== old) old.dispose();
        p.data.dispose();
        p.data = tf.keep(next);
      });
    });
  }

  /** Settings beyond lr and step that a subclass saves. */
  protected abstract settings(): Record<string, unknown>;

  private slotName(i: number, slot: string): string {
    return `${this.params[i]!.name ?? String(i)}.${slot}`;
  }

  /** State tensors (by parameter name and slot) and settings, to save in a checkpoint. */
  stateDict(): OptimizerState {
    const tensors = new Map<string, TF.Tensor>();
    this.slots.forEach((s, i) => s.forEach((t, k) => tensors.set(this.slotName(i, k), t)));
    return { tensors, meta: { kind: this.constructor.name, lr: this.lr, step: this.stepCount, ...this.settings() } };
  }

  /** Restores state saved by stateDict; errors (changing nothing) if it belongs to another optimizer or model. */
  loadStateDict(state: OptimizerState): void {
    const next = this.checkStateDict(state);
    this.slots.forEach((s, i) => {
      s.forEach((t) => t.dispose());
      s.clear();
      next[i]!.forEach((t, k) => s.set(k, tf.keep(tf.clone(t))));
    });
    this.lr = state.meta.lr;
    this.stepCount = state.meta.step;
  }

  /** Checks that saved state fits this optimizer and its parameters; returns it sorted per parameter. */
  checkStateDict(state: OptimizerState): Map<string, TF.Tensor>[] {
    if (state.meta.kind !== this.constructor.name) {
      throw new CheckpointError(`optimizer state is for ${state.meta.kind}, this optimizer is ${this.constructor.name}`);
    }
    const next = this.params.map(() => new Map<string, TF.Tensor>());
    const used = new Set<string>();
    this.params.forEach((p, i) => {
      const prefix = `${p.name ?? String(i)}.`;
      for (const [k, t] of state.tensors) {
        if (!k.startsWith(prefix) || k.slice(prefix.length).includes('.')) continue;
        if (fmtShape(t.shape) !== fmtShape(p.shape)) {
          throw new CheckpointError(`optimizer state '${k}' has shape ${fmtShape(t.shape)}, parameter has ${fmtShape(p.shape)}`);
        }
        next[i]!.set(k.slice(prefix.length), t);
        used.add(k);
      }
    });
    const unknown = [...state.tensors.keys()].filter((k) => !used.has(k));
    if (unknown.length) throw new CheckpointError(`optimizer state has entries for no parameter: ${unknown.slice(0, 5).join(', ')}`);
    return next;
  }

  /** Frees the state tensors. */
  dispose(): void {
    for (const s of this.slots) {
      s.forEach((t) => t.dispose());
      s.clear();
    }
  }
}
