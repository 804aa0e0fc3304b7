// One 2-D attribution map per step, side by side: how the mean map over probes evolves for image inputs.

import { select } from 'd3-selection';
import { ColorScale, MISSING_RGB, lookupTable, tableIndex } from '../colors';
import { el, formatValue } from '../dom';
import { Tooltip } from './tooltip';

export interface FilmstripData {
  steps: number[];
  maps: (number | null)[][]; // per step, a flattened [height, width] map
  height: number;
  width: number;
  scale: ColorScale;
  valueName: string;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
const GAP = 8;
const LABEL = 16;
const MAX_ROWS = 3;

/** Indices of at most `count` of `n` items, evenly spaced, always with the first and the last. */
export function evenlySpaced(n: number, count: number): number[] {
  if (n <= count) return Array.from({ length: n }, (_, i) => i);
  const picked = new Set<number>();
  for (let i = 0; i < count; i++) picked.add(Math.round((i * (n - 1)) / (count - 1)));
  return [...picked].sort((a, b) => a - b);
}

/** Paints one flattened map into an ImageData-backed canvas of its own size. */
export function paintMap(map: (number | null)[], height: number, width: number, scale: ColorScale): HTMLCanvasElement {
  const canvas = document.createElement('canvas');
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext('2d')!;
  const image = ctx.createImageData(width, height);
  const table = lookupTable(scale);
  for (let i = 0; i < width * height; i++) {
    const v = map[i];
    if (v === null || v === undefined || !Number.isFinite(v)) {
      image.data.set(MISSING_RGB, i * 4);
    } else {
      const t = tableIndex(scale, v) * 3;
      image.data.set(table.subarray(t, t + 3), i * 4);
    }
    image.data[i * 4 + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
  return canvas;
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
    this.svg = document.createElementNS(SVG_NS, 'svg');
    this.element = el('div', { class: 'filmstrip' }, this.svg, this.canvas);
    this.tooltip = new Tooltip(this.element);
    this.canvas.addEventListener('mousemove', (event) => this.hover(event.offsetX, event.offsetY));
    this.canvas.addEventListener('mouseleave', () => this.tooltip.hide());
    this.canvas.addEventListener('click', (event) => {
      const hit = this.tileAt(event.offsetX, event.offsetY);
      if (hit) this.onPick(this.shown[hit.index]);
    });
  }

  /** Draws the maps to fit `width`; returns how many steps were left out to keep it compact. */
  draw(data: FilmstripData, width: number): number {
    this.data = data;
    const side = Math.max(data.height, data.width);
    this.tile = Math.max(48, Math.min(96, side * Math.max(1, Math.round(72 / side))));
    this.columns = Math.max(1, Math.floor((width + GAP) / (this.tile + GAP)));
    this.shown = evenlySpaced(data.steps.length, this.columns * MAX_ROWS);
    const rows = Math.ceil(this.shown.length / this.columns);
    const pitchY = this.tile + LABEL + GAP;
    const totalWidth = Math.min(this.shown.length, this.columns) * (this.tile + GAP) - GAP;
    const totalHeight = rows * pitchY;
    const dpr = window.devicePixelRatio || 1;
    this.canvas.width = Math.round(totalWidth * dpr);
    this.canvas.height = Math.round(totalHeight * dpr);
    this.canvas.style.width = `${totalWidth}px`;
    this.canvas.style.height = `${totalHeight}px`;
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
      ctx.drawImage(paintMap(data.maps[index], data.height, data.width, data.scale), x, y, this.tile, this.tile);
      svg.append('text').attr('x', x + this.tile / 2).attr('y', y + this.tile + 12).attr('text-anchor', 'middle')
        .attr('font-size', 11).attr('fill', '#424242').text(`step ${data.steps[index]}`);
    });
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
    const value = this.data.maps[step][hit.row * this.data.width + hit.col];
    this.tooltip.show([`step: ${this.data.steps[step]}`, `pixel: row ${hit.row}, col ${hit.col}`, `${this.data.valueName}: ${formatValue(value)}`], x, y);
  }
}
