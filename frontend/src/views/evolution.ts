// The evolution card: which features matter, since when. Tabular inputs get a ranked feature x step heatmap,
// image inputs a filmstrip of the mean attribution map per step. Compared runs are drawn side by side on one
// colour scale, with the difference of each run from the baseline (B minus A) at the steps both logged.

import { attributionScale, differenceScale } from '../colors';
import { el, setOptions } from '../dom';
import { fileStem } from '../export';
import { Difference, Evolution, RankBy, elementName, elementNames, fetchEvolution, difference, pictureSize, sharedRange } from '../model';
import { Card, Table } from './card';
import { Filmstrip, evenlySpaced } from './filmstrip';
import { Heatmap } from './heatmap';
import { titleSvg } from './legend';
import { alignWords, isTextInput } from './text';
import { Draw, Shown, View, ViewContext } from './view';

export function valueName(signed: boolean): string {
  return signed ? 'mean attribution' : 'mean |attribution|';
}

interface Panel {
  title: string;
  color?: string;
  steps: number[];
  maps: (((number | null)[]) | null)[]; // per step of `steps`
  difference: boolean;
}

/** Every answer's maps on the union of their steps (null where a run did not log the step). */
function onSteps(steps: number[], evolution: { steps: number[]; importance: (number | null)[][] }): ((number | null)[] | null)[] {
  const at = new Map(evolution.steps.map((s, i) => [s, evolution.importance[i]]));
  return steps.map((s) => at.get(s) ?? null);
}

export class EvolutionView implements View {
  readonly card: Card;
  private readonly rows = el('select', { name: 'rows', 'aria-label': 'rows shown' });
  private readonly by = el('select', { name: 'by', 'aria-label': 'rank by' }); // a text input's words or positions
  private readonly heatmaps: Heatmap[] = [];
  private readonly filmstrips: Filmstrip[] = [];
  private current: { answers: Evolution[]; runs: Shown[]; differences: Difference[]; method: string; by: RankBy | null } | null = null;

  constructor(private readonly onRows: (rows: number) => void, private readonly onPickStep: (step: number) => void, onBy: (by: RankBy) => void) {
    this.card = new Card({
      id: 'evolution',
      title: 'Attribution evolution',
      fileName: () => fileStem('evolution', ...(this.current?.runs.map((r) => r.info.run) ?? []), this.current?.method ?? ''),
      table: () => this.table(),
    });
    this.card.tools.append(el('label', { class: 'field' }, el('span', {}, 'Rank by'), this.by), el('label', { class: 'field' }, el('span', {}, 'Rows'), this.rows));
    setOptions(this.by, [{ value: 'word', label: 'word' }, { value: 'position', label: 'position' }], 'word');
    this.by.parentElement!.hidden = true;
    this.by.addEventListener('change', () => onBy(this.by.value === 'position' ? 'position' : 'word'));
    this.rows.addEventListener('change', () => this.onRows(Number(this.rows.value)));
  }

  clear(): void {
    this.current = null;
    this.card.clear();
  }

  async load(context: ViewContext): Promise<Draw> {
    const s = context.selection;
    // A text input ranks words or token positions; compared runs' words are lined up by word.
    const by = isTextInput(context.primary.info, s.method, s.input) ? s.by : null;
    const fetched = await Promise.all(context.runs.map((r) => fetchEvolution(r.query, by ?? 'position')));
    const answers = by === 'word' ? fetched.map((b, i) => (i === 0 ? b : alignWords(fetched[0], b))) : fetched;
    const differences = answers.slice(1).map((b) => difference(answers[0], b));
    return (width) => {
      this.current = { answers, runs: context.runs, differences, method: s.method, by };
      this.draw(context, width);
    };
  }

