// Features (rows) x steps (columns) heatmap. Cells are painted on a canvas (one pixel per cell, scaled up
// without smoothing), labels, axes and the colour bar are SVG. Hover or arrow keys show the exact value.

import { axisBottom } from 'd3-axis';
import { scaleBand } from 'd3-scale';
import { select } from 'd3-selection';
import { ColorScale, paintValues } from '../colors';
import { el, formatValue, shorten, svgElement } from '../dom';
import { ink } from '../theme';
import { drawColorLegend } from './legend';
import { Tooltip } from './tooltip';

export interface HeatmapData {
  rows: string[]; // row labels, top to bottom
  steps: number[];
  values: (number | null)[][]; // [row][column]
  scale: ColorScale;
  valueName: string;
  /** Leave out the colour bar (a heatmap beside another that shows the shared one). */
  noColorBar?: boolean;
}

const ROW_MIN = 12;
const ROW_MAX = 20;
const FONT_PX = 11;

/** Every n-th of `steps` so that about `count` ticks show. */
export function stepTicks(steps: number[], count: number): number[] {
  const every = Math.max(1, Math.ceil(steps.length / count));
  return steps.filter((_, i) => i % every === 0);
}

export class Heatmap {
  readonly element: HTMLElement;
  private readonly canvas: HTMLCanvasElement;
  private readonly svg: SVGSVGElement;
  private readonly marks: SVGSVGElement;
  private readonly tooltip: Tooltip;
  private data: HeatmapData | null = null;
  private layout = { left: 0, top: 0, cell: 0, row: 0, width: 0, height: 0 };
  private cursor: [number, number] | null = null;
  private marked: number | null = null;

  /**
   * `onPick(column)` runs when a column is clicked or Enter is pressed on it; `top` is the space above the
   * first row (to line rows up with a chart beside the heatmap).
   */
  constructor(private readonly onPick: (column: number) => void = () => {}, private readonly top = 6) {
    this.canvas = el('canvas', { class: 'cells', tabindex: 0, 'aria-label': 'heatmap: use arrow keys to read values' });
    this.svg = svgElement();
    this.marks = svgElement(); // above the canvas: the marked column and cursor
    this.marks.classList.add('marks');
    this.element = el('div', { class: 'heatmap' }, this.svg, this.canvas, this.marks);
    this.tooltip = new Tooltip(this.element);
    this.canvas.addEventListener('mousemove', (event) => {
      const cell = this.cellAt(event.offsetX, event.offsetY);
      if (cell) this.showCell(cell[0], cell[1]);
      else this.tooltip.hide();
    });
    this.canvas.addEventListener('mouseleave', () => this.tooltip.hide());
    this.canvas.addEventListener('click', (event) => {
      const cell = this.cellAt(event.offsetX, event.offsetY);
      if (cell) this.onPick(cell[1]);
    });
    this.canvas.addEventListener('keydown', (event) => this.onKey(event));
    this.canvas.addEventListener('blur', () => {
      this.cursor = null;
      this.drawMarks();
      this.tooltip.hide();
    });
  }

  /** Draws `data` to fit `width` pixels. */
  draw(data: HeatmapData, width: number): void {
    this.data = data;
    const measure = document.createElement('canvas').getContext('2d')!;
    measure.font = `${FONT_PX}px Roboto, Arial, sans-serif`;
    const labelWidth = Math.max(30, ...data.rows.map((name) => measure.measureText(shorten(name)).width));
    const left = Math.ceil(labelWidth) + 10;
    const right = 76; // the colour bar's room, kept when it is left out so panels side by side line up
    const bottom = 34;
    const plotWidth = Math.max(60, width - left - right);
    const rowHeight = Math.max(ROW_MIN, Math.min(ROW_MAX, Math.floor(360 / Math.max(1, data.rows.length))));
    const plotHeight = rowHeight * data.rows.length;
    this.layout = { left, top: this.top, cell: plotWidth / data.steps.length, row: rowHeight, width: plotWidth, height: plotHeight };
    this.paintCells(plotWidth, plotHeight);
    this.drawAxes(width, Math.max(plotHeight + bottom, this.colourBarHeight() + 10) + this.layout.top);
    this.drawMarks();
  }

  /** The height of one row as last drawn. */
  get rowHeight(): number {
    return this.layout.row;
  }

  /** Outlines `column` (e.g. the step the probe explorer shows); null for none. */
  mark(column: number | null): void {
    this.marked = column;
    this.drawMarks();
  }

