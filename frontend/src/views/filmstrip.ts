// One 2-D attribution map per step, side by side: how the mean map over probes evolves for image inputs.

import { select } from 'd3-selection';
import { ColorScale, paintValues } from '../colors';
import { el, formatValue, svgElement } from '../dom';
import { ink } from '../theme';
import { drawColorLegend } from './legend';
import { Tooltip } from './tooltip';

export interface FilmstripData {
  steps: number[];
  maps: ((number | null)[] | null)[]; // per step, a flattened [height, width] map; null: not logged at that step
  height: number;
  width: number;
  scale: ColorScale;
  valueName: string;
  /** The name of map element `index` (flat, row-major), as the server's layout names it. */
  elementName: (index: number) => string;
  /** Which steps to show (indices into `steps`); default: evenly spaced, as many as fit. */
  shown?: number[];
  /** Leave out the colour scale (a strip under another that shows the shared one). */
  noColorBar?: boolean;
}

const GAP = 8;
const LEGEND = 52;
const LABEL = 16;
const MAX_ROWS = 3;

/** Indices of at most `count` of `n` items, evenly spaced, always with the first and the last. */
export function evenlySpaced(n: number, count: number): number[] {
  if (n <= count) return Array.from({ length: n }, (_, i) => i);
  const picked = new Set<number>();
  for (let i = 0; i < count; i++) picked.add(Math.round((i * (n - 1)) / (count - 1)));
  return [...picked].sort((a, b) => a - b);
}

/** Paints one flattened map into a canvas of its own size. */
export function paintMap(map: (number | null)[], height: number, width: number, scale: ColorScale): HTMLCanvasElement {
  return paintValues(height, width, (r, c) => map[r * width + c], scale);
}

/** The on-screen size of a map of `side` pixels: a whole multiple of it near 72 px, within 48..96. */
function tileSize(side: number): number {
  return Math.max(48, Math.min(96, side * Math.max(1, Math.round(72 / side))));
}

export class Filmstrip {
  readonly element: HTMLElement;
  private readonly canvas: HTMLCanvasElement;
  private readonly svg: SVGSVGElement;
  private readonly tooltip: Tooltip;
  private shown: number[] = [];
  private tile = 0;
  private columns = 1;
  private data: FilmstripData | null = null;

  constructor(private readonly onPick: (index: number) => void = () => {}) {
    this.canvas = el('canvas', { class: 'cells', tabindex: 0 });
    this.svg = svgElement();
    this.element = el('div', { class: 'filmstrip' }, this.svg, this.canvas);
    this.tooltip = new Tooltip(this.element);
    this.canvas.addEventListener('mousemove', (event) => this.hover(event.offsetX, event.offsetY));
    this.canvas.addEventListener('mouseleave', () => this.tooltip.hide());
    this.canvas.addEventListener('click', (event) => {
      const hit = this.tileAt(event.offsetX, event.offsetY);
      if (hit) this.onPick(this.shown[hit.index]);
    });
  }

  /** How many maps of `side` pixels fit in one row of `width`. */
  columnsFor(width: number, side: number): number {
    return Math.max(1, Math.floor((width + GAP) / (tileSize(side) + GAP)));
  }

  /** Draws the maps to fit `width`; returns how many steps were left out to keep it compact. */
  draw(data: FilmstripData, width: number): number {
    this.data = data;
    const side = Math.max(data.height, data.width);
    this.tile = tileSize(side);
    this.columns = this.columnsFor(width, side);
    this.shown = data.shown ?? evenlySpaced(data.steps.length, this.columns * MAX_ROWS);
    const rows = Math.ceil(this.shown.length / this.columns);
    const pitchY = this.tile + LABEL + GAP;
    const tilesWidth = Math.min(this.shown.length, this.columns) * (this.tile + GAP) - GAP;
    const tilesHeight = rows * pitchY;
    const totalWidth = data.noColorBar ? tilesWidth : Math.max(tilesWidth, 220);
    const totalHeight = tilesHeight + (data.noColorBar ? 0 : LEGEND);
    const dpr = window.devicePixelRatio || 1;
    this.canvas.width = Math.round(tilesWidth * dpr);
    this.canvas.height = Math.round(tilesHeight * dpr);
    this.canvas.style.width = `${tilesWidth}px`;
    this.canvas.style.height = `${tilesHeight}px`;
    this.canvas.style.left = '0px';
    this.canvas.style.top = '0px';
    this.element.style.height = `${totalHeight}px`;
    const ctx = this.canvas.getContext('2d')!;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.imageSmoothingEnabled = side > this.tile;
    const svg = select(this.svg).attr('width', totalWidth).attr('height', totalHeight);
    svg.selectAll('*').remove();
    this.shown.forEach((index, n) => {
      const x = (n % this.columns) * (this.tile + GAP);
      const y = Math.floor(n / this.columns) * pitchY;
      const map = data.maps[index];
      if (map) {
        ctx.drawImage(paintMap(map, data.height, data.width, data.scale), x, y, this.tile, this.tile);
      } else {
        ctx.strokeStyle = ink().border;
        ctx.strokeRect(x + 0.5, y + 0.5, this.tile - 1, this.tile - 1);
        svg.append('text').attr('x', x + this.tile / 2).attr('y', y + this.tile / 2).attr('dy', '0.35em').attr('text-anchor', 'middle')
          .attr('font-size', 10).attr('fill', ink().muted).text('not logged');
      }
      svg.append('text').attr('x', x + this.tile / 2).attr('y', y + this.tile + 12).attr('text-anchor', 'middle')
        .attr('font-size', 11).attr('fill', ink().text).text(`step ${data.steps[index]}`);
    });
    if (!data.noColorBar) {
      drawColorLegend(svg, { scale: data.scale, title: data.valueName, x: 4, y: tilesHeight + 2, length: Math.min(totalWidth - 8, 320), orientation: 'horizontal' });
    }
    return data.steps.length - this.shown.length;
  }

  private tileAt(x: number, y: number): { index: number; row: number; col: number } | null {
    const pitchX = this.tile + GAP;
    const pitchY = this.tile + LABEL + GAP;
    const n = Math.floor(y / pitchY) * this.columns + Math.floor(x / pitchX);
    const inX = x % pitchX;
    const inY = y % pitchY;
    if (n >= this.shown.length || inX >= this.tile || inY >= this.tile || !this.data) return null;
    return {
      index: n,
      row: Math.floor((inY / this.tile) * this.data.height),
      col: Math.floor((inX / this.tile) * this.data.width),
    };
  }

  private hover(x: number, y: number): void {
    const hit = this.tileAt(x, y);
    if (!hit || !this.data) {
      this.tooltip.hide();
      return;
    }
    const step = this.shown[hit.index];
    const value = this.data.maps[step]?.[hit.row * this.data.width + hit.col] ?? null;
    this.tooltip.show([`step: ${this.data.steps[step]}`, this.data.elementName(hit.row * this.data.width + hit.col), `${this.data.valueName}: ${formatValue(value)}`], x, y);
  }
}