  private draw(context: ViewContext, width: number): void {
    const { answers, runs, differences, by } = this.current!;
    const first = answers[0];
    const signed = first.signed;
    this.by.parentElement!.hidden = by === null;
    if (by) this.by.value = by;
    const scale = attributionScale(sharedRange(answers.map((a) => a.range)), signed);
    const diffScale = differenceScale(sharedRange(differences.map((d) => d.range)));
    const steps = [...new Set(answers.flatMap((a) => a.steps))].sort((a, b) => a - b);
    const panels: Panel[] = answers.map((a, i) => ({
      title: runs[i].info.run, color: runs.length > 1 ? runs[i].color : undefined, steps, maps: onSteps(steps, a), difference: false,
    }));
    differences.forEach((d, i) => panels.push({
      title: `${runs[i + 1].info.run} − ${runs[0].info.run}`, steps, maps: onSteps(steps, d), difference: true,
    }));
    const probes = Math.max(0, ...first.probe_counts);
    const what = `${valueName(signed)} over ${probes} probe${probes === 1 ? '' : 's'}`;
    const compared = runs.length > 1;
    const comparedNote = compared
      ? ` Runs side by side on one colour scale, aligned by step (a step a run did not log is grey or "not logged"); then each run minus ${runs[0].info.run} (blue: lower, red: higher) at the steps both logged.`
      : '';
    const figure: Node[] = [];
    if (first.layout.picture) {
      this.rows.parentElement!.hidden = true;
      const [height, mapWidth] = pictureSize(first.layout);
      // One set of columns for every strip, so a step sits under the same step in each.
      const probe = this.filmstrip(0);
      const columns = probe.columnsFor(width, Math.max(height, mapWidth));
      const shown = evenlySpaced(steps.length, columns * (compared ? 1 : 3));
      panels.forEach((panel, i) => {
        const strip = this.filmstrip(i);
        const last = i === panels.length - 1 || panels[i + 1].difference !== panel.difference;
        strip.draw({
          steps, maps: panel.maps, height, width: mapWidth, shown, scale: panel.difference ? diffScale : scale,
          valueName: panel.difference ? `difference of ${valueName(signed)}` : valueName(signed), noColorBar: !last,
          elementName: (i) => elementName(first.layout, i),
        }, width);
        if (compared) figure.push(titleSvg(panel.title, width, panel.color));
        figure.push(strip.element);
      });
      const left = steps.length - shown.length;
      this.card.note.textContent = `Mean attribution map per step (colour: ${what})${left ? `; ${shown.length} of ${steps.length} steps shown, evenly spaced` : ''}. Click a map to open that step in the probe explorer.${comparedNote}`;
    } else {
      const names = elementNames(first.layout);
      const order = first.order;
      this.rows.parentElement!.hidden = false;
      const rowsWanted = context.selection.rows;
      const shownRows = rowsWanted > 0 && rowsWanted < names.length ? rowsWanted : names.length;
      const choices = [...new Set([10, 30, 100, shownRows])].filter((n) => n < names.length).sort((a, b) => a - b);
      setOptions(
        this.rows,
        [...choices.map((n) => ({ value: String(n), label: `top ${n}` })), { value: '0', label: `all ${names.length}` }],
        shownRows < names.length ? String(shownRows) : '0',
      );
      const rows = order.slice(0, shownRows);
      const perRow = compared ? Math.min(3, panels.length) : 1;
      const panelWidth = Math.floor((width - 16 * (perRow - 1)) / perRow);
      const row = el('div', { class: 'panels' });
      panels.forEach((panel, i) => {
        const heatmap = this.heatmap(i);
        const lastOfKind = i === panels.length - 1 || panels[i + 1].difference !== panel.difference;
        heatmap.draw({
          rows: rows.map((n) => names[n]),
          steps,
          values: rows.map((n) => panel.maps.map((m) => (m ? m[n] : null))),
          scale: panel.difference ? diffScale : scale,
          valueName: panel.difference ? 'difference' : valueName(signed),
          noColorBar: !lastOfKind,
        }, panelWidth);
        const cell = el('div', { class: 'panel' });
        if (compared) cell.append(titleSvg(panel.title, panelWidth, panel.color));
        cell.append(heatmap.element);
        row.append(cell);
      });
      figure.push(row);
      const ranked = compared ? ` by importance in ${runs[0].info.run} at its last step` : ' by importance at the last step';
      const things = by === 'word' ? 'Words' : by === 'position' ? 'Token positions' : 'Features';
      const colour = by === 'word'
        ? `a word's ${signed ? 'mean attribution' : 'mean |attribution|'} over its occurrences in the ${probes} probe${probes === 1 ? '' : 's'} (padding left out)`
        : what;
      this.card.note.textContent = `${things} ordered${ranked}${shownRows < names.length ? ` (top ${shownRows} of ${names.length})` : ''}; colour: ${colour}. Hover or use arrow keys for values; click a column to open that step in the probe explorer.${comparedNote}`;
    }
    this.card.figure.replaceChildren(...figure);
    this.card.markDrawn(`${runs.map((r) => r.info.run).join('+')}|${this.current!.method}|${first.steps.length}${by ? `|${by}` : ''}`);
  }

