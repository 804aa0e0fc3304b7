// The agreement card: do the methods agree, and since when? The rank correlation between the global
// importance rankings of every pair of methods on one input, over steps (one line per pair), and as a
// method x method matrix at the selected step.

import { select } from 'd3-selection';
import { correlationScale, lineColors, lineDashes } from '../colors';
import { el, formatValue, shorten, svgElement } from '../dom';
import { fileStem } from '../export';
import { Agreement, AgreementPair, fetchAgreement } from '../model';
import { ink } from '../theme';
import { Card, Table } from './card';
import { drawColorLegend } from './legend';
import { Lines, Series, correlationDomain } from './lines';
import { Tooltip } from './tooltip';
import { Draw, Shown, View, ViewContext } from './view';

const AGREE_RHO = 0.7;
const FONT_PX = 11;

export function pairName(pair: AgreementPair): string {
  return `${pair.methods[0]} × ${pair.methods[1]}`;
}

/** The step from which the pair's ρ stays at or above AGREE_RHO at every later step; null if it ends below. */
export function agreeingSince(pair: AgreementPair): number | null {
  let first = pair.spearman.length;
  while (first > 0 && (pair.spearman[first - 1] ?? -Infinity) >= AGREE_RHO) first--;
  return first < pair.spearman.length ? pair.steps[first] : null;
}

/** The value of `pair`'s series at `step`, null where the pair has no such step. */
function at(pair: AgreementPair, values: (number | null)[], step: number): number | null {
  const i = pair.steps.indexOf(step);
  return i < 0 ? null : values[i];
}

export interface AgreementContext {
  input: string;
  runs: Shown[];
  /** Every run's answer, the primary's first (its matrix is drawn). */
  answers: Agreement[];
}

export class AgreementView implements View {
  readonly card: Card;
  private readonly lines = new Lines(220);
  private readonly matrix = el('div', { class: 'matrix' });
  private readonly matrixSvg = svgElement();
  private readonly tooltip: Tooltip;
  private current: { agreement: Agreement; context: AgreementContext; width: number } | null = null;
  private step: number | null = null;

  /** `onPickStep(step)` runs when a step is clicked on the chart (to show it everywhere). */
  constructor(private readonly onPickStep: (step: number) => void) {
    this.card = new Card({
      id: 'agreement',
      title: 'Method agreement',
      fileName: () => fileStem('agreement', ...(this.current?.context.runs.map((r) => r.info.run) ?? []), this.current?.context.input ?? ''),
      table: () => this.table(),
    });
    this.matrix.append(this.matrixSvg);
    this.tooltip = new Tooltip(this.matrix);
  }

  /** Forgets what was drawn (the data failed to load): exports and step marks have nothing to show. */
  clear(): void {
    this.current = null;
    this.card.clear();
  }

  async load(context: ViewContext): Promise<Draw> {
    const answers = await Promise.all(context.runs.map((r) => fetchAgreement(r.query, context.selection.k)));
    return (width) => {
      this.current = { agreement: answers[0], context: { input: context.selection.input, runs: context.runs, answers }, width };
      this.redraw();
    };
  }

  /** Shows the matrix at `step` (the nearest common step), e.g. the step the probe explorer shows. */
  markStep(step: number | null): void {
    if (step === this.step) return;
    this.step = step;
    if (this.current) this.redraw();
  }

  private steps(): number[] {
    const pairs = this.current?.agreement.pairs ?? [];
    return [...new Set(pairs.flatMap((p) => p.steps))].sort((a, b) => a - b);
  }

  /** The step the matrix shows: the selected one if any pair holds it, else the nearest one, else the last. */
  private shownStep(): number | null {
    const steps = this.steps();
    if (!steps.length) return null;
    if (this.step === null) return steps[steps.length - 1];
    return steps.reduce((best, s) => (Math.abs(s - this.step!) < Math.abs(best - this.step!) ? s : best), steps[steps.length - 1]);
  }

