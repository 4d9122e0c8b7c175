import { tf } from '../tf.js';
import type * as TF from '@tensorflow/tfjs-core';
import { BackendError } from '../errors.js';

/** The part of tfjs-node's backend used here: it runs any TensorFlow op by name. */
interface TensorflowBackend {
  executeSingleOutput(name: string, attrs: { name: string; type: number; value: unknown }[], inputs: TF.Tensor[]): TF.Tensor;
  binding: { TF_ATTR_TYPE: number; TF_FLOAT: number };
}

/**
 * Runs a TensorFlow op of type-attribute T = float32 that TensorFlow.js has no kernel for (such as
 * ReluGrad), on the tensorflow backend. The result is tracked by TensorFlow.js like any other.
 */
export function tensorflowOp(name: string, inputs: TF.Tensor[]): TF.Tensor {
  const backend = tf.backend() as unknown as Partial<TensorflowBackend>;
  if (typeof backend.executeSingleOutput !== 'function' || backend.binding == null) {
    throw new BackendError(`the TensorFlow op ${name} needs the tensorflow backend; the active one is ${tf.getBackend()}`);
  }
  const { TF_ATTR_TYPE, TF_FLOAT } = backend.binding;
  return backend.executeSingleOutput(name, [{ name: 'T', type: TF_ATTR_TYPE, value: TF_FLOAT }], inputs);
}
