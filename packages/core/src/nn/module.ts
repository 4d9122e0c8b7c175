import { tf } from '../tf.js';
import type * as TF from '@tensorflow/tfjs-core';
import { CheckpointError, fmtShape } from '../errors.js';
import { Tensor } from '../tensor.js';

/** A trainable tensor owned by a module: requires grad, and outlives every `tidy` scope. */
export class Parameter extends Tensor {
  constructor(data: TF.Tensor) {
    super(tf.keep(data), true);
    this.keep();
  }
}

/** A piece of module state that is saved with the model but not trained (running statistics). */
export interface BufferRef {
  get(): TF.Tensor;
  set(t: TF.Tensor): void;
}

/**
 * Base class of layers and models. Parameters and sub-modules are found among the instance's own
 * fields (arrays of modules included), in the order they were assigned, as in PyTorch; their names
 * are the dotted paths to them (`layers.0.weight`).
 */
export abstract class Module {
  /** Training mode (dropout active, batch statistics) or evaluation mode. */
  training = true;

  /** Runs the module. */
  abstract forward(x: Tensor): Tensor;

  /** Runs the module (alias of forward, for call sites that read better). */
  call(x: Tensor): Tensor {
    return this.forward(x);
  }

  /** Direct children: [name, module] in assignment order. */
  namedChildren(): [string, Module][] {
    const out: [string, Module][] = [];
    for (const [k, v] of Object.entries(this)) {
      if (k.startsWith('_')) continue;
      if (v instanceof Module) out.push([k, v]);
      else if (Array.isArray(v)) v.forEach((m, i) => m instanceof Module && out.push([`${k}.${i}`, m]));
    }
    return out;
  }

  /** Parameters held directly by this module (not by children). */
  protected ownParameters(): [string, Parameter][] {
    return Object.entries(this).filter((e): e is [string, Parameter] => e[1] instanceof Parameter && !e[0].startsWith('_'));
  }

  /** Buffers held directly by this module; layers with running statistics override this. */
  protected ownBuffers(): [string, BufferRef][] {
    return [];
  }

  /** Every module in the tree with its path ('' for this one), parents before children. */
  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [[prefix, this]];
    for (const [k, m] of this.namedChildren()) out.push(...m.namedModules(prefix ? `${prefix}.${k}` : k));
    return out;
  }

  /**
   * Every parameter with its dotted path. A parameter shared by several modules (an output head tied
   * to the input embedding) is listed once, under its first path, unless `removeDuplicate` is false.
   */
  namedParameters(removeDuplicate = true): [string, Parameter][] {
    const out: [string, Parameter][] = [];
    const seen = new Set<Parameter>();
    for (const [path, m] of this.namedModules()) {
      for (const [k, p] of m.ownParameters()) {
        const name = path ? `${path}.${k}` : k;
        if (seen.has(p)) {
          if (!removeDuplicate) out.push([name, p]);
          continue;
        }
        seen.add(p);
        p.name = name;
        out.push([name, p]);
      }
    }
    return out;
  }

  /** Every parameter, each once. */
  parameters(): Parameter[] {
    return this.namedParameters().map((e) => e[1]);
  }

  /** Every buffer with its dotted path. */
  namedBuffers(): [string, BufferRef][] {
    const out: [string, BufferRef][] = [];
    for (const [path, m] of this.namedModules()) {
      for (const [k, b] of m.ownBuffers()) out.push([path ? `${path}.${k}` : k, b]);
    }
    return out;
  }

  /** The number of trainable scalars. */
  numParameters(): number {
    return this.parameters().reduce((a, p) => a + p.size, 0);
  }

  /** Sets training mode on this module and every child. */
  train(mode = true): this {
    for (const [, m] of this.namedModules()) m.training = mode;
    return this;
  }

  /** Sets evaluation mode on this module and every child. */
  eval(): this {
    return this.train(false);
  }

  /** Clears every parameter's gradient. */
  zeroGrad(): void {
    for (const p of this.parameters()) {
      p.clearGrad();
    }
  }

  /** Parameters and buffers by name (the tensors themselves, not copies). */
  stateDict(): Map<string, TF.Tensor> {
    const out = new Map<string, TF.Tensor>();
    for (const [k, p] of this.namedParameters()) out.set(k, p.data);
    for (const [k, b] of this.namedBuffers()) out.set(k, b.get());
    return out;
  }

  /**
   * Copies values into parameters and buffers by name. Strict (the default): every name must be
   * present with its shape, and no other names; otherwise an error lists what differs.
   */
  loadStateDict(state: Map<string, TF.Tensor> | Record<string, TF.Tensor>, strict = true): void {
    const src = state instanceof Map ? state : new Map(Object.entries(state));
    const params = this.namedParameters();
    const buffers = this.namedBuffers();
    const problems: string[] = [];
    const known = new Set<string>();
    const check = (name: string, shape: number[]) => {
      known.add(name);
      const t = src.get(name);
      if (t == null) {
        if (strict) problems.push(`missing '${name}'`);
        return null;
      }
      if (fmtShape(t.shape) !== fmtShape(shape)) {
        problems.push(`'${name}' has shape ${fmtShape(t.shape)} in the source, ${fmtShape(shape)} in the model`);
        return null;
      }
      return t;
    };
    const planned: [() => void][] = [];
    // A shared parameter is stored once, under its first path; a source that also (or only) has it
    // under another of its paths is accepted.
    const aliases = new Map<Parameter, string[]>();
    for (const [k, p] of this.namedParameters(false)) aliases.set(p, [...(aliases.get(p) ?? []), k]);
    for (const [k, p] of params) {
      const names = aliases.get(p) ?? [k];
      names.slice(1).forEach((a) => known.add(a));
      const t = check(names.find((a) => src.has(a)) ?? k, p.shape);
      if (t) planned.push([() => { const old = p.data; p.data = tf.keep(tf.cast(t, 'float32')); old.dispose(); }]);
    }
    for (const [k, b] of buffers) {
      const t = check(k, b.get().shape);
      if (t) planned.push([() => { const old = b.get(); b.set(tf.keep(tf.clone(t))); old.dispose(); }]);
    }
    if (strict) for (const k of src.keys()) if (!known.has(k)) problems.push(`unexpected '${k}'`);
    if (problems.length) throw new CheckpointError(`state does not match the model: ${problems.join('; ')}`);
    for (const [apply] of planned) apply();
  }

  /** Frees every parameter, gradient and buffer. */
  dispose(): void {
    for (const p of this.parameters()) p.dispose();
    for (const [, b] of this.namedBuffers()) b.get().dispose();
  }
}