  private redraw(): void {
    const { agreement, context, width } = this.current!;
    const { methods, pairs } = agreement;
    const key = context.runs.map((r) => r.info.run).join('+');
    if (methods.length < 2 || !pairs.length) {
      const only = methods.length === 1 ? `Only one method (${methods[0]}) is logged` : 'Fewer than two comparable methods are logged';
      this.card.note.textContent = `${only} on ${context.input}: nothing to compare. Log two or more methods to see whether they agree.`;
      this.card.figure.replaceChildren();
      this.card.markDrawn(`${key}|${context.input}|0`);
      return;
    }
    const step = this.shownStep()!;
    const compared = context.runs.length > 1;
    const series: Series[] = compared
      ? context.answers.flatMap((a, r) => a.pairs.map((pair, i) => ({
        name: `${pairName(pair)} · ${context.runs[r].info.run}`,
        color: context.runs[r].color,
        dashed: lineDashes[i % lineDashes.length],
        steps: pair.steps,
        values: pair.spearman,
      })))
      : pairs.map((pair, i) => ({
        name: pairName(pair),
        color: lineColors[i % lineColors.length],
        dashed: lineDashes[Math.floor(i / lineColors.length) % lineDashes.length],
        steps: pair.steps,
        values: pair.spearman,
      }));

    // Side by side when there is room, the matrix under the chart otherwise.
    const matrixWidth = this.matrixWidth(methods);
    const sideBySide = width - matrixWidth >= 480;
    const linesWidth = sideBySide ? width - matrixWidth - 24 : width;
    this.lines.draw(
      {
        series,
        yLabel: 'Spearman ρ',
        yDomain: correlationDomain(series.flatMap((x) => x.values), [AGREE_RHO]),
        references: [{ value: AGREE_RHO, text: `ρ ≥ ${AGREE_RHO}: agree` }],
        marker: step,
        hover: 'nearest',
        valueName: 'ρ',
        onPick: (picked) => this.onPickStep(picked),
      },
      linesWidth,
    );
    this.drawMatrix(step);
    const row = el('div', { class: `agreement${sideBySide ? '' : ' stacked'}` }, this.lines.element, this.matrix);
    this.card.figure.replaceChildren(row);
    this.card.note.textContent = this.summary(step) + (compared
      ? ` Lines: every run (colour = run, dash = pair); the matrix: ${context.runs[0].info.run}.`
      : '');
    this.card.markDrawn(`${key}|${context.input}|${pairs.length}|${step}`);
  }

  private summary(step: number): string {
    const { agreement } = this.current!;
    const { pairs } = agreement;
    const values = pairs.map((p) => at(p, p.spearman, step));
    const known = values.filter((v): v is number => v !== null);
    const agreeing = known.filter((v) => v >= AGREE_RHO).length;
    const parts = [`Spearman rank correlation (ρ) of the mean |attribution| rankings of each pair of the ${agreement.methods.length} methods.`];
    parts.push(`At step ${step}: ${agreeing} of ${pairs.length} pairs agree (ρ ≥ ${AGREE_RHO}).`);
    const since = pairs.map(agreeingSince);
    if (since.every((s) => s !== null)) {
      parts.push(`All pairs agree since step ${Math.max(...(since as number[]))}.`);
    } else if (known.length) {
      let worst = 0;
      values.forEach((v, i) => {
        if (v !== null && v < (values[worst] ?? Infinity)) worst = i;
      });
      parts.push(`Least agreement: ${pairName(pairs[worst])} (ρ = ${formatValue(values[worst])}).`);
    }
    parts.push('Hover to read values; click the chart to pick a step.');
    return parts.join(' ');
  }

  private cellSize(methods: string[]): number {
    return Math.max(26, Math.min(38, Math.floor(260 / Math.max(1, methods.length - 1))));
  }

  private labelWidth(names: string[]): number {
    const measure = document.createElement('canvas').getContext('2d')!;
    measure.font = `${FONT_PX}px Roboto, Arial, sans-serif`;
    return Math.ceil(Math.max(30, ...names.map((name) => measure.measureText(shorten(name, 22)).width)));
  }

  private matrixWidth(methods: string[]): number {
    return this.labelWidth(methods.slice(1)) + 8 + this.cellSize(methods) * (methods.length - 1) + 78;
  }

