// The reference: the benchmark model trained in one process on the whole batch. Prints ms per step.
import { SGD, crossEntropy, initBackend, manualSeed, tidy } from '@hpdl/core';
import { batch, mlp } from './model.mjs';

const cfg = JSON.parse(process.argv[2]);
await initBackend(process.env.HPDL_BACKEND);
manualSeed(1);
const model = mlp(cfg);
const opt = new SGD(model.parameters(), { lr: 0.01 });
const data = batch(cfg, 7);
const times = [];
for (let s = 0; s < cfg.warmup + cfg.steps; s++) {
  const t0 = performance.now();
  const loss = tidy(() => crossEntropy(model.forward(data.input), data.target));
  loss.backward();
  loss.item();
  loss.dispose();
  opt.step();
  model.zeroGrad();
  if (s >= cfg.warmup) times.push(performance.now() - t0);
}
console.log(JSON.stringify({ times }));
