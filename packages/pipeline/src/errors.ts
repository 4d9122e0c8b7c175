/** Base class of this package's errors. */
export class PipelineError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** A model that cannot be split as asked (too many stages, an empty stage, shapes that do not chain). */
export class PartitionError extends PipelineError {}

/** A schedule table that cannot run: missing or repeated work, broken dependencies, a deadlock. */
export class ScheduleError extends PipelineError {
  constructor(
    message: string,
    /** The step-by-rank grid with the faulty action marked, when there is one. */
    readonly grid?: string,
  ) {
    super(grid ? `${message}\n${grid}` : message);
  }
}

/** A failure while a stage runs its table: which rank, stage, micro-batch and action. */
export class StageError extends PipelineError {
  constructor(
    message: string,
    readonly rank: number,
    readonly action: string,
    override readonly cause?: unknown,
  ) {
    super(message);
  }
}
