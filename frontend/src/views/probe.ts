// The probe explorer: one probe's prediction over training and its attributions step by step, for one
// method or two side by side. Tabular probes get bars at the chosen step plus a feature x step heatmap;
// image probes get the image with the attribution laid over it.

import { bisector } from 'd3-array';
import { select } from 'd3-selection';
import { attributionScale, lineColors } from '../colors';
import { el, formatValue, setOptions, svgElement } from '../dom';
import { fileStem } from '../export';
import { Evolution, Probe, elementNames, fetchEvolution, fetchProbe } from '../model';
import { BARS_TOP, Bars } from './bars';
import { Card, Table } from './card';
import { Heatmap } from './heatmap';
import { drawColorLegend, titleSvg } from './legend';
import { Lines } from './lines';
import { CLIP_PERCENTILE, paintOverlay } from './overlay';
import { TextPanel, isTextProbe, textTable } from './text';
import { Draw, View, ViewContext } from './view';

/** Classes drawn as prediction lines at most; beyond, the explained, the labelled and the likeliest, and a note says so. */
const MAX_CLASSES = 12;
const PLAY_MS = 450;

export interface ProbeContext {
  run: string;
  rows: number; // tabular rows shown, 0 for all
  order: number[]; // the global ranking of the primary method, for a stable row order
  classes: boolean; // whether the run explains one of several classes (else a regression or one output)
}

/** The index in `steps` (ascending) of the step nearest to `step`. */
function nearestIndex(steps: number[], step: number): number {
  return Math.max(0, Math.min(steps.length - 1, bisector<number, number>((d) => d).center(steps, step)));
}

/** The probe's label as text: a class name where the run has classes, else the value itself. */
function labelText(probe: Probe, classes: boolean): string {
  if (probe.label === null) return '';
  if (Array.isArray(probe.label)) return probe.label.map((v) => formatValue(v)).join(', ');
  return classes && probe.class_names[probe.label] !== undefined && Number.isInteger(probe.label)
    ? `${probe.class_names[probe.label]} (${probe.label})`
    : formatValue(probe.label);
}


class MethodPanel {
  readonly element = el('div', { class: 'panel' });
  private readonly canvas = el('canvas', { class: 'overlay' });
  private readonly legend = svgElement();
  private readonly bars = new Bars();
  private readonly heatmap: Heatmap;
  private readonly text: TextPanel;
  private probe: Probe | null = null;

  constructor(onPick: (step: number) => void) {
    this.heatmap = new Heatmap((column) => this.probe && onPick(this.probe.steps[column]), BARS_TOP);
    this.text = new TextPanel(onPick);
  }

  show(probe: Probe, context: ProbeContext, step: number, width: number): void {
    this.probe = probe;
    const i = nearestIndex(probe.steps, step);
    const map = probe.attributions[i] ?? [];
    const heading = titleSvg(`${probe.method} · step ${probe.steps[i] ?? 'n/a'}`, width);
    if (probe.layout.picture) {
      const input = probe.input_shape && probe.input_values && probe.input_range
        ? { shape: probe.input_shape, values: probe.input_values, range: probe.input_range }
        : null;
      const size = Math.min(width - 20, 280);
      const clip = paintOverlay(this.canvas, input, map, probe.map_shape, probe.signed, size);
      this.drawLegend(clip, probe.signed, size);
      this.canvas.dataset.step = String(probe.steps[i]);
      this.element.replaceChildren(heading, this.canvas, this.legend);
    } else if (isTextProbe(probe)) {
      this.text.show(probe, i, width);
      this.element.replaceChildren(heading, this.text.element);
    } else {
      const names = elementNames(probe.layout);
      const order = (context.order.length === names.length ? context.order : names.map((_, n) => n))
        .slice(0, context.rows || names.length);
      const barsWidth = Math.max(90, Math.round(width * 0.25));
      this.heatmap.draw(
        {
          rows: order.map((n) => names[n]),
          steps: probe.steps,
          values: order.map((n) => probe.attributions.map((a) => a[n])),
          scale: attributionScale(probe.range, probe.signed),
          valueName: probe.signed ? 'attribution' : '|attribution|',
        },
        width - barsWidth,
      );
      this.heatmap.mark(i);
      this.bars.draw(order.map((n) => names[n]), order.map((n) => map[n]), probe.range, probe.signed, barsWidth, this.heatmap.rowHeight);
      this.element.replaceChildren(heading, el('div', { class: 'rows' }, this.heatmap.element, this.bars.element));
    }
  }

  private drawLegend(clip: number, signed: boolean, width: number): void {
    const scale = attributionScale(signed ? [-clip, clip] : [0, clip], signed);
    const svg = select(this.legend).attr('width', width).attr('height', 46);
    svg.selectAll('*').remove();
    drawColorLegend(svg, {
      scale, x: 4, y: 2, length: width - 12, orientation: 'horizontal', domain: signed ? [-clip, clip] : [0, clip],
      title: `attribution, clipped at the ${Math.round(CLIP_PERCENTILE * 100)}th percentile of |attribution|`,
    });
  }
}

