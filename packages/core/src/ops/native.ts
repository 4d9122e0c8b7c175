import { tf } from '../tf.js';
import type * as TF from '@tensorflow/tfjs-core';
import { BackendError } from '../errors.js';

/** The part of tfjs-node's backend used here: it runs any TensorFlow op by name. */
interface TensorflowBackend {
  executeMultipleOutputs(name: string, attrs: { name: string; type: number; value: unknown }[], inputs: TF.Tensor[], outputs: number): TF.Tensor[];
  binding: { TF_ATTR_TYPE: number; TF_FLOAT: number; TF_INT32: number };
}

/**
 * Runs a TensorFlow op that TensorFlow.js has no kernel for (ReluGrad, the sparse softmax
 * cross-entropy), on the tensorflow backend. Its type attributes are `T` = float32 and those named
 * in `int32Attrs` = int32. The results are tracked by TensorFlow.js like any other tensor.
 */
export function tensorflowOp(name: string, inputs: TF.Tensor[], outputs = 1, int32Attrs: string[] = []): TF.Tensor[] {
  const backend = tf.backend() as unknown as Partial<TensorflowBackend>;
  if (typeof backend.executeMultipleOutputs !== 'function' || backend.binding == null) {
    throw new BackendError(`the TensorFlow op ${name} needs the tensorflow backend; the active one is ${tf.getBackend()}`);
  }
  const { TF_ATTR_TYPE, TF_FLOAT, TF_INT32 } = backend.binding;
  const attrs = [{ name: 'T', type: TF_ATTR_TYPE, value: TF_FLOAT }, ...int32Attrs.map((a) => ({ name: a, type: TF_ATTR_TYPE, value: TF_INT32 }))];
  return backend.executeMultipleOutputs(name, attrs, inputs, outputs);
}

/** `tensorflowOp` of an op with one output. */
export function tensorflowOp1(name: string, inputs: TF.Tensor[]): TF.Tensor {
  return tensorflowOp(name, inputs)[0]!;
}
