// The quality card: are the maps faithful, and do they explain what was learned? Deletion and insertion AUC
// (next to the same curves in a random order) and the similarity to the randomized model's maps over steps,
// one line per method, plus any other figure the run holds, under the server's labels (`quality` route, the
// figures of `run.metrics(method)`). Figures that were not logged are named, with what logs them.

import { lineColors } from '../colors';
import { el, setOptions } from '../dom';
import { fileStem } from '../export';
import { Num, Quality, RunInfo, analysisVersion, fetchQuality } from '../model';
import { Card, Table } from './card';
import { titleSvg } from './legend';
import { Lines, LinesData, Series } from './lines';
import { Draw, View, ViewContext } from './view';

const RANDOM_DASH = '4,3';

/** The charts drawn always (their figures, or why they are missing). */
const FAITHFULNESS = ['deletion_auc', 'insertion_auc'] as const;
const SANITY = 'sanity_spearman';
const SEEDS = ['seed_spearman', 'seed_ndcg', 'seed_noise'];
/** Figures drawn with another (the random-order baselines) or shown elsewhere (the noise band of stability). */
const DRAWN_WITH = new Set(['deletion_auc_random', 'insertion_auc_random']);

const known = (values: Num[] | undefined): boolean => (values ?? []).some((v) => v !== null && Number.isFinite(v));

/** Why a figure is missing from every method, in words, or '' when some method logged it. */
export function missingText(answers: Quality[], methods: string[]): string[] {
  const logged = (figure: string) => answers.some((a) => known(a.figures[figure]));
  const out: string[] = [];
  if (!FAITHFULNESS.some(logged)) {
    out.push('Deletion and insertion AUC were not logged: faithfulness runs only when asked for, with quality="all" or a list naming "faithfulness" (it costs 4 × (points + 1) model rows per probe at every logged step).');
  }
  if (!logged(SANITY)) out.push('The similarity to the randomized model was not logged: the callback computes it with "sanity" in quality= (on by default).');
  if (!SEEDS.some(logged)) {
    const sampling = methods.filter((m) => /kernel_shap|lime|smoothgrad|expected_gradients/.test(m));
    out.push(sampling.length
      ? 'The seed figures were not logged: sampling methods get them with "seeds" in quality= (on by default).'
      : `Seed figures: none, as none of ${methods.join(', ')} samples (only kernel_shap, lime, smoothgrad and expected_gradients are re-explained with a second seed).`);
  }
  return out;
}

interface Chart {
  figure: string;
  title: string;
  lines: Lines;
}

export class QualityView implements View {
  readonly card: Card;
  private readonly other = el('select', { name: 'quality-figure', 'aria-label': 'figure' });
  private readonly charts = new Map<string, Lines>();
  private current: { answers: Quality[]; info: RunInfo; failed: string[] } | null = null;
  private width = 0;

  constructor() {
    this.card = new Card({
      id: 'quality',
      title: 'Explanation quality',
      fileName: () => fileStem('quality', this.current?.info.run ?? ''),
      table: () => this.table(),
    });
    this.card.tools.append(el('label', { class: 'field' }, el('span', {}, 'More'), this.other));
    this.other.addEventListener('change', () => this.current && this.draw(this.width));
  }

  clear(): void {
    this.current = null;
    this.card.clear();
  }

  async load(context: ViewContext): Promise<Draw> {
    const primary = context.primary;
    const info = primary.info;
    const methods = info.methods.filter((m) => m.inputs.length > 0).map((m) => m.method);
    const settled = await Promise.allSettled(methods.map((method) => fetchQuality({ ...primary.query, method }, analysisVersion(info))));
    const answers = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
    const failed = settled.flatMap((s, i) => (s.status === 'rejected' ? [`${methods[i]}: ${s.reason instanceof Error ? s.reason.message : s.reason}`] : []));
    if (!answers.length) throw new Error(`No quality figures: ${failed.join('; ')}`);
    return (width) => {
      this.current = { answers, info, failed };
      this.draw(width);
    };
  }

  private lines(figure: string): Lines {
    let lines = this.charts.get(figure);
    if (!lines) this.charts.set(figure, (lines = new Lines(130)));
    lines.element.dataset.figure = figure;
    return lines;
  }