  /** The lower triangle of the method x method matrix of ρ at `step`: row i, column j < i. */
  private drawMatrix(step: number): void {
    const { methods, pairs } = this.current!.agreement;
    const scale = correlationScale();
    const cell = this.cellSize(methods);
    const n = methods.length - 1;
    const left = this.labelWidth(methods.slice(1)) + 8;
    const top = 24;
    const columnLabels = this.labelWidth(methods.slice(0, -1)) * Math.SQRT1_2 + 12;
    const height = top + n * cell + columnLabels;
    const width = left + n * cell + 78;
    const byPair = new Map(pairs.map((p) => [`${p.methods[0]}\u0000${p.methods[1]}`, p]));
    const find = (a: string, b: string) => byPair.get(`${a}\u0000${b}`) ?? byPair.get(`${b}\u0000${a}`) ?? null;

    const svg = select(this.matrixSvg).attr('width', width).attr('height', height).attr('class', 'matrix-svg');
    svg.selectAll('*').remove();
    this.matrix.style.width = `${width}px`;
    this.matrix.style.height = `${height}px`;
    svg.append('text').attr('x', left).attr('y', 12).attr('font-size', FONT_PX).attr('font-weight', 500).attr('fill', ink().text)
      .text(`ρ at step ${step}`);

    const cells = svg.append('g').attr('class', 'cells');
    for (let i = 1; i <= n; i++) {
      for (let j = 0; j < i; j++) {
        const pair = find(methods[i], methods[j]);
        const value = pair ? at(pair, pair.spearman, step) : null;
        const x = left + j * cell;
        const y = top + (i - 1) * cell;
        const g = cells.append('g').attr('class', 'cell').attr('data-pair', pair ? pairName(pair) : '');
        g.append('rect').attr('x', x + 1).attr('y', y + 1).attr('width', cell - 2).attr('height', cell - 2).attr('rx', 2)
          .attr('fill', value === null ? ink().grid : scale(value));
        g.append('text').attr('x', x + cell / 2).attr('y', y + cell / 2).attr('dy', '0.35em').attr('text-anchor', 'middle').attr('pointer-events', 'none')
          .attr('font-size', cell >= 34 ? 11 : 9).attr('fill', value !== null && Math.abs(value) > 0.6 ? '#ffffff' : value === null ? ink().text : '#424242')
          .text(value === null ? '–' : value.toFixed(2));
        g.on('mouseenter', () => {
          if (pair) this.lines.highlight(pairName(pair));
          const name = pair ? pairName(pair) : `${methods[j]} × ${methods[i]}`;
          const topk = pair ? at(pair, pair.topk, step) : null;
          const since = pair ? agreeingSince(pair) : null;
          this.tooltip.show(
            [
              `pair: ${name}`,
              `step: ${step}`,
              `ρ: ${formatValue(value)}`,
              `top-${this.current!.agreement.k} overlap: ${formatValue(topk)}`,
              since !== null ? `agrees (ρ ≥ ${AGREE_RHO}) since step ${since}` : `ρ < ${AGREE_RHO} at the last step`,
            ],
            x + cell,
            y + cell,
          );
        });
        g.on('mouseleave', () => {
          this.lines.highlight(null);
          this.tooltip.hide();
        });
      }
    }

    const labels = svg.append('g').attr('class', 'matrix-labels').attr('text-anchor', 'end');
    const text = (name: string) =>
      labels.append('text').attr('font-size', FONT_PX).attr('fill', ink().text).text(shorten(name, 22)).call((t) => t.append('title').text(name));
    methods.slice(1).forEach((name, i) => {
      text(name).attr('x', left - 6).attr('y', top + i * cell + cell / 2).attr('dy', '0.35em');
    });
    methods.slice(0, -1).forEach((name, j) => {
      text(name).attr('transform', `translate(${left + j * cell + cell / 2 + 3},${top + n * cell + 6}) rotate(-45)`);
    });

    const barHeight = Math.max(80, n * cell);
    drawColorLegend(svg, { scale, title: 'Spearman ρ', x: left + n * cell + 16, y: top, length: barHeight, orientation: 'vertical', domain: [-1, 1] });
    if (barHeight + top + 4 > height) {
      svg.attr('height', barHeight + top + 4);
      this.matrix.style.height = `${barHeight + top + 4}px`;
    }
  }

  private table(): Table | null {
    if (!this.current) return null;
    const { context } = this.current;
    const k = this.current.agreement.k;
    return {
      header: ['run', 'step', 'method_a', 'method_b', 'spearman', `top${k}_overlap`],
      rows: context.answers.flatMap((a, r) => a.pairs.flatMap((p) => p.steps.map((step, i) => [context.runs[r].info.run, step, p.methods[0], p.methods[1], p.spearman[i], p.topk[i]]))),
    };
  }
}