export class ProbeView implements View {
  readonly card: Card;
  private readonly predictions = new Lines(150);
  private readonly slider = el('input', { type: 'range', name: 'step', min: 0, max: 0, value: 0, 'aria-label': 'step' });
  private readonly play = el('button', { type: 'button', class: 'play', 'aria-label': 'play' }, '▶ Play');
  private readonly stepLabel = el('output', { class: 'step-label' });
  private readonly panels: [MethodPanel, MethodPanel];
  private current: { probes: Probe[]; context: ProbeContext; width: number } | null = null;
  private step = Infinity;
  private timer: number | undefined;

  private readonly runChoice = el('select', { name: 'probe-run', 'aria-label': 'run explained' });

  constructor(onRun: (run: string) => void, private readonly onStep: (step: number) => void, private readonly onClassNames: (names: string[]) => void) {
    this.card = new Card({
      id: 'probe',
      title: 'Probe explorer',
      fileName: () => fileStem('probe', this.current?.context.run ?? '', String(this.current?.probes[0]?.probe ?? ''), ...(this.current?.probes.map((p) => p.method) ?? [])),
      table: () => this.table(),
    });
    // Runs compared: this card explains one of them, chosen here.
    this.card.tools.append(el('label', { class: 'field' }, el('span', {}, 'Run'), this.runChoice));
    this.runChoice.addEventListener('change', () => onRun(this.runChoice.value));
    const pick = (step: number) => this.setStep(step);
    this.panels = [new MethodPanel(pick), new MethodPanel(pick)];
    const player = el('div', { class: 'player' }, this.play, this.slider, this.stepLabel);
    this.card.figure.before(player);
    this.slider.addEventListener('input', () => {
      const steps = this.current?.probes[0].steps ?? [];
      this.setStep(steps[Number(this.slider.value)] ?? 0);
    });
    this.play.addEventListener('click', () => (this.timer === undefined ? this.start() : this.stop()));
  }

  /** Forgets what was drawn (the data failed to load): exports and step marks have nothing to show. */
  clear(): void {
    this.stop();
    this.current = null;
    this.card.clear();
  }

  async load(context: ViewContext): Promise<Draw> {
    const s = context.selection;
    const explained = context.explained;
    const query = explained.query;
    setOptions(this.runChoice, context.runs.map((r, i) => ({ value: i === 0 ? '' : r.info.run, label: r.info.run })), s.probeRun);
    this.runChoice.parentElement!.hidden = context.runs.length < 2;
    const methods = s.compare ? [s.method, s.compare] : [s.method];
    const [probes, global] = await Promise.all([
      Promise.all(methods.map((method) => fetchProbe({ ...query, method }, s.probe))),
      fetchEvolution(query).catch((): Evolution | null => null),
    ]);
    if (!context.classNames.length && probes[0].class_names.length) this.onClassNames(probes[0].class_names);
    const probeContext: ProbeContext = {
      run: explained.info.run, rows: s.rows, order: global?.order ?? [],
      classes: Math.max(explained.info.class_count, explained.info.class_names.length) > 1,
    };
    return (width) => this.show(probes, probeContext, width);
  }

  /** Draws `probes` (the primary method first, then the one compared with). */
  private show(probes: Probe[], context: ProbeContext, width: number): void {
    const before = this.current;
    const sameRun = before !== null && before.context.run === context.run;
    const same = sameRun && before.probes[0].probe === probes[0].probe
      && before.probes.map((p) => p.method).join('+') === probes.map((p) => p.method).join('+');
    if (!same) this.stop(); // playing goes on over a redraw or new steps, never into another selection
    this.current = { probes, context, width };
    const steps = probes[0].steps;
    this.slider.max = String(Math.max(0, steps.length - 1));
    this.slider.disabled = steps.length < 2;
    this.play.disabled = steps.length < 2;
    // Another run opens at its last step; the same run keeps the step looked at.
    if (!sameRun || !steps.includes(this.step)) this.step = steps[steps.length - 1] ?? 0;
    this.redraw();
  }

  /** Shows `step` (the nearest logged one) in every panel. */
  setStep(step: number): void {
    this.step = step;
    if (this.current) this.redraw();
  }

