import type * as tf from '@tensorflow/tfjs-core';
import { CheckpointError } from '../errors.js';
import type { Module } from '../nn/module.js';
import { checkSchedulerState, type LRScheduler, type LRSchedulerState } from '../optim/lr.js';
import type { Optimizer } from '../optim/optimizer.js';
import { loadSafetensors, saveSafetensors } from './safetensors.js';

const OPT_PREFIX = '__optimizer__.';
const FORMAT = 'hpdl-checkpoint-1';

/** What a checkpoint holds besides tensors: any JSON-serialisable values (epoch, step, RNG state). */
export type Extra = Record<string, unknown>;

/** What a checkpoint holds: a model, and optionally its optimizer, learning-rate scheduler and extra values. */
export interface CheckpointParts {
  model: Module;
  optimizer?: Optimizer;
  scheduler?: LRScheduler;
  extra?: Extra;
}

/**
 * Saves a model's parameters and buffers (under their own names, readable by any safetensors
 * reader), an optimizer's and a learning-rate scheduler's state and extra values, atomically.
 */
export function saveCheckpoint(path: string, parts: CheckpointParts): void {
  const tensors = new Map<string, tf.Tensor>(parts.model.stateDict());
  const metadata: Record<string, string> = { format: FORMAT };
  if (parts.optimizer) {
    const st = parts.optimizer.stateDict();
    for (const [k, t] of st.tensors) tensors.set(OPT_PREFIX + k, t);
    metadata.optimizer = JSON.stringify(st.meta);
  }
  if (parts.scheduler) metadata.scheduler = JSON.stringify(parts.scheduler.stateDict());
  if (parts.extra) metadata.extra = JSON.stringify(parts.extra);
  saveSafetensors(path, tensors, metadata);
}

/**
 * Loads a checkpoint into a model (and optimizer): names and shapes must match exactly, and
 * nothing is changed unless all of them do. Returns the extra values saved with it.
 */
export function loadCheckpoint(path: string, parts: Omit<CheckpointParts, 'extra'>): Extra {
  const { tensors, metadata } = loadSafetensors(path);
  try {
    if (parts.scheduler && metadata.scheduler == null) throw new CheckpointError(`${path} holds no learning-rate scheduler state`);
    const schedulerState: unknown = parts.scheduler ? JSON.parse(metadata.scheduler!) : null;
    if (parts.scheduler) checkSchedulerState(schedulerState);
    const modelState = new Map<string, tf.Tensor>();
    const optState = new Map<string, tf.Tensor>();
    for (const [k, t] of tensors) (k.startsWith(OPT_PREFIX) ? optState : modelState).set(k.slice(k.startsWith(OPT_PREFIX) ? OPT_PREFIX.length : 0), t);
    if (parts.optimizer) {
      if (metadata.optimizer == null) throw new CheckpointError(`${path} holds no optimizer state`);
      // Checked before the model changes: a mismatch must leave both untouched.
      const meta = JSON.parse(metadata.optimizer);
      if (meta.kind !== parts.optimizer.constructor.name) {
        throw new CheckpointError(`${path} holds ${meta.kind} state, the optimizer is ${parts.optimizer.constructor.name}`);
      }
      parts.optimizer.checkStateDict({ tensors: optState, meta });
      parts.model.loadStateDict(modelState);
      parts.optimizer.loadStateDict({ tensors: optState, meta });
    } else {
      parts.model.loadStateDict(modelState);
    }
    // After the optimizer: the scheduler sets the rate the optimizer continues with.
    if (parts.scheduler) parts.scheduler.loadStateDict(schedulerState as LRSchedulerState);
    return metadata.extra ? (JSON.parse(metadata.extra) as Extra) : {};
  } finally {
    for (const t of tensors.values()) t.dispose();
  }
}
