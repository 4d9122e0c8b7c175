// @hpdl/pipeline: partitioning, micro-batching, schedules as data, the stage runtime, simulator and traces.
export { PipelineError, PartitionError, ScheduleError, StageError } from './errors.js';
export {
  type Op,
  type Action,
  type ScheduleTable,
  type ScheduleOptions,
  type ScheduleFn,
  COMPUTE_OPS,
  COMM_OPS,
  act,
  F,
  B,
  W,
  STEP,
  formatAction,
  parseAction,
  formatTable,
  parseTable,
  withCommunication,
  computeOnly,
  splitBackward,
  loopedPlacement,
  vPlacement,
} from './ir.js';
export { gpipe, oneF1B, interleaved1F1B, zbH1, zbV, dualPipeV, forwardOnly, registerSchedule, getSchedule, scheduleNames, scheduleStagesPerRank } from './schedules.js';
export { validate, formatGrid, stagesOf, type ValidateOptions, type Mark } from './validate.js';
export { simulate, bubbleGPipe, bubbleInterleaved, type Costs, type StageCost, type Simulation, type TimedAction } from './simulate.js';
export {
  splitBalanced,
  balanceByParams,
  balanceByLayers,
  balanceByTime,
  balanceBySize,
  resolveBalance,
  checkCounts,
  checkChain,
  partition,
  layersOf,
  Stage,
  StageGroup,
  type Balance,
  type InputSpec,
} from './partition.js';
export { splitSizes, splitBatch, microbatches, type Microbatch } from './microbatch.js';
export { Pipeline, type PipelineOptions, type StepResult, type PipelineStats, type Batch } from './runtime.js';
export { gatherTrace, toChromeTrace, timelineSvg, simulationEvents, costsFromTrace, type TraceEvent, type TraceOp } from './trace.js';
