import type { Communicator } from '@hpdl/comm';
import type { Module, Tensor } from '@hpdl/core';
import type { InputSpec, Pipeline } from '@hpdl/pipeline';

/** The options every job takes (see cli.ts), after parsing. */
export interface Options {
  stages: number;
  replicas: number;
  microbatches: number;
  schedule: string;
  /** Undefined: the schedule's own (2 for V schedules, else 1). */
  stagesPerRank?: number;
  balance: string;
  epochs: number;
  batchSize: number;
  lr: number;
  backend?: string;
  seed: number;
  out: string;
  checkpointEvery: number;
  resume: boolean;
  maxSteps?: number;
  /** Times all processes are started again after one fails (multi-process runs). */
  maxRestarts: number;
  logEvery: number;
  trace: boolean;
  /** Job-specific options. */
  [key: string]: unknown;
}

/** A training job: its data, model, batches and evaluation. Every method runs on every rank. */
export interface Job<D> {
  name: string;
  summary: string;
  /** Defaults of the common options, and the job's own options: [flags, description, default]. */
  defaults: Partial<Options>;
  options: [string, string, string?][];
  /** Loads (or generates) the data; a missing dataset is an Error whose message is one line. */
  load(o: Options): D;
  /** The whole model; called on every rank with the same seed set. */
  model(o: Options, d: D): Module[];
  /** One sample's input (batch 1), to check the stages chain. */
  sampleInput(o: Options, d: D): InputSpec;
  stepsPerEpoch(o: Options, d: D): number;
  /** Batch `index` of `epoch`, this replica's share of it (a deterministic function of its arguments). */
  batch(o: Options, d: D, epoch: number, index: number, replica: number): { input: Tensor; target: Tensor };
  /** Collective over the world: metrics on held-out data, the same on every rank. */
  evaluate(pipe: Pipeline, o: Options, d: D): Promise<Record<string, number>>;
  /** The metric plotted beside the loss, and how it reads. */
  evalKey: string;
  evalTitle: string;
  /** What the summary says of the metrics. */
  describe(m: Record<string, number>): string;
  /** Collective: anything to show at the end (a generated sample); lines printed by world rank 0. */
  finish?(pipe: Pipeline, world: Communicator, o: Options, d: D): Promise<string[]>;
}
