import { appendFileSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import cliProgress from 'cli-progress';

/** One line of metrics.jsonl. */
export type MetricRecord = { type: 'step'; step: number; epoch: number; loss: number; lr: number; samplesPerSec: number; time: string } | ({ type: 'eval'; step: number; epoch: number; time: string } & Record<string, number | string>);

/** Appends a record to a JSON-lines file. */
export function appendMetric(path: string, rec: MetricRecord): void {
  appendFileSync(path, `${JSON.stringify(rec)}\n`);
}

/** Reads a JSON-lines metrics file (missing: empty). */
export function readMetrics(path: string): MetricRecord[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as MetricRecord);
}

/** Progress of an epoch, as the reporting rank sees it. */
export interface Progress {
  epoch: number;
  epochs: number;
  value: number;
  total: number;
  loss: number;
  samplesPerSec: number;
}

/** Marks a progress line a parent process renders (ranks under our own launcher print these). */
export const PROGRESS_MARK = '@@progress ';

/** A progress bar per epoch (cli-progress), on a terminal or as periodic lines elsewhere. */
export class ProgressBar {
  private bar: cliProgress.SingleBar | null = null;
  private epoch = -1;
  constructor(private readonly stream: NodeJS.WriteStream = process.stderr) {}
  update(p: Progress): void {
    if (p.epoch !== this.epoch) {
      this.stop();
      this.epoch = p.epoch;
      this.bar = new cliProgress.SingleBar(
        {
          format: `epoch ${p.epoch}/${p.epochs} [{bar}] {value}/{total} | loss {loss} | {speed} samples/s | eta {eta_formatted}`,
          barsize: 20,
          stream: this.stream,
          noTTYOutput: true,
          notTTYSchedule: 10_000,
          hideCursor: false,
          clearOnComplete: false,
        },
        cliProgress.Presets.shades_classic,
      );
      this.bar.start(p.total, p.value, { loss: '-', speed: '-' });
    }
    this.bar!.update(p.value, { loss: p.loss.toFixed(4), speed: p.samplesPerSec.toFixed(0) });
  }
  stop(): void {
    this.bar?.stop();
    this.bar = null;
    this.epoch = -1;
  }
}

interface Series {
  name: string;
  points: { x: number; y: number }[];
}

/** A line chart of several series against training steps, as SVG (vega, rendered without a browser). */
export async function lineChartSvg(title: string, series: Series[], yTitle: string): Promise<string> {
  const vega = await import('vega');
  const values = series.flatMap((s) => s.points.map((p) => ({ series: s.name, x: p.x, y: p.y })));
  const spec = {
    width: 640,
    height: 300,
    padding: 10,
    title: { text: title },
    data: [{ name: 'table', values }],
    scales: [
      { name: 'x', type: 'linear', domain: { data: 'table', field: 'x' }, range: 'width', nice: true },
      { name: 'y', type: 'linear', domain: { data: 'table', field: 'y' }, range: 'height', nice: true, zero: false },
      { name: 'color', type: 'ordinal', domain: { data: 'table', field: 'series' }, range: 'category' },
    ],
    axes: [
      { orient: 'bottom', scale: 'x', title: 'step' },
      { orient: 'left', scale: 'y', title: yTitle, grid: true },
    ],
    legends: [{ fill: 'color', orient: 'top-right' }],
    marks: [
      {
        type: 'group',
        from: { facet: { name: 'series', data: 'table', groupby: 'series' } },
        marks: [
          {
            type: 'line',
            from: { data: 'series' },
            encode: { enter: { x: { scale: 'x', field: 'x' }, y: { scale: 'y', field: 'y' }, stroke: { scale: 'color', field: 'series' }, strokeWidth: { value: 1.5 } } },
          },
          {
            type: 'symbol',
            from: { data: 'series' },
            encode: { enter: { x: { scale: 'x', field: 'x' }, y: { scale: 'y', field: 'y' }, fill: { scale: 'color', field: 'series' }, size: { value: 16 } } },
          },
        ],
      },
    ],
  };
  const view = new vega.View(vega.parse(spec as never), { renderer: 'none' });
  const svg = await view.toSVG();
  view.finalize();
  return svg;
}

/** Renders SVG to PNG with resvg when that optional dependency is installed; null otherwise. */
export function svgToPng(svg: string): Buffer | null {
  try {
    const require = createRequire(import.meta.url);
    const { Resvg } = require('@resvg/resvg-js') as typeof import('@resvg/resvg-js');
    return Buffer.from(new Resvg(svg, { background: 'white', fitTo: { mode: 'zoom', value: 2 } }).render().asPng());
  } catch {
    return null;
  }
}

/** Writes the loss (and evaluation) curves of a metrics file as SVG and, where possible, PNG. */
export async function writeCurves(metricsPath: string, svgPath: string, evalKey: string, evalTitle: string): Promise<string[]> {
  const recs = readMetrics(metricsPath);
  const loss: Series = { name: 'training loss', points: recs.filter((r) => r.type === 'step').map((r) => ({ x: r.step, y: (r as { loss: number }).loss })) };
  const evals = recs.filter((r) => r.type === 'eval') as Record<string, unknown>[];
  const ev: Series = { name: evalTitle, points: evals.filter((r) => typeof r[evalKey] === 'number').map((r) => ({ x: r.step as number, y: r[evalKey] as number })) };
  const svg = await lineChartSvg('training curves', [loss, ev].filter((s) => s.points.length), 'value');
  writeFileSync(svgPath, svg);
  const written = [svgPath];
  const png = svgToPng(svg);
  if (png) {
    const pngPath = svgPath.replace(/\.svg$/, '.png');
    writeFileSync(pngPath, png);
    written.push(pngPath);
  }
  return written;
}