  private paintCells(width: number, height: number): void {
    const { rows, steps, values, scale } = this.data!;
    const dpr = window.devicePixelRatio || 1;
    this.canvas.width = Math.round(width * dpr);
    this.canvas.height = Math.round(height * dpr);
    this.canvas.style.width = `${width}px`;
    this.canvas.style.height = `${height}px`;
    this.canvas.style.left = `${this.layout.left}px`;
    this.canvas.style.top = `${this.layout.top}px`;
    // One pixel per cell, then scaled: 20,000 cells cost one putImageData and one drawImage.
    const cells = paintValues(rows.length, steps.length, (r, c) => values[r][c], scale);
    const ctx = this.canvas.getContext('2d')!;
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(cells, 0, 0, this.canvas.width, this.canvas.height);
  }

  private drawAxes(width: number, height: number): void {
    const { rows, steps, scale, valueName } = this.data!;
    const { left, top, row, width: plotWidth, height: plotHeight } = this.layout;
    const svg = select(this.svg).attr('width', width).attr('height', height);
    svg.selectAll('*').remove();
    this.element.style.height = `${height}px`;
    this.element.style.width = `${width}px`;

    const labels = svg.append('g').attr('class', 'row-labels').attr('font-size', FONT_PX).attr('text-anchor', 'end');
    labels
      .selectAll('text')
      .data(rows)
      .join('text')
      .attr('x', left - 6)
      .attr('y', (_, i) => top + i * row + row / 2)
      .attr('dy', '0.35em')
      .attr('fill', ink().text)
      .text((name) => shorten(name))
      .append('title')
      .text((name) => name);

    const x = scaleBand<number>().domain(steps).range([left, left + plotWidth]);
    svg
      .append('g')
      .attr('transform', `translate(0,${top + plotHeight})`)
      .call(axisBottom(x).tickValues(stepTicks(steps, Math.max(2, Math.floor(plotWidth / 60)))).tickSizeOuter(0));
    svg
      .append('text')
      .attr('x', left + plotWidth / 2)
      .attr('y', height - 2)
      .attr('text-anchor', 'middle')
      .attr('font-size', FONT_PX)
      .attr('fill', ink().muted)
      .text('step');

    if (!this.data!.noColorBar) {
      drawColorLegend(svg, { scale, title: valueName, x: left + plotWidth + 14, y: top, length: this.colourBarHeight(), orientation: 'vertical' });
    }
    select(this.marks).attr('width', width).attr('height', height);
  }

  private colourBarHeight(): number {
    return Math.max(80, Math.min(this.layout.height, 200));
  }

  private drawMarks(): void {
    if (!this.data) return;
    const { left, top, cell, row, height } = this.layout;
    const marks = select(this.marks);
    marks.selectAll('*').remove();
    if (this.marked !== null) {
      marks.append('rect').attr('x', left + this.marked * cell).attr('y', top).attr('width', Math.max(cell, 2)).attr('height', height)
        .attr('fill', 'none').attr('stroke', ink().strong).attr('stroke-width', 1.5);
    }
    if (this.cursor) {
      const [r, c] = this.cursor;
      marks.append('rect').attr('x', left + c * cell).attr('y', top + r * row).attr('width', Math.max(cell, 2)).attr('height', row)
        .attr('fill', 'none').attr('stroke', ink().cursor).attr('stroke-width', 2);
    }
  }

  private cellAt(x: number, y: number): [number, number] | null {
    if (!this.data) return null;
    const r = Math.floor(y / this.layout.row);
    const c = Math.floor(x / this.layout.cell);
    if (r < 0 || c < 0 || r >= this.data.rows.length || c >= this.data.steps.length) return null;
    return [r, c];
  }

  private showCell(r: number, c: number): void {
    const { rows, steps, values, valueName } = this.data!;
    this.tooltip.show(
      [`feature: ${rows[r]}`, `step: ${steps[c]}`, `${valueName}: ${formatValue(values[r][c])}`],
      this.layout.left + (c + 1) * this.layout.cell,
      this.layout.top + (r + 1) * this.layout.row,
    );
  }

  private onKey(event: KeyboardEvent): void {
    if (!this.data) return;
    const moves: Record<string, [number, number]> = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    if (event.key === 'Enter' && this.cursor) {
      this.onPick(this.cursor[1]);
      return;
    }
    const move = moves[event.key];
    if (!move) return;
    event.preventDefault();
    const [r, c] = this.cursor ?? [0, this.data.steps.length - 1];
    const next: [number, number] = [
      Math.max(0, Math.min(this.data.rows.length - 1, r + (this.cursor ? move[0] : 0))),
      Math.max(0, Math.min(this.data.steps.length - 1, c + (this.cursor ? move[1] : 0))),
    ];
    this.cursor = next;
    this.drawMarks();
    this.showCell(next[0], next[1]);
  }
}