  private heatmap(i: number): Heatmap {
    while (this.heatmaps.length <= i) {
      const n = this.heatmaps.length;
      this.heatmaps.push(new Heatmap((column) => this.pick(n, column)));
    }
    return this.heatmaps[i];
  }

  private filmstrip(i: number): Filmstrip {
    while (this.filmstrips.length <= i) this.filmstrips.push(new Filmstrip((index) => this.pick(0, index)));
    return this.filmstrips[i];
  }

  private pick(_panel: number, column: number): void {
    if (!this.current) return;
    const steps = [...new Set(this.current.answers.flatMap((a) => a.steps))].sort((a, b) => a - b);
    if (steps[column] !== undefined) this.onPickStep(steps[column]);
  }

  /** Outlines the step the probe explorer shows. */
  markStep(step: number | null): void {
    if (!this.current || this.current.answers[0].layout.picture) return;
    const steps = [...new Set(this.current.answers.flatMap((a) => a.steps))].sort((a, b) => a - b);
    const column = step === null ? -1 : steps.indexOf(step);
    this.heatmaps.forEach((h) => h.mark(column >= 0 ? column : null));
  }

  private table(): Table | null {
    if (!this.current) return null;
    const { answers, runs, differences } = this.current;
    const layout = answers[0].layout;
    const blocks = [
      ...answers.map((a, i) => ({ run: runs[i].info.run, steps: a.steps, importance: a.importance })),
      ...differences.map((d, i) => ({ run: `${runs[i + 1].info.run} - ${runs[0].info.run}`, steps: d.steps, importance: d.importance })),
    ];
    if (layout.picture) {
      const [, width] = pictureSize(layout);
      const rows = blocks.flatMap((b) => b.steps.flatMap((step, s) =>
        b.importance[s].map((value, i) => [b.run, step, Math.floor(i / width), i % width, elementName(layout, i), value])));
      return { header: ['run', 'step', 'row', 'col', 'element', valueName(answers[0].signed)], rows };
    }
    const order = answers[0].order;
    const steps = [...new Set(blocks.flatMap((b) => b.steps))].sort((a, b) => a - b);
    if (this.current.by === 'word') {
      // Each run's occurrences of the word in its probes beside its values (a difference has none).
      const counts = [...answers.map((a) => a.counts ?? []), ...differences.map((): number[] => [])];
      return {
        header: ['run', 'word', 'occurrences', ...steps.map((s) => `step_${s}`)],
        rows: blocks.flatMap((b, n) => {
          const maps = onSteps(steps, b);
          return order.map((i) => [b.run, elementName(layout, i), counts[n][i] ?? null, ...maps.map((m) => (m ? m[i] : null))]);
        }),
      };
    }
    return {
      header: ['run', 'feature', ...steps.map((s) => `step_${s}`)],
      rows: blocks.flatMap((b) => {
        const maps = onSteps(steps, b);
        return order.map((i) => [b.run, elementName(layout, i), ...maps.map((m) => (m ? m[i] : null))]);
      }),
    };
  }
}
