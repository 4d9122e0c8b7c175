import { defineConfig } from 'tsup';

export default defineConfig({
  entry: { mnist: 'src/mnist.ts', charrnn: 'src/charrnn.ts', gpt: 'src/gpt.ts' },
  format: ['esm'],
  sourcemap: true,
  clean: true,
  target: 'node20',
  external: [/^@tensorflow\//, /^@hpdl\//, 'mnist', /^@stdlib\//, 'vega', '@resvg/resvg-js', 'cli-progress', 'commander'],
  banner: { js: '#!/usr/bin/env node' },
});
