// The evolution card: which features matter, since when. Tabular inputs get a ranked feature x step heatmap,
// image inputs a filmstrip of the mean attribution map per step.

import { attributionScale } from '../colors';
import { el, setOptions } from '../dom';
import { fileStem } from '../export';
import { Evolution } from '../model';
import { Card, Table } from './card';
import { Filmstrip } from './filmstrip';
import { Heatmap } from './heatmap';

export interface EvolutionContext {
  run: string;
  method: string;
  rows: number;
}

/**
 * Names for every element of a map, row-major, as tb_xai.aggregate.element_names gives them (and so
 * Run.to_dataframe / map_names): the plugin sends them for 1-D maps; for image maps it sends `null` and they
 * are built here from `map_shape`: "pixel (row, col)" for a 2-D image map, else the comma-joined index "3,5".
 */
export function elementNames(map: { features: string[] | null; map_shape: number[]; modality: string }): string[] {
  if (map.features) return map.features;
  const shape = map.map_shape;
  const total = shape.reduce((a, b) => a * b, 1);
  const names: string[] = new Array(total);
  if (shape.length === 2 && map.modality === 'image') {
    const width = shape[1];
    for (let i = 0; i < total; i++) names[i] = `pixel (${Math.floor(i / width)}, ${i % width})`;
    return names;
  }
  const index = new Array(shape.length).fill(0);
  for (let i = 0; i < total; i++) {
    names[i] = index.join(',');
    for (let d = shape.length - 1; d >= 0; d--) {
      if (++index[d] < shape[d]) break;
      index[d] = 0;
    }
  }
  return names;
}

/** Whether maps of this shape are drawn as pictures rather than as feature rows. */
export function isPicture(mapShape: number[]): boolean {
  return mapShape.length >= 2;
}

export function valueName(signed: boolean): string {
  return signed ? 'mean attribution' : 'mean |attribution|';
}

export class EvolutionView {
  readonly card: Card;
  private readonly heatmap: Heatmap;
  private readonly filmstrip: Filmstrip;
  private readonly rows = el('select', { name: 'rows', 'aria-label': 'rows shown' });
  private current: { evolution: Evolution; context: EvolutionContext } | null = null;

  constructor(onRows: (rows: number) => void, onPickStep: (step: number) => void) {
    this.card = new Card({
      id: 'evolution',
      title: 'Attribution evolution',
      fileName: () => fileStem('evolution', this.current?.context.run ?? '', this.current?.context.method ?? ''),
      table: () => this.table(),
    });
    this.heatmap = new Heatmap((column) => this.current && onPickStep(this.current.evolution.steps[column]));
    this.filmstrip = new Filmstrip((index) => this.current && onPickStep(this.current.evolution.steps[index]));
    this.card.tools.append(el('label', { class: 'field' }, el('span', {}, 'Rows'), this.rows));
    this.rows.addEventListener('change', () => onRows(Number(this.rows.value)));
  }

  /** Forgets what was drawn (the data failed to load): exports and step marks have nothing to show. */
  clear(): void {
    this.current = null;
    this.card.clear();
  }

  show(evolution: Evolution, context: EvolutionContext, width: number): void {
    this.current = { evolution, context };
    const scale = attributionScale(evolution.range, evolution.signed);
    const probes = Math.max(0, ...evolution.probe_counts);
    const what = `${valueName(evolution.signed)} over ${probes} probe${probes === 1 ? '' : 's'}`;
    if (isPicture(evolution.map_shape)) {
      this.rows.parentElement!.hidden = true;
      const [height, mapWidth] = [evolution.map_shape[0], evolution.map_shape.slice(1).reduce((a, b) => a * b, 1)];
      const left = this.filmstrip.draw({ steps: evolution.steps, maps: evolution.importance, height, width: mapWidth, scale, valueName: valueName(evolution.signed) }, width);
      this.card.note.textContent = `Mean attribution map per step (colour: ${what})${left ? `; ${evolution.steps.length - left} of ${evolution.steps.length} steps shown, evenly spaced` : ''}. Click a map to open that step in the probe explorer.`;
      this.card.figure.replaceChildren(this.filmstrip.element);
    } else {
      const names = elementNames(evolution);
      const order = evolution.order ?? names.map((_, i) => i);
      this.rows.parentElement!.hidden = false;
      const shown = context.rows > 0 && context.rows < names.length ? context.rows : names.length;
      const choices = [...new Set([10, 30, 100, shown])].filter((n) => n < names.length).sort((a, b) => a - b);
      setOptions(
        this.rows,
        [...choices.map((n) => ({ value: String(n), label: `top ${n}` })), { value: '0', label: `all ${names.length}` }],
        shown < names.length ? String(shown) : '0',
      );
      const rows = order.slice(0, shown);
      this.heatmap.draw(
        {
          rows: rows.map((i) => names[i]),
          steps: evolution.steps,
          values: rows.map((i) => evolution.importance.map((step) => step[i])),
          scale,
          valueName: valueName(evolution.signed),
        },
        width,
      );
      this.card.note.textContent = `Features ordered by importance at the last step${shown < names.length ? ` (top ${shown} of ${names.length})` : ''}; colour: ${what}. Hover or use arrow keys for values; click a column to open that step in the probe explorer.`;
      this.card.figure.replaceChildren(this.heatmap.element);
    }
    this.card.markDrawn(`${context.run}|${context.method}|${evolution.steps.length}`);
  }

  /** Outlines the step the probe explorer shows. */
  markStep(step: number | null): void {
    if (!this.current || isPicture(this.current.evolution.map_shape)) return;
    const column = step === null ? -1 : this.current.evolution.steps.indexOf(step);
    this.heatmap.mark(column >= 0 ? column : null);
  }

  private table(): Table | null {
    if (!this.current) return null;
    const { evolution } = this.current;
    const names = elementNames(evolution);
    const order = evolution.order ?? names.map((_, i) => i);
    if (isPicture(evolution.map_shape)) {
      const width = evolution.map_shape.slice(1).reduce((a, b) => a * b, 1);
      const rows = evolution.steps.flatMap((step, s) =>
        evolution.importance[s].map((value, i) => [step, Math.floor(i / width), i % width, value]),
      );
      return { header: ['step', 'row', 'col', valueName(evolution.signed)], rows };
    }
    return {
      header: ['feature', ...evolution.steps.map((s) => `step_${s}`)],
      rows: order.map((i) => [names[i], ...evolution.importance.map((step) => step[i])]),
    };
  }
}
