import { CheckpointError } from '../errors.js';
import type { Optimizer } from './optimizer.js';

/** What a scheduler saves: the base rate and the steps taken (the schedule itself is code). */
export interface LRSchedulerState {
  baseLr: number;
  stepCount: number;
}

/** A learning-rate schedule: the factor applied to the base rate at a step (0-based). */
export type Schedule = (step: number) => number;

/** Multiplies the rate by `gamma` every `stepSize` steps. */
export function stepDecay(stepSize: number, gamma = 0.1): Schedule {
  return (s) => gamma ** Math.floor(s / stepSize);
}

/** Cosine annealing from 1 to `minFactor` over `total` steps, then flat. */
export function cosine(total: number, minFactor = 0): Schedule {
  return (s) => minFactor + ((1 - minFactor) * (1 + Math.cos((Math.PI * Math.min(s, total)) / total))) / 2;
}

/** Linear warm-up from `startFactor` to 1 over `steps` steps, then `after` (shifted to start at 0). */
export function linearWarmup(steps: number, after: Schedule = () => 1, startFactor = 0): Schedule {
  return (s) => (s < steps ? startFactor + ((1 - startFactor) * (s + 1)) / steps : after(s - steps));
}

/** Applies a schedule to an optimizer: call `step()` once per optimizer step. */
export class LRScheduler {
  baseLr: number;
  /** Steps taken. */
  stepCount = 0;
  constructor(readonly optimizer: Optimizer, readonly schedule: Schedule) {
    this.baseLr = optimizer.lr;
    optimizer.lr = this.baseLr * schedule(0);
  }
  /** Advances one step and sets the optimizer's learning rate. */
  step(): number {
    this.stepCount++;
    this.optimizer.lr = this.baseLr * this.schedule(this.stepCount);
    return this.optimizer.lr;
  }
  /** The current learning rate. */
  get lr(): number {
    return this.optimizer.lr;
  }
  /** Base rate and steps taken, to save beside the optimizer's state (as torch's state_dict). */
  stateDict(): LRSchedulerState {
    return { baseLr: this.baseLr, stepCount: this.stepCount };
  }
  /** Continues from saved state: the optimizer's rate becomes the schedule's at the saved step. */
  loadStateDict(state: LRSchedulerState): void {
    checkSchedulerState(state);
    this.baseLr = state.baseLr;
    this.stepCount = state.stepCount;
    this.optimizer.lr = this.baseLr * this.schedule(this.stepCount);
  }
}

/** Throws a CheckpointError unless `state` is what LRScheduler.stateDict returns. */
export function checkSchedulerState(state: unknown): asserts state is LRSchedulerState {
  const s = state as Partial<LRSchedulerState> | null;
  if (!(typeof s?.baseLr === 'number' && s.baseLr >= 0) || !(Number.isInteger(s.stepCount) && s.stepCount! >= 0)) {
    throw new CheckpointError(`learning-rate scheduler state must be { baseLr >= 0, stepCount: integer >= 0 }, found ${JSON.stringify(state)}`);
  }
}
