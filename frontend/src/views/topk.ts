// The top-k card: the k most important features' mean attribution over steps, with a training curve of the
// same run (loss or a metric from the Keras TensorBoard callback's runs) on a second axis. Compared runs:
// the baseline's top-k features in every run, one colour per run, one dash per feature.

import { lineColors, lineDashes } from '../colors';
import { el, setOptions } from '../dom';
import { fileStem } from '../export';
import { Evolution, Scalars, ScalarSeries, elementName, fetchEvolution, fetchScalars, scalarsVersion } from '../model';
import { Card, Table } from './card';
import { valueName } from './evolution';
import { Lines, Series } from './lines';
import { Draw, Shown, View, ViewContext } from './view';

/** The scalar series the user picked, or for 'auto' the training loss (an epoch-level one first). */
export function pickOverlay(scalars: Scalars, overlay: string): { key: string; series: ScalarSeries } | null {
  const all = Object.entries(scalars.runs).flatMap(([run, tags]) =>
    Object.entries(tags).map(([tag, series]) => ({ key: `${run}|${tag}`, run, tag, series })),
  );
  if (overlay === 'none') return null;
  if (overlay !== 'auto') return all.find((s) => s.key === overlay) ?? null;
  const rank = (s: { run: string; tag: string }) =>
    (s.tag.includes('loss') ? 0 : 4) + (/(^|\/)train$/.test(s.run) ? 0 : 2) + (s.tag.startsWith('epoch') ? 0 : 1);
  return [...all].sort((a, b) => rank(a) - rank(b))[0] ?? null;
}

export class TopkView implements View {
  readonly card: Card;
  private readonly lines = new Lines(200);
  private readonly overlay = el('select', { name: 'overlay', 'aria-label': 'training curve' });
  private current: { runs: Shown[]; method: string; series: Series[] } | null = null;

  constructor(onOverlay: (overlay: string) => void) {
    this.card = new Card({
      id: 'topk',
      title: 'Top-k features over training',
      fileName: () => fileStem('topk', ...(this.current?.runs.map((r) => r.info.run) ?? []), this.current?.method ?? ''),
      table: () => this.table(),
    });
    this.card.tools.append(el('label', { class: 'field' }, el('span', {}, 'Training curve'), this.overlay));
    this.overlay.addEventListener('change', () => onOverlay(this.overlay.value));
  }

  clear(): void {
    this.current = null;
    this.card.clear();
  }

  async load(context: ViewContext): Promise<Draw> {
    const primary = context.primary.info;
    const single = context.runs.length === 1;
    const scalars = single && primary.scalar_runs.length ? fetchScalars(primary.run, scalarsVersion(primary)).catch(() => null) : Promise.resolve(null);
    const [answers, curves] = await Promise.all([Promise.all(context.runs.map((r) => fetchEvolution(r.query))), scalars]);
    return (width) => this.draw(answers, curves, context, width);
  }

  private draw(answers: Evolution[], scalars: Scalars | null, context: ViewContext, width: number): void {
    const { runs, selection } = context;
    const first = answers[0];
    const top = first.order.slice(0, Math.min(selection.k, first.order.length));
    const compared = runs.length > 1;
    const series: Series[] = compared
      ? top.flatMap((i, n) => answers.map((a, r) => ({
        name: `${elementName(a.layout, i)} · ${runs[r].info.run}`,
        color: runs[r].color,
        dashed: lineDashes[n % lineDashes.length],
        steps: a.steps,
        values: a.importance.map((step) => step[i]),
      })))
      : top.map((i, n) => ({
        name: elementName(first.layout, i),
        color: lineColors[n % lineColors.length],
        steps: first.steps,
        values: first.importance.map((step) => step[i]),
      }));

    const keys = scalars ? Object.entries(scalars.runs).flatMap(([run, tags]) => Object.keys(tags).map((tag) => `${run}|${tag}`)) : [];
    setOptions(
      this.overlay,
      [{ value: 'auto', label: 'auto (loss)' }, { value: 'none', label: 'none' }, ...keys.map((key) => ({ value: key, label: key.replace('|', ' · ') }))],
      selection.overlay,
    );
    this.overlay.parentElement!.hidden = keys.length === 0;
    const picked = scalars ? pickOverlay(scalars, selection.overlay) : null;
    if (picked) {
      series.push({ name: picked.key.replace('|', ' · '), color: '#9e9e9e', steps: picked.series.steps, values: picked.series.values, dashed: true, axis: 'right' });
    }
    this.current = { runs, method: selection.method, series };
    this.lines.draw({ series, yLabel: valueName(first.signed), rightLabel: picked ? picked.key.split('|')[1] : undefined }, width);
    const curve = picked ? '; dashed grey: the training curve on the right axis' : keys.length || compared ? '' : ' (this run has no Keras scalars to overlay)';
    this.card.note.textContent = compared
      ? `The ${top.length} features ranked highest in ${runs[0].info.run} at its last step, in every run: colour = run, dash = feature. Hover to read values.`
      : `The ${top.length} features ranked highest at the last step${curve}. Hover to read values.`;
    this.card.figure.replaceChildren(this.lines.element);
    this.card.markDrawn(`${runs.map((r) => r.info.run).join('+')}|${selection.method}|${top.length}|${picked ? picked.key : ''}`);
  }

  private table(): Table | null {
    if (!this.current) return null;
    const { series } = this.current;
    const steps = [...new Set(series.flatMap((s) => s.steps))].sort((a, b) => a - b);
    const at = series.map((s) => new Map(s.steps.map((step, i) => [step, s.values[i]])));
    return { header: ['step', ...series.map((s) => s.name)], rows: steps.map((step) => [step, ...at.map((m) => m.get(step) ?? null)]) };
  }
}
