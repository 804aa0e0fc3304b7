// The top-k card: the k most important features' mean attribution over steps, with a training curve of the
// same run (loss or a metric from the Keras TensorBoard callback's runs) on a second axis.

import { lineColors } from '../colors';
import { el, setOptions } from '../dom';
import { fileStem } from '../export';
import { Evolution, Scalars, ScalarSeries } from '../model';
import { Card, Table } from './card';
import { elementNames, valueName } from './evolution';
import { Lines, Series } from './lines';

export interface TopkContext {
  run: string;
  method: string;
  k: number;
  overlay: string; // 'auto', 'none' or '<run>|<tag>'
}

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

export class TopkView {
  readonly card: Card;
  private readonly lines = new Lines(200);
  private readonly overlay = el('select', { name: 'overlay', 'aria-label': 'training curve' });
  private current: { evolution: Evolution; context: TopkContext; series: Series[] } | null = null;

  constructor(onOverlay: (overlay: string) => void) {
    this.card = new Card({
      id: 'topk',
      title: 'Top-k features over training',
      fileName: () => fileStem('topk', this.current?.context.run ?? '', this.current?.context.method ?? ''),
      table: () => this.table(),
    });
    this.card.tools.append(el('label', { class: 'field' }, el('span', {}, 'Training curve'), this.overlay));
    this.overlay.addEventListener('change', () => onOverlay(this.overlay.value));
  }

  /** Forgets what was drawn (the data failed to load): exports and step marks have nothing to show. */
  clear(): void {
    this.current = null;
    this.card.clear();
  }

  show(evolution: Evolution, scalars: Scalars | null, context: TopkContext, width: number): void {
    const names = elementNames(evolution);
    const order = evolution.order ?? names.map((_, i) => i);
    const top = order.slice(0, Math.min(context.k, names.length));
    const series: Series[] = top.map((i, n) => ({
      name: names[i],
      color: lineColors[n % lineColors.length],
      steps: evolution.steps,
      values: evolution.importance.map((step) => step[i]),
    }));

    const keys = scalars ? Object.entries(scalars.runs).flatMap(([run, tags]) => Object.keys(tags).map((tag) => `${run}|${tag}`)) : [];
    setOptions(
      this.overlay,
      [{ value: 'auto', label: 'auto (loss)' }, { value: 'none', label: 'none' }, ...keys.map((key) => ({ value: key, label: key.replace('|', ' · ') }))],
      context.overlay,
    );
    this.overlay.parentElement!.hidden = keys.length === 0;
    const picked = scalars ? pickOverlay(scalars, context.overlay) : null;
    if (picked) {
      series.push({ name: picked.key.replace('|', ' · '), color: '#616161', steps: picked.series.steps, values: picked.series.values, dashed: true, axis: 'right' });
    }
    this.current = { evolution, context, series };
    this.lines.draw({ series, yLabel: valueName(evolution.signed), rightLabel: picked ? picked.key.split('|')[1] : undefined }, width);
    this.card.note.textContent = `The ${top.length} features ranked highest at the last step${picked ? '; dashed: the training curve on the right axis' : keys.length ? '' : ' (this run has no Keras scalars to overlay)'}. Hover to read values.`;
    this.card.figure.replaceChildren(this.lines.element);
    this.card.markDrawn(`${context.run}|${context.method}|${top.length}|${picked ? picked.key : ''}`);
  }

  private table(): Table | null {
    if (!this.current) return null;
    const { series } = this.current;
    const steps = [...new Set(series.flatMap((s) => s.steps))].sort((a, b) => a - b);
    const at = series.map((s) => new Map(s.steps.map((step, i) => [step, s.values[i]])));
    return { header: ['step', ...series.map((s) => s.name)], rows: steps.map((step) => [step, ...at.map((m) => m.get(step) ?? null)]) };
  }
}
