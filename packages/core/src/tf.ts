// The one TensorFlow.js instance every module of this package uses.
//
// The backends (tfjs-backend-wasm, tfjs-backend-cpu, tfjs-node) load @tensorflow/tfjs-core through
// `require`. An ESM `import` of tfjs-core can resolve to its separate ESM build instead (test runners
// and TypeScript loaders may do this), giving two copies of its module state. Loading it with
// `require` here keeps the backends and our operations on one copy under every loader.
import { createRequire } from 'node:module';
import type * as TF from '@tensorflow/tfjs-core';

const require = createRequire(import.meta.url);
export const tf: typeof TF = require('@tensorflow/tfjs-core');
