import type { Optimizer } from './optimizer.js';

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
  readonly baseLr: number;
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
}