  private draw(width: number): void {
    this.width = width;
    const { answers, info, failed } = this.current!;
    const methods = answers.map((a) => a.method);
    const label = (figure: string) => answers.find((a) => a.labels[figure])?.labels[figure] ?? figure.replace(/_/g, ' ');
    const color = (method: string) => lineColors[Math.max(0, info.methods.findIndex((m) => m.method === method)) % lineColors.length];
    const logged = (figure: string) => answers.some((a) => known(a.figures[figure]));
    const column = width >= 720 ? Math.floor((width - 16) / 2) : width;
    const charts: Chart[] = [];
    const chart = (figure: string, yLabel: string, data: Omit<LinesData, 'yLabel'>) => {
      const lines = this.lines(figure);
      lines.draw({ ...data, yLabel, valueName: label(figure) }, column);
      charts.push({ figure, title: label(figure), lines });
    };
    for (const figure of FAITHFULNESS) {
      if (!logged(figure)) continue;
      const series: Series[] = answers.flatMap((a) => [
        { name: a.method, color: color(a.method), steps: a.steps, values: a.figures[figure] ?? [] },
        ...(known(a.figures[`${figure}_random`])
          ? [{ name: `${a.method} · ${label(`${figure}_random`)}`, color: color(a.method), steps: a.steps, values: a.figures[`${figure}_random`], dashed: RANDOM_DASH }]
          : []),
      ]);
      chart(figure, 'AUC', { series, yDomain: [0, 1] as [number, number] });
    }
    if (logged(SANITY)) {
      const threshold = answers.map((a) => a.thresholds[SANITY]).find((t) => t !== null && t !== undefined);
      chart(SANITY, 'Spearman', {
        series: answers.map((a) => ({ name: a.method, color: color(a.method), steps: a.steps, values: a.figures[SANITY] ?? [] })),
        references: threshold === undefined || threshold === null ? [] : [{ value: threshold, text: `flag ${threshold}` }],
      });
    }
    // Every other figure with a value in some method, under the server's labels: one chosen at a time.
    const others = [...new Set(answers.flatMap((a) => Object.keys(a.figures)))]
      .filter((f) => !FAITHFULNESS.includes(f as (typeof FAITHFULNESS)[number]) && f !== SANITY && !DRAWN_WITH.has(f) && logged(f));
    const chosen = others.includes(this.other.value) ? this.other.value : (others.includes('ndcg_reference') ? 'ndcg_reference' : others[0] ?? '');
    setOptions(this.other, others.map((f) => ({ value: f, label: label(f) })), chosen);
    this.other.parentElement!.hidden = others.length === 0;
    if (chosen) {
      const threshold = answers.map((a) => a.thresholds[chosen]).find((t) => t !== null && t !== undefined);
      chart(chosen, 'value', {
        series: answers.map((a) => ({ name: a.method, color: color(a.method), steps: a.steps, values: a.figures[chosen] ?? [] })),
        references: threshold === undefined || threshold === null ? [] : [{ value: threshold, text: `alarm ${threshold}` }],
      });
    }
    const missing = missingText(answers, methods);
    this.card.note.textContent = 'Deletion AUC: the explained output as features are removed in attribution order (lower: the map found what matters); ' +
      'insertion AUC: as they are put back (higher is better); dashed: the same in a random order. ' +
      'Similarity to the randomized model: maps that stay close to those of the model with its weights shuffled do not explain what it learned.';
    this.card.figure.replaceChildren(
      el('div', { class: 'quality-charts' }, ...charts.map((c) => el('div', { class: 'quality-chart', 'data-figure': c.figure }, titleSvg(c.title, column), c.lines.element))),
      ...(missing.length || failed.length
        ? [el('ul', { class: 'quality-missing', 'aria-label': 'figures not logged' }, ...[...missing, ...failed.map((f) => `Not served: ${f}`)].map((t) => el('li', {}, t)))]
        : []),
    );
    this.card.markDrawn(`${info.run}|${charts.map((c) => c.figure).join(',')}`);
  }

  private table(): Table | null {
    if (!this.current) return null;
    const { answers, info } = this.current;
    const figures = [...new Set(answers.flatMap((a) => Object.keys(a.figures)))];
    return {
      header: ['run', 'method', 'step', ...figures],
      rows: answers.flatMap((a) => a.steps.map((step, i) => [info.run, a.method, step, ...figures.map((f) => a.figures[f]?.[i] ?? null)])),
    };
  }
}

export const QUALITY_STYLE = `
.quality-charts { display: flex; flex-wrap: wrap; gap: 4px 16px; }
.quality-chart { min-width: 0; }
.quality-missing { margin: 8px 0 0; padding-left: 18px; font-size: 12px; color: var(--muted); }
`;