  private redraw(): void {
    const { probes, context, width } = this.current!;
    const primary = probes[0];
    const index = nearestIndex(primary.steps, this.step);
    const step = primary.steps[index] ?? 0;
    this.slider.value = String(index);
    this.stepLabel.textContent = `step ${step}`;

    const hidden = this.drawPredictions(primary, step, width, context.classes);
    const panelWidth = probes.length > 1 ? Math.floor((width - 24) / 2) : Math.min(width, primary.layout.picture ? 320 : width);
    const row = el('div', { class: 'panels' });
    probes.forEach((probe, n) => {
      this.panels[n].show(probe, context, step, panelWidth);
      row.append(this.panels[n].element);
    });
    this.card.figure.replaceChildren(this.predictions.element, row);
    this.card.note.textContent = this.summary(primary, step, context.classes) + hidden;
    this.card.markDrawn(`${context.run}|${primary.probe}|${probes.map((p) => p.method).join('+')}|${step}`);
    this.onStep(step);
  }

  /** Draws the prediction trajectory; returns a sentence naming the classes left out ('' when every class shows). */
  private drawPredictions(probe: Probe, step: number, width: number, classes: boolean): string {
    const count = probe.predictions[0]?.length ?? 0;
    const last = probe.predictions[probe.predictions.length - 1] ?? [];
    let shown = Array.from({ length: count }, (_, c) => c);
    if (count > MAX_CLASSES) {
      const keep = new Set<number>([...probe.targets.filter((t): t is number => t !== null)]);
      if (typeof probe.label === 'number' && Number.isInteger(probe.label)) keep.add(probe.label);
      shown.sort((a, b) => (last[b] ?? -Infinity) - (last[a] ?? -Infinity));
      shown = [...new Set([...keep, ...shown])].slice(0, MAX_CLASSES).sort((a, b) => a - b);
    }
    const name = (c: number) => (probe.class_names[c] !== undefined && probe.class_names[c] !== '' ? probe.class_names[c] : `class ${c}`);
    this.predictions.draw(
      {
        series: shown.map((c, n) => ({
          name: !classes || count === 1 ? 'output' : `${name(c)}${c === probe.label ? ' (label)' : ''}`,
          color: lineColors[n % lineColors.length],
          steps: probe.prediction_steps,
          values: probe.predictions.map((p) => p[c]),
        })),
        yLabel: 'prediction',
        marker: step,
      },
      width,
    );
    return shown.length < count
      ? ` Predictions: ${shown.length} of ${count} classes drawn (the explained, the labelled and the likeliest at the last step); the CSV export holds all.`
      : '';
  }

  private summary(probe: Probe, step: number, classes: boolean): string {
    const parts = [`Probe ${probe.probe}`];
    const label = labelText(probe, classes);
    if (label) parts.push(`label: ${label}`);
    const p = nearestIndex(probe.prediction_steps, step);
    const prediction = probe.predictions[p];
    if (prediction && prediction.length > 1 && classes) {
      let best = 0;
      prediction.forEach((v, c) => { if ((v ?? -Infinity) > (prediction[best] ?? -Infinity)) best = c; });
      parts.push(`at step ${probe.prediction_steps[p]} predicts ${probe.class_names[best] ?? best} (${formatValue(prediction[best])})`);
    } else if (prediction) {
      parts.push(`at step ${probe.prediction_steps[p]} outputs ${formatValue(prediction[0])}`);
    }
    const target = probe.targets[p];
    if (classes && target !== null && target !== undefined) parts.push(`explaining class ${probe.class_names[target] ?? target}`);
    return parts.join(' · ') + `. Use the slider, ▶ Play, or click a ${isTextProbe(probe) ? 'row of the strip' : 'heatmap column'} to change the step.`;
  }

  private start(): void {
    const steps = this.current?.probes[0].steps ?? [];
    if (steps.length < 2) return;
    if (nearestIndex(steps, this.step) === steps.length - 1) this.setStep(steps[0]);
    this.play.textContent = '❚❚ Pause';
    this.timer = window.setInterval(() => {
      const steps = this.current?.probes[0].steps ?? []; // the steps drawn now: a reload may have added some
      const i = nearestIndex(steps, this.step);
      if (i >= steps.length - 1) this.stop();
      else this.setStep(steps[i + 1]);
    }, PLAY_MS);
  }

  private stop(): void {
    window.clearInterval(this.timer);
    this.timer = undefined;
    this.play.textContent = '▶ Play';
  }

  private table(): Table | null {
    if (!this.current) return null;
    if (this.current.probes.every(isTextProbe)) return textTable(this.current.probes);
    const rows = this.current.probes.flatMap((probe) => {
      const names = elementNames(probe.layout);
      return probe.steps.flatMap((step, i) => probe.attributions[i].map((value, n) => [probe.method, step, names[n], value]));
    });
    const primary = this.current.probes[0];
    const predictions = primary.prediction_steps.flatMap((step, i) =>
      primary.predictions[i].map((value, c) => ['prediction', step, primary.class_names[c] ?? String(c), value]),
    );
    return { header: ['method', 'step', 'feature', 'value'], rows: [...predictions, ...rows] };
  }
}
